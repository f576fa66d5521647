"""What ``ceap run --local`` shows: progress lines while it runs, then the summary (text or JSON).

Rendering only: each piece is a function of the run's data, so a new count or
check is one edit here and never touches how the run is wired (:mod:`.run`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.markup import escape

from ceap_engine.pipeline.layout import failure_key
from ceap_engine.pipeline.local import PipelineResult, StageProgress

from ._output import console, envelope, err_console

__all__ = ["RunProgress", "json_document", "name_claim_json", "print_summary", "reconciliation"]

#: Show the workflow clock beside the wall clock once it is ahead by this much: the virtual clock skipped
#: a wait (a retry interval, a Wait state). Behind the wall clock it is only "no wait yet", not news.
_CLOCK_SKEW_SHOWN = 0.05


def _scalar_counts(counts: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (counts or {}).items() if not isinstance(v, dict | list))


class RunProgress:
    """One line per stage attempt on stderr: wall time since the start, the workflow clock where it differs, counts.

    ``counts_of(stage)`` supplies counts a stage's result does not carry (a Glue
    job run: its metrics come from the job's own summary).

    >>> p = RunProgress(clock_start=0.0, enabled=False)
    >>> p.line(StageProgress("ETL", "started", 1, 0.0), wall=1.25)
    '   1.2s  > ETL'
    """

    def __init__(self, clock_start: float, enabled: bool,
                 counts_of: Callable[[str], Mapping[str, Any] | None] | None = None) -> None:
        self.clock_start = clock_start
        self.enabled = enabled
        self.counts_of = counts_of
        self.began = time.perf_counter()

    def line(self, p: StageProgress, wall: float) -> str:
        """The plain-text line of one progress step (``wall`` seconds since the run began)."""
        clock = p.at - self.clock_start
        at = f"{wall:6.1f}s"
        if clock - wall > _CLOCK_SKEW_SHOWN:
            at += f" (workflow clock t+{clock:.1f}s)"
        attempt = f" (attempt {p.attempt})" if p.attempt > 1 else ""
        if p.status == "started":
            return f"{at}  > {p.stage}{attempt}"
        if p.status == "succeeded":
            counts = p.counts if p.counts is not None else (self.counts_of(p.stage) if self.counts_of else None)
            return f"{at}  ok {p.stage}{attempt}  {_scalar_counts(counts)}".rstrip()
        return f"{at}  failed {p.stage}{attempt}: {(p.error or '')[:300]}"

    def __call__(self, p: StageProgress) -> None:
        if not self.enabled:
            return
        text = escape(self.line(p, time.perf_counter() - self.began))
        style = {"started": "cyan", "succeeded": "green"}.get(p.status, "red")
        err_console.print(f"[{style}]{text}[/]")


def reconciliation(counts: dict[str, Any], chained: dict[str, Any] | None = None,
                   order: list[str] | None = None) -> list[tuple[str, bool]]:
    """The "nothing is lost" checks: the chain of the stages' manifests when given, else over the counts.

    >>> reconciliation({"ETL": {"processedCount": 3, "transformedCount": 2, "errorCount": 1}})[0][1]
    True
    """
    if chained:
        from ceap_engine.pipeline.reconcile import chain

        return [(link.text, link.ok) for link in chain(chained, order or list(chained))]
    checks = []
    etl, flt, store = counts.get("ETL"), counts.get("Filter"), counts.get("Store")
    if etl:
        checks.append((f"ETL read = transformed + errors: {etl.get('processedCount')} = {etl.get('transformedCount')} + {etl.get('errorCount')}",
                       etl.get("processedCount") == (etl.get("transformedCount") or 0) + (etl.get("errorCount") or 0)))
    if flt:
        checks.append((f"Filter input = passed + rejected: {flt.get('inputCount')} = {flt.get('passedCount')} + {flt.get('rejectedCount')}",
                       flt.get("inputCount") == (flt.get("passedCount") or 0) + (flt.get("rejectedCount") or 0)))
    score = counts.get("Score")
    if store and score:
        checks.append((f"stored + failed = scored: {store.get('storedCount')} + {store.get('failedCount')} = {score.get('scoredCount')}",
                       (store.get("storedCount") or 0) + (store.get("failedCount") or 0) == score.get("scoredCount")))
    return checks


def format_counts(counts: dict[str, Any]) -> str:
    """``k=v`` pairs, nested maps in parentheses.

    >>> format_counts({"a": 1, "b": {"x": 2}})
    'a=1 b=(x=2)'
    """
    parts = []
    for k, v in counts.items():
        if isinstance(v, dict):
            inner = ", ".join(f"{ik}={iv}" for ik, iv in v.items())
            parts.append(f"{k}=({inner})" if inner else f"{k}=()")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


def stopped_reason(error: str | None, cause: str | None, status: str) -> tuple[str, str]:
    """Error and cause as shown to a user: an abort (Ctrl-C, StopExecution) has neither, so say so.

    >>> stopped_reason(None, None, "ABORTED")
    ('aborted', 'the execution was stopped (Ctrl-C or StopExecution) before it ended')
    """
    if error is None and cause is None and status == "ABORTED":
        return "aborted", "the execution was stopped (Ctrl-C or StopExecution) before it ended"
    return str(error or ""), str(cause or "")


def print_summary(result: PipelineResult, store: Path, wall_seconds: float) -> None:
    """The text summary on stdout: status, time, counts per stage, the checks, where the outputs are."""
    ex = result.execution
    colour = {"SUCCEEDED": "green", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "yellow"}.get(ex.status, "white")
    console.print(f"[bold {colour}]{ex.status}[/]  workflow {result.workflow}, execution {result.execution_id}")
    earlier = result.name_claim.describe() if result.name_claim is not None else None
    if earlier:
        console.print(f"note: {escape(earlier)}")
    if ex.stop_time is not None:
        # Under the virtual clock only waits (retries, Wait states) move the workflow clock.
        console.print(f"took {wall_seconds:.2f} s; workflow clock {ex.stop_time - ex.start_time:.1f} s")
    width = max((len(s) for s in result.outputs), default=0)
    for stage in result.outputs:
        console.print(f"  {stage:<{width}}  {escape(format_counts(result.counts.get(stage) or {}))}")
    checks = reconciliation(result.counts, result.reconciliation, list(result.outputs))
    if checks:
        console.print("nothing lost:")
        for text, ok in checks:
            console.print(f"  {'[green]ok[/]' if ok else '[red]MISMATCH[/]'}  {escape(text)}")
    root = (store / "buckets" / result.bucket).resolve()
    console.print(escape(f"outputs:    {root}/executions/{result.execution_id}/<stage>/output.json"))
    console.print(f"candidates: {(store / 'candidates.sqlite3').resolve()}")
    if ex.status != "SUCCEEDED":
        error, cause = stopped_reason(ex.error, ex.cause, ex.status)
        console.print(f"[red]error:[/] {escape(error)}")
        console.print(f"[red]cause:[/] {escape(cause)}")
        if result.failure is not None:
            console.print(f"failure:    {root}/{failure_key(result.execution_id)} (stage {result.failure.get('stage')})")


def name_claim_json(result: PipelineResult) -> dict[str, Any] | None:
    """What the execution-name rule found (resumed, rerun or replaced an earlier run), for ``--format json``."""
    claim = result.name_claim
    if claim is None or claim.earlier is None:
        return None
    outcome = "resumed" if claim.resumed else "rerun" if claim.rerun else "replaced"
    return {"outcome": outcome, "earlier": claim.earlier, "message": claim.describe()}


def json_document(result: PipelineResult, store: Path, wall_seconds: float | None = None) -> dict[str, Any]:
    """The ``--format json`` document of a run: the execution (DescribeExecution fields, events) plus counts."""
    doc = result.execution.to_json()
    doc.update({
        "workflow": result.workflow,
        "executionId": result.execution_id,
        "store": str(store.resolve()),
        "bucket": result.bucket,
        "outputs": result.outputs,
        "counts": result.counts,
        "reconciliation": [{"check": text, "ok": ok}
                           for text, ok in reconciliation(result.counts, result.reconciliation, list(result.outputs))],
        "failure": result.failure,
        "executionName": name_claim_json(result),
    })
    if wall_seconds is not None:
        doc["wallSeconds"] = round(wall_seconds, 3)
    return envelope(doc, ok=result.status == "SUCCEEDED")
