"""Global configs: typed, validated operator settings that take effect at runtime."""
from chalicelib.globalconfig.definitions import ConfigDefinition, define, definitions
from chalicelib.globalconfig.service import get_value, reset_config, seed, update_config

__all__ = [
    "ConfigDefinition", "define", "definitions", "get_value", "reset_config", "seed",
    "update_config",
]
