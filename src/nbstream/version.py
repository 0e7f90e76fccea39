"""The version of nbstream: the one place it is written (``pyproject.toml`` reads it here)."""

__version__ = "0.3.0"
