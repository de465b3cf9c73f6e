"""Fixtures of the scale-out tests: a throwaway PostgreSQL cluster (from the db tests)."""

from tests.integration.db.conftest import postgres_url

__all__ = ["postgres_url"]
