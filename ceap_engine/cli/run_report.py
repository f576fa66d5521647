"""What ``ceap run --local`` shows: progress lines while it runs, then the summary (text or JSON).

Rendering only: each piece is a function of the run's data, so a new count or
check is one edit here and never touches how the run is wired (:mod:`.run`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from ceap_engine.pipeline.builder import MANIFEST, MERGE, PART, PLAN, RANGE, fans_out, fans_out_over_source
from ceap_engine.pipeline.builtin import BUILTIN
from ceap_engine.pipeline.layout import failure_key
from ceap_engine.pipeline.local import PipelineResult, StageProgress

from ._output import console, envelope, err_console

__all__ = ["RunProgress", "json_document", "name_claim_json", "print_summary", "reconciliation", "timeout_hint"]

#: Show the workflow clock beside the wall clock once it is ahead by this much: the virtual clock skipped
#: a wait (a retry interval, a Wait state). Behind the wall clock it is only "no wait yet", not news.
_CLOCK_SKEW_SHOWN = 0.05


def _scalar_counts(counts: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (counts or {}).items() if not isinstance(v, dict | list))


class RunProgress:
    """Progress lines on stderr: wall time since the start, the workflow clock where it differs, counts.

    A stage that fans out over parts (a Map of ``<Stage>.Part`` calls, then ``<Stage>.Manifest``)
    - and each of ETL's Maps over byte ranges and partition groups (``ETL.Range``, ``ETL.Merge``,
    after ``ETL.Plan``'s line) - gets one line as its first call starts, a line of parts done / total and records/s at most
    every ``every`` seconds (and when the last part is done), and its ``ok`` line with the whole
    stage's counts once its manifest is written. ``counts_of(stage)`` supplies counts a stage's
    result does not carry (a Glue job run: its metrics come from the job's own summary).

    >>> p = RunProgress(clock_start=0.0, enabled=False)
    >>> p.line(StageProgress("ETL", "started", 1, 0.0), wall=1.25)
    '   1.2s  > ETL'
    >>> p.line(StageProgress("ETL", "succeeded", 1, 0.0, counts={"processedCount": 9}, part_count=2), wall=2.0)
    '   2.0s  ok ETL  processedCount=9  (2 parts, 12 records/s)'
    >>> p.line(StageProgress("ETL.Plan", "succeeded", 1, 0.0, counts={"ranges": 2, "groups": 3}, part_count=2), wall=0.5)
    '   0.5s  .. ETL  plan: ranges=2, groups=3'
    >>> p.line(StageProgress("Filter.Part", "started", 1, 0.0, part=0), wall=2.0)
    '   2.0s  > Filter  (2 parts)'
    >>> p.line(StageProgress("Filter.Part", "succeeded", 1, 0.0, counts={"inputCount": 5}, part=0), wall=2.5)
    '   2.5s  .. Filter  part 1/2 done, 5 records, 10 records/s'
    """

    def __init__(self, clock_start: float, enabled: bool,
                 counts_of: Callable[[str], Mapping[str, Any] | None] | None = None, every: float = 1.0) -> None:
        self.clock_start = clock_start
        self.enabled = enabled
        self.counts_of = counts_of
        self.every = every
        self.began = time.perf_counter()
        self._next_parts = 0  # the part count the last finished call wrote: the next Map's items
        self._parts: dict[str, _PartsDone] = {}
        self._started: dict[str, float] = {}

    def line(self, p: StageProgress, wall: float) -> str | None:
        """The plain-text line of one progress step (``wall`` seconds since the run began), or None."""
        clock = p.at - self.clock_start
        at = f"{wall:6.1f}s"
        if clock - wall > _CLOCK_SKEW_SHOWN:
            at += f" (workflow clock t+{clock:.1f}s)"
        stage, step = p.stage.rsplit(".", 1) if p.stage.endswith(_STEPS) else (p.stage, "")
        attempt = f" (attempt {p.attempt})" if p.attempt > 1 else ""
        if step == PART[1:]:
            return self._part_line(p, stage, at, attempt, wall)
        if step in (RANGE[1:], MERGE[1:]):  # ETL's calls over byte ranges, then over partition groups
            return self._part_line(p, p.stage, at, attempt, wall)
        if step == PLAN[1:] and p.status in ("started", "succeeded"):
            if p.status == "started":
                self._started[stage] = wall
                return f"{at}  > {stage}{attempt}"
            self._next_parts = p.part_count or 0
            return f"{at}  .. {stage}  plan: {_scalar_counts(p.counts)}".rstrip()
        if p.status == "started":
            if step:
                return None
            self._started[stage] = wall
            return f"{at}  > {stage}{attempt}"
        if p.status == "succeeded":
            self._next_parts = p.part_count or 0
            counts = p.counts if p.counts is not None else (self.counts_of(p.stage) if self.counts_of else None)
            text = f"{at}  ok {stage}{attempt}  {_scalar_counts(counts)}".rstrip()
            done = self._parts.pop(stage, None)
            if done is None and stage in self._started:  # one call: its own records/s
                read = int((counts or {}).get("processedCount") or (counts or {}).get("inputCount") or 0)
                done = _PartsDone(total=1, began=self._started.pop(stage), records=read)
            notes = [f"{p.part_count} part{'s' if p.part_count != 1 else ''}"] if p.part_count else []
            if done is not None and done.records:
                notes.append(f"{done.rate(wall)} records/s")
            return text + (f"  ({', '.join(notes)})" if notes else "")
        return f"{at}  failed {p.stage}{attempt}: {(p.error or '')[:300]}"

    def _part_line(self, p: StageProgress, stage: str, at: str, attempt: str, wall: float) -> str | None:
        done = self._parts.get(stage)
        if done is None:
            done = self._parts[stage] = _PartsDone(total=self._next_parts, began=wall)
            if p.status == "started":
                total = f"  ({done.total} part{'s' if done.total != 1 else ''})" if done.total else ""
                return f"{at}  > {stage}{total}"
        where = f" part {p.part + 1}" if p.part is not None else ""
        if p.status == "failed":
            return f"{at}  failed {stage}{where}{attempt}: {(p.error or '')[:300]}"
        if p.status != "succeeded":
            return None
        done.parts += 1
        done.records += int((p.counts or {}).get("inputCount") or 0)
        last = done.total and done.parts >= done.total
        # One part says nothing new before the stage's ok line; an unknown total still shows the count so far.
        if done.total == 1 or (not last and wall - done.shown < self.every):
            return None
        done.shown = wall
        total = f"/{done.total}" if done.total else ""
        return f"{at}  .. {stage}  part {done.parts}{total} done, {done.records:,} records, {done.rate(wall)} records/s"

    def __call__(self, p: StageProgress) -> None:
        if not self.enabled:
            return
        line = self.line(p, time.perf_counter() - self.began)
        if line is None:
            return
        style = {"started": "cyan", "succeeded": "green"}.get(p.status, "red")
        err_console.print(f"[{style}]{escape(line)}[/]")


#: The steps of a stage whose progress lines differ from a single call's.
_STEPS = (PART, MANIFEST, PLAN, RANGE, MERGE)


@dataclass
class _PartsDone:
    """How far a stage's parts have got (for :class:`RunProgress`)."""

    total: int
    began: float
    parts: int = 0
    records: int = 0
    shown: float = 0.0

    def rate(self, wall: float) -> str:
        seconds = wall - self.began
        return f"{self.records / seconds:,.0f}" if seconds > 0 else "-"


def timeout_hint(result: PipelineResult) -> str | None:
    """What to do when a built-in EXPRESS workflow's stage ran out of its TimeoutSeconds (else None).

    Locally the Task timeouts hold on wall time too, and the realtime workflow's are short (Express's
    300 s budget, docs/cli.md): a big day, or a busy machine, can outrun them.
    """
    failure = result.failure or {}
    if failure.get("Error") != "States.Timeout" or result.workflow not in BUILTIN:
        return None
    spec = BUILTIN[result.workflow]
    if spec.type != "express":
        return None
    stage = next((s for s in spec.stages if s.name == failure.get("stage")), None)
    if stage is None:
        return None
    if fans_out_over_source(spec, stage):
        each = f"each range call ({stage.merge_task_timeout_seconds} s for each merge call)"
    else:
        each = "each part call" if fans_out(spec, stage) else "its call"
    return (f"the {spec.name} workflow (EXPRESS) gives {stage.name} {stage.task_timeout_seconds} s for {each}, so "
            f"that every run fits Express's 300 s (docs/cli.md); a day this big, or a machine this busy, needs "
            f"more: run it with --workflow batch, whose stages keep their full timeouts")


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
        hint = timeout_hint(result)
        if hint:
            console.print(f"[yellow]hint:[/] {escape(hint)}")


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
