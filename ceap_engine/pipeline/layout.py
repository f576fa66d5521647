"""The key layout of a workflow's data in its bucket: one definition for every writer and reader.

The stage runtime, the local pipeline and the builder's ``States.Format`` strings all take
their keys from here, so the layout can change in one place::

    executions/{executionId}/{stage}/output.json   a stage's output (its handoff document)
    executions/{executionId}/failure.json          why an execution failed (the Catch path)
    executions/{executionId}/execution.json        the run that holds the name (input digest, status)

>>> execution_key("e-1", "ETL")
'executions/e-1/ETL/output.json'
>>> failure_key("e-1")
'executions/e-1/failure.json'
"""

from __future__ import annotations

from ceap_engine.storage.objects import validate_key

__all__ = [
    "EXECUTIONS_PREFIX",
    "EXECUTION_RECORD",
    "FAILURE_DOCUMENT",
    "STAGE_OUTPUT",
    "execution_key",
    "execution_record_key",
    "failure_key",
    "format_template",
]

EXECUTIONS_PREFIX = "executions"
STAGE_OUTPUT = "output.json"
FAILURE_DOCUMENT = "failure.json"
EXECUTION_RECORD = "execution.json"


def execution_key(execution_id: str, stage: str, name: str = STAGE_OUTPUT) -> str:
    """The object key of a stage's artefact: ``executions/{id}/{stage}/{name}``."""
    return validate_key(f"{EXECUTIONS_PREFIX}/{execution_id}/{stage}/{name}")


def failure_key(execution_id: str) -> str:
    """Where the failure path of an execution writes its error and cause."""
    return validate_key(f"{EXECUTIONS_PREFIX}/{execution_id}/{FAILURE_DOCUMENT}")


def execution_record_key(execution_id: str) -> str:
    """Where a local run records the execution that holds its name (see :mod:`ceap_engine.pipeline.executions`).

    >>> execution_record_key("daily")
    'executions/daily/execution.json'
    """
    return validate_key(f"{EXECUTIONS_PREFIX}/{execution_id}/{EXECUTION_RECORD}")


def format_template(stage: str | None = None, name: str = STAGE_OUTPUT) -> str:
    """The same key as an ASL ``States.Format`` template over the execution name.

    >>> format_template("ETL")
    'executions/{}/ETL/output.json'
    >>> format_template(name=FAILURE_DOCUMENT)
    'executions/{}/failure.json'
    """
    if stage is None:
        return f"{EXECUTIONS_PREFIX}/{{}}/{name}"
    return f"{EXECUTIONS_PREFIX}/{{}}/{stage}/{name}"
