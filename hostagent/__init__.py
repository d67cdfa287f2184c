"""The Aerie host agent: runs the control plane's commands on one host's hypervisor."""
