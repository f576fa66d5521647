"""Fixtures of the Glue job tests: the shared SparkSession and a storage of dicts and files."""

from .spark_session import spark  # noqa: F401 - the session-scoped fixture, shared with the runner tests
