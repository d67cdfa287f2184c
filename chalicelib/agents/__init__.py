"""The control plane's side of host agents: tokens, commands, reports, host tracking and VM
state sync. It shares only the wire protocol with ``hostagent/``."""
