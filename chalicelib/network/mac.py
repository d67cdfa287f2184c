"""MAC addresses for VM NICs."""
from __future__ import annotations

import secrets

# 0xfa: a locally administered (bit 1 set), unicast (bit 0 clear) first octet, as ZStack uses.
PREFIX = "fa"


def random_mac() -> str:
    """A random locally administered unicast MAC, fa:xx:xx:xx:xx:xx (2^40 of them). Uniqueness
    is the database's job (``vm_nics.mac`` is unique): a caller that loses a collision draws
    again."""
    return ":".join([PREFIX, *(f"{byte:02x}" for byte in secrets.token_bytes(5))])
