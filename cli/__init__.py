"""The ``aerie`` command: ``aerie up`` runs the embedded control plane; the rest is a client."""
