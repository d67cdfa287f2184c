"""The host agent that runs on every KVM host (built by the host-agent issue)."""
