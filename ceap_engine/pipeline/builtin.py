"""The two CEAP workflows ceap ships: ``realtime`` (EXPRESS) and ``batch`` (STANDARD).

Stage code is named by import path, never imported here. Memory and timeout
per stage are those of the deployed platform's Lambdas.

``realtime`` fits Express's 300 s by construction (docs/cli.md, "Why the realtime workflow fits
Express"): each Task state gives up before its Lambda would (``state_timeout_seconds`` for each of
ETL's range calls and each part, ``merge_timeout_seconds`` for ETL's merge calls,
``manifest_timeout_seconds`` for ``ETL.Plan`` and each ``<Stage>.Manifest``) and retries once after
2 s, so even every attempt of every step timing out, plus recording the failure, ends by 285 s;
:func:`~ceap_engine.pipeline.builder.express_duration_warnings` checks it.
"""

from __future__ import annotations

from ceap_engine.pipeline.spec import EXPRESS_LAMBDA_RETRY, StageSpec, WorkflowSpec

__all__ = ["BATCH", "BUILTIN", "REALTIME", "builtin"]

_ETL = StageSpec(name="ETL", function="stages.etl:run", memory_mb=1024, timeout_seconds=300, fan_out_source=True)
_FILTER = StageSpec(name="Filter", function="stages.filter:run", memory_mb=512, timeout_seconds=60)
_SCORE = StageSpec(name="Score", function="stages.score:run", memory_mb=1024, timeout_seconds=120)
_STORE = StageSpec(name="Store", function="stages.store:run", memory_mb=512, timeout_seconds=60)
_REACTIVE = StageSpec(name="Reactive", function="stages.reactive:run", memory_mb=1024, timeout_seconds=60)
_HEAVY_ETL = StageSpec(name="HeavyETL", kind="glue", script="glue_jobs/heavy_etl.py", timeout_seconds=7200)

#: Seconds a realtime Task state waits for one attempt: each of ETL's range calls (32 MiB of the source,
#: about 70,000 events; the ranges run at once, up to the inline Map's 40), and each part call of the other
#: stages (the parts of a stage run at once too; a part holds at most 10,000 records). Store, which writes
#: every record, gets the most of those. Two attempts of each and the 2 s waits: ETL's range 52 s,
#: Filter/Score/Reactive 22 s, Store 42 s.
_REALTIME_STATE_TIMEOUTS = {"ETL": 25, "Filter": 10, "Score": 10, "Store": 20, "Reactive": 10}
#: Each of ETL's merge calls (a 40th of the day's partitions): 15 s, so 32 s with its retry.
_REALTIME_MERGE_TIMEOUT = 15
#: Each ``<Stage>.Manifest`` only adds up its parts' summaries, and ``ETL.Plan`` only looks at the source's
#: size: 5 s, so 12 s with its retry. ETL: 12 + 52 + 32 + 12 = 108 s. With recording a failure (21 s) the
#: worst case is 108 + 3 x 34 + 54 + 21 = 285 s <= 300 s.
_REALTIME_MANIFEST_TIMEOUT = 5


def _express(stage: StageSpec) -> StageSpec:
    merge = {"merge_timeout_seconds": _REALTIME_MERGE_TIMEOUT} if stage.fan_out_source else {}
    return stage.model_copy(update={"state_timeout_seconds": _REALTIME_STATE_TIMEOUTS[stage.name],
                                    "manifest_timeout_seconds": _REALTIME_MANIFEST_TIMEOUT,
                                    "retry": EXPRESS_LAMBDA_RETRY, **merge})


REALTIME = WorkflowSpec(name="realtime", type="express",
                        stages=tuple(_express(s) for s in (_ETL, _FILTER, _SCORE, _STORE, _REACTIVE)))
BATCH = WorkflowSpec(name="batch", type="standard", stages=(_ETL, _FILTER, _HEAVY_ETL, _SCORE, _STORE, _REACTIVE))

BUILTIN = {"realtime": REALTIME, "batch": BATCH}


def builtin(name: str) -> WorkflowSpec:
    """A shipped workflow by name (``realtime`` or ``batch``)."""
    try:
        return BUILTIN[name]
    except KeyError:
        raise KeyError(f"unknown workflow {name!r}: choose one of {', '.join(BUILTIN)}") from None
