"""Cargohold: a self-hosted OCI registry and artifact repository manager."""

__version__ = "0.1.0"
