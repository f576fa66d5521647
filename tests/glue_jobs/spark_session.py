"""The test run's one SparkSession: a session-scoped fixture shared by every Spark test.

The Glue job tests and the local Glue runner tests import :func:`spark`; both
get the process's local session (:func:`adapters.local.glue.local_spark_session`),
so the JVM starts once per test run. Tests that use it are marked
``@pytest.mark.spark`` (``-m "not spark"`` leaves them out on a machine
without Java).
"""

from collections.abc import Iterator

import pytest

from adapters.local.glue import (
    glue_problems,
    local_spark_session,
    stop_local_spark_session,
)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    problems = glue_problems()
    if problems:
        pytest.fail(
            "the Spark tests need pyspark and Java:\n" + "\n".join(f"  - {p}" for p in problems)
            + "\ninstall them, or leave these tests out with -m 'not spark'"
        )
    yield local_spark_session()
    stop_local_spark_session()
