"""Hypervisor drivers: ``simulator`` (in memory) and ``libvirt`` (a real hypervisor)."""

DRIVER_NAMES = ("simulator", "libvirt")
