"""Operation definitions, one module per service. Each module exposes OPERATIONS."""
