"""Persistence: engine and sessions, the SQLAlchemy models, Alembic migrations."""
