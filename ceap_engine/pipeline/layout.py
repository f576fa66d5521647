"""The key layout of a workflow's data in its bucket: one definition for every writer and reader.

The stage runtime, the local pipeline and the builder's ``States.Format`` strings all take
their keys from here, so the layout can change in one place::

    executions/{executionId}/{stage}/output.json          a stage's manifest (its handoff document):
                                                          counts and the list of its parts
    executions/{executionId}/{stage}/part-00000.jsonl     its records, JSON Lines, bounded parts
    executions/{executionId}/{stage}/rejected-00000.jsonl other record streams (rejected, errors,
                                                          unscored, failed, actions) likewise
    executions/{executionId}/{stage}/parts.jsonl          the record parts, one line each: what the
                                                          next stage's Map iterates over
    executions/{executionId}/{stage}/summaries/00000.json what one Map iteration counted (assembled
                                                          into the manifest after the Map)
    executions/{executionId}/ETL/plan.json                ETL's byte ranges and partition groups; ranges.jsonl
                                                          and groups.jsonl (the Maps' items), ranges/ and merges/
                                                          (what each call counted), spill/ (scratch)
    executions/{executionId}/failure.json                 why an execution failed (the Catch path)
    executions/{executionId}/execution.json               the run that holds the name (input digest, status)

>>> execution_key("e-1", "ETL")
'executions/e-1/ETL/output.json'
>>> failure_key("e-1")
'executions/e-1/failure.json'
>>> part_key("e-1", "Filter", "rejected", 3)
'executions/e-1/Filter/rejected-00003.jsonl'
"""

from __future__ import annotations

from ceap_engine.storage.objects import validate_key

__all__ = [
    "EXECUTIONS_PREFIX",
    "EXECUTION_RECORD",
    "FAILURE_DOCUMENT",
    "GROUP_LIST",
    "PART_LIST",
    "PLAN_DOCUMENT",
    "RANGE_LIST",
    "RECORDS_STREAM",
    "STAGE_OUTPUT",
    "execution_key",
    "execution_record_key",
    "failure_key",
    "format_template",
    "part_key",
    "part_list_key",
    "range_scratch_key",
    "spill_key",
    "step_key",
    "stream_file_prefix",
    "summary_key",
    "summary_prefix",
]

EXECUTIONS_PREFIX = "executions"
STAGE_OUTPUT = "output.json"
FAILURE_DOCUMENT = "failure.json"
EXECUTION_RECORD = "execution.json"
PART_LIST = "parts.jsonl"
#: The stream of the records a stage hands on (its model field ``candidates``).
RECORDS_STREAM = "candidates"
SUMMARIES = "summaries"
#: A first stage that fans out over its source (ETL) keeps its plan and item lists beside its manifest:
PLAN_DOCUMENT = "plan.json"
RANGE_LIST = "ranges.jsonl"
GROUP_LIST = "groups.jsonl"


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


def stream_file_prefix(stream: str) -> str:
    """The file name prefix of a record stream's parts: ``part`` for the records handed on.

    >>> stream_file_prefix("candidates"), stream_file_prefix("errors")
    ('part', 'errors')
    """
    return "part" if stream == RECORDS_STREAM else stream


def part_key(execution_id: str, stage: str, stream: str, index: int, sequence: int = 0) -> str:
    """The key of one part: ``part-00007.jsonl`` (``part-00007.1.jsonl`` for a part that overflowed).

    ``index`` is the Map iteration (the input part) that wrote it, so a retried iteration
    overwrites its own parts and never adds records twice.

    >>> part_key("e-1", "Score", "candidates", 7, 1)
    'executions/e-1/Score/part-00007.1.jsonl'
    """
    suffix = f".{sequence}" if sequence else ""
    return execution_key(execution_id, stage, f"{stream_file_prefix(stream)}-{index:05d}{suffix}.jsonl")


def part_list_key(execution_id: str, stage: str) -> str:
    """The JSON Lines list of a stage's record parts (the next Map's ItemReader reads it)."""
    return execution_key(execution_id, stage, PART_LIST)


def summary_prefix(execution_id: str, stage: str) -> str:
    """The prefix under which a stage's Map iterations leave their summaries."""
    return f"{EXECUTIONS_PREFIX}/{execution_id}/{stage}/{SUMMARIES}/"


def summary_key(execution_id: str, stage: str, index: int) -> str:
    """What Map iteration ``index`` of a stage counted.

    >>> summary_key("e-1", "Filter", 2)
    'executions/e-1/Filter/summaries/00002.json'
    """
    return validate_key(f"{summary_prefix(execution_id, stage)}{index:05d}.json")


def spill_key(execution_id: str, stage: str, partition: int, chunk: int, *, source_range: int = 0) -> str:
    """Scratch objects of a stage that partitions its input (ETL), per source range: removed when merged.

    >>> spill_key("e-1", "ETL", 17, 0, source_range=3)
    'executions/e-1/ETL/spill/r00003/p00017-000000.jsonl'
    """
    return execution_key(execution_id, stage, f"spill/r{source_range:05d}/p{partition:05d}-{chunk:06d}.jsonl")


def range_scratch_key(execution_id: str, stage: str, source_range: int, stream: str, chunk: int) -> str:
    """Another scratch stream of one source range (its errors, numbered within the range).

    >>> range_scratch_key("e-1", "ETL", 3, "errors", 0)
    'executions/e-1/ETL/spill/r00003/errors-000000.jsonl'
    """
    return execution_key(execution_id, stage, f"spill/r{source_range:05d}/{stream}-{chunk:06d}.jsonl")


def step_key(execution_id: str, stage: str, name: str) -> str:
    """A document of a first stage that fans out over its source: its plan, item lists, step summaries.

    >>> step_key("e-1", "ETL", PLAN_DOCUMENT), step_key("e-1", "ETL", "merges/00002.json")
    ('executions/e-1/ETL/plan.json', 'executions/e-1/ETL/merges/00002.json')
    """
    return execution_key(execution_id, stage, name)
