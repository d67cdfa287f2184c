"""Storage: primary storage, backup storage, images."""
