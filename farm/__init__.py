"""farm: a distributed build farm."""

__version__ = "0.1.0"
