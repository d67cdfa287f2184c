"""Compute: zones, clusters, offerings (and, in later issues, hosts and VMs)."""
