"""The two CEAP workflows ceap ships: ``realtime`` (EXPRESS) and ``batch`` (STANDARD).

Stage code is named by import path, never imported here. Memory and timeout
per stage are those of the deployed platform's Lambdas.
"""

from __future__ import annotations

from ceap_engine.pipeline.spec import StageSpec, WorkflowSpec

__all__ = ["BATCH", "BUILTIN", "REALTIME", "builtin"]

_ETL = StageSpec(name="ETL", function="stages.etl:run", memory_mb=1024, timeout_seconds=300)
_FILTER = StageSpec(name="Filter", function="stages.filter:run", memory_mb=512, timeout_seconds=60)
_SCORE = StageSpec(name="Score", function="stages.score:run", memory_mb=1024, timeout_seconds=120)
_STORE = StageSpec(name="Store", function="stages.store:run", memory_mb=512, timeout_seconds=60)
_REACTIVE = StageSpec(name="Reactive", function="stages.reactive:run", memory_mb=1024, timeout_seconds=60)
_HEAVY_ETL = StageSpec(name="HeavyETL", kind="glue", script="glue_jobs/heavy_etl.py", timeout_seconds=7200)

REALTIME = WorkflowSpec(name="realtime", type="express", stages=(_ETL, _FILTER, _SCORE, _STORE, _REACTIVE))
BATCH = WorkflowSpec(name="batch", type="standard", stages=(_ETL, _FILTER, _HEAVY_ETL, _SCORE, _STORE, _REACTIVE))

BUILTIN = {"realtime": REALTIME, "batch": BATCH}


def builtin(name: str) -> WorkflowSpec:
    """A shipped workflow by name (``realtime`` or ``batch``)."""
    try:
        return BUILTIN[name]
    except KeyError:
        raise KeyError(f"unknown workflow {name!r}: choose one of {', '.join(BUILTIN)}") from None
