"""Networking: L2 networks on clusters, L3 networks with IP ranges and DNS."""
