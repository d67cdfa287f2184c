"""Accounts, users, sessions, passwords and who may see what."""
