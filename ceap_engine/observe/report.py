"""One self-contained HTML page per execution (and a page for a bare graph).

:func:`execution_report` puts together: the graph with every state coloured by
its outcome, the error and cause of a failure, each stage's counts and the
reconciliation chain, a timeline of states, task attempts and retry waits
(execution-clock time, and wall time where the caller measured it), and the
history table. Everything is inline (CSS, SVG, a few lines of script): the
page makes no network request and can be mailed or attached to a ticket.

Example::

    html = execution_report(definition, result.to_json(), svg_of=Graphviz().svg)
    Path("run.html").write_text(html)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from .counts import count_chain, stage_counts
from .dot import OUTCOME_COLOURS, to_dot
from .graph import workflow_graph
from .trace import ExecutionTrace, StateVisit, event_time, trace_execution

__all__ = ["AttemptStopwatch", "WallTimes", "execution_report", "graph_page"]

#: Wall-clock seconds of task attempts, by (state name, attempt number), as a caller measured them.
WallTimes = Mapping[tuple[str, int], float]

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#212121;margin:0;background:#fafafa}
header{background:#263238;color:#fff;padding:14px 24px}
header h1{font-size:19px;margin:0 0 4px}
header .meta{color:#cfd8dc;font-size:13px}
main{padding:8px 24px 40px;max-width:1500px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:12px 18px;margin:14px 0}
h2{font-size:16px;margin:4px 0 10px}
.status{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:600;font-size:13px}
.status-SUCCEEDED{background:#2e7d32}.status-FAILED,.status-TIMED_OUT{background:#c62828}
.status-ABORTED{background:#ef6c00}.status-RUNNING{background:#1565c0}
.graph{overflow:auto;text-align:center}.graph svg{max-width:100%;height:auto}
.graph g.state{cursor:pointer}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:4px;vertical-align:-1px;border:1px solid}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.error{border-left:5px solid #c62828;background:#fff5f5}
.error pre{white-space:pre-wrap;word-break:break-word;margin:4px 0}
.warn{color:#e65100;font-weight:600}.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}
.bars{position:relative;height:16px;background:#f5f5f5;border-radius:3px;min-width:320px}
.bars div{position:absolute;top:2px;height:12px;border-radius:2px}
.bar-attempt-succeeded{background:#66bb6a}.bar-attempt-failed{background:#e53935}.bar-attempt-running{background:#42a5f5}
.bar-state{background:#b0bec5;top:6px!important;height:4px!important}
.bar-wait{background:repeating-linear-gradient(45deg,#ffca28 0 4px,#fff8e1 4px 8px)}
tr.outcome-failed td:first-child{border-left:4px solid #c62828}
tr.outcome-caught td:first-child{border-left:4px solid #e65100}
tr.outcome-retried td:first-child{border-left:4px solid #b08800}
tr.dim{opacity:.25}
details summary{cursor:pointer;color:#546e7a}
details pre{white-space:pre-wrap;word-break:break-all;max-height:260px;overflow:auto;background:#f5f5f5;padding:6px;margin:4px 0}
code{background:#eceff1;padding:0 3px;border-radius:3px}
"""

# Clicking a state in the graph keeps only its rows in the timeline and history tables (click again: all).
_SCRIPT = """
document.querySelectorAll('svg g.state').forEach(function(node){
  node.addEventListener('click', function(){
    var name = node.getAttribute('data-state'), active = document.body.getAttribute('data-focus') === name;
    document.body.setAttribute('data-focus', active ? '' : name);
    document.querySelectorAll('tr[data-state]').forEach(function(row){
      row.classList.toggle('dim', !active && row.getAttribute('data-state') !== name);
    });
  });
});
document.querySelectorAll('svg g.state').forEach(function(node){
  var t = node.querySelector('title'); if (t) node.setAttribute('data-state', t.textContent);
});
"""


def _page(title: str, header: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>"
        f"<header>{header}</header><main>{body}</main><script>{_SCRIPT}</script></body></html>\n"
    )


def _legend(outcomes: Sequence[str] | None = None) -> str:
    names = outcomes or list(OUTCOME_COLOURS)
    items = "".join(
        f'<span><i style="background:{OUTCOME_COLOURS[o][0]};border-color:{OUTCOME_COLOURS[o][1]}"></i>{o.replace("_", " ")}</span>'
        for o in names if o in OUTCOME_COLOURS)
    edges = ('<span>edges: <b style="color:#424242">next</b> &middot; <b style="color:#1565c0">choice</b> &middot; '
             '<b style="color:#616161">default</b> &middot; <b style="color:#e65100">catch (dashed)</b> &middot; '
             '<b style="color:#b08800">retry (dotted loop)</b> &middot; doubly outlined: terminal</span>')
    return f'<div class="legend">{items}{edges}</div>'


def graph_page(definition: Any, svg_of: Callable[[str], str], title: str = "state machine") -> str:
    """A page holding just the graph of a definition (``ceap graph -o FILE.html``).

    ``svg_of`` lays out DOT text as inline SVG (``Graphviz().svg``).
    """
    graph = workflow_graph(definition)
    svg = svg_of(to_dot(graph))
    states = len(graph.nodes)
    header = f"<h1>{escape(title)}</h1><div class=\"meta\">{states} states, {len(graph.edges)} transitions</div>"
    legend = _legend([])
    return _page(title, header, f'<section><div class="graph">{svg}</div>{legend}</section>')


@dataclass(frozen=True)
class _Clock:
    origin: float
    span: float

    def t(self, at: float | None) -> str:
        return "" if at is None else f"{at - self.origin:,.3f}"

    def pct(self, at: float) -> float:
        return 0.0 if self.span <= 0 else max(0.0, min(100.0, 100.0 * (at - self.origin) / self.span))


def execution_report(
    definition: Any,
    execution: Mapping[str, Any],
    *,
    svg_of: Callable[[str], str],
    counts: Mapping[str, Mapping[str, Any]] | None = None,
    checks: Sequence[tuple[str, bool]] = (),
    wall_times: WallTimes | None = None,
    wall_seconds: float | None = None,
    title: str | None = None,
) -> str:
    """The HTML report of one execution.

    ``execution`` is DescribeExecution's fields plus ``events`` in GetExecutionHistory's shape
    (``ExecutionResult.to_json()``, or what ``ceap executions history --format json`` prints).
    ``counts`` overrides the stage counts read from the history (a caller that read the stage
    outputs knows more), ``checks`` are "nothing lost" checks to show, ``wall_times`` and
    ``wall_seconds`` the wall-clock time the caller measured where it differs from the
    execution clock (a virtual clock skips waits).
    """
    events: list[Mapping[str, Any]] = list(execution.get("events") or [])
    trace = trace_execution(events)
    graph = workflow_graph(definition)
    outcomes = {n.key: trace.outcomes.get(n.name, "not_reached") for n in graph.nodes}
    taken = {(a, b) for source, target in trace.transitions
             for a in graph.keys_named(source) for b in graph.keys_named(target)}
    svg = svg_of(to_dot(graph, outcomes, taken=taken))
    if counts is None:
        counts = stage_counts(execution.get("output") or trace.output, events)
    status = str(execution.get("status") or trace.status)
    name = str(execution.get("name") or "execution")
    started = trace.started if trace.started is not None else (event_time(events[0]) if events else 0.0)
    stopped = trace.stopped if trace.stopped is not None else (event_time(events[-1]) if events else started)
    clock = _Clock(started, stopped - started)
    meta = [f"state machine {escape(str(execution.get('stateMachineArn') or ''))}",
            f"started {escape(_iso(started))}", f"execution clock {stopped - started:,.3f} s"]
    if wall_seconds is not None and abs(wall_seconds - (stopped - started)) > 0.5:
        meta.append(f"wall clock {wall_seconds:,.3f} s (the virtual clock moves only for waits and skips them)")
    header = (f'<h1>{escape(name)} <span class="status status-{escape(status)}" id="execution-status">{escape(status)}</span></h1>'
              f'<div class="meta">{" &middot; ".join(meta)}</div>')
    body = [
        _failure_section(status, execution, trace),
        f'<section id="graph"><h2>Graph</h2><div class="graph">{svg}</div>{_legend()}</section>',
        _counts_section(counts, checks),
        _timeline_section(trace, clock, wall_times or {}),
        _history_section(events, clock),
    ]
    return _page(title or f"{name} ({status})", header, "".join(body))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _failure_section(status: str, execution: Mapping[str, Any], trace: ExecutionTrace) -> str:
    if status == "SUCCEEDED":
        return ""
    error = execution.get("error") or trace.error or ""
    cause = execution.get("cause") or trace.cause or ""
    failed = ", ".join(trace.failed_states) or "(none)"
    caught = ", ".join(n for n, o in trace.outcomes.items() if o == "caught")
    where = f"<p>failed in: <b id=\"failed-states\">{escape(failed)}</b>"
    where += f" &middot; error caught in: <b id=\"caught-states\">{escape(caught)}</b></p>" if caught else "</p>"
    return (f'<section class="error" id="failure"><h2>{escape(status)}</h2>{where}'
            f'<div>error</div><pre id="error">{escape(str(error))}</pre>'
            f'<div>cause</div><pre id="cause">{escape(str(cause))}</pre></section>')


def _counts_section(counts: Mapping[str, Mapping[str, Any]], checks: Sequence[tuple[str, bool]]) -> str:
    if not counts:
        return ""
    rows = []
    for stage, values in counts.items():
        cells = ", ".join(f"{escape(str(k))}=<b>{escape(_flat(v))}</b>" for k, v in values.items())
        rows.append(f'<tr data-state="{escape(stage)}"><td>{escape(stage)}</td><td>{cells}</td></tr>')
    chain_rows = []
    for step in count_chain(counts):
        left = f"{step['left']:,} {escape(step['why'])}" if step["left"] else ""
        gap = step["unexplained"]
        gap_cell = f'<span class="bad">{gap:,} unaccounted</span>' if gap else ""
        chain_rows.append(f"<tr><td>{escape(step['step'])}</td><td>{escape(step['stage'])}</td>"
                          f"<td class=\"num\">{step['count']:,}</td><td>{left}</td><td>{gap_cell}</td></tr>")
    chain = ("<h2>From lines read to actions</h2><table id=\"chain\"><tr><th>step</th><th>stage</th>"
             "<th>count</th><th>left before this step</th><th></th></tr>" + "".join(chain_rows) + "</table>") if chain_rows else ""
    check_rows = "".join(f"<li><span class=\"{'ok' if ok else 'bad'}\">{'ok' if ok else 'MISMATCH'}</span> {escape(text)}</li>"
                         for text, ok in checks)
    checks_html = f"<h2>Nothing lost</h2><ul id=\"checks\">{check_rows}</ul>" if check_rows else ""
    return (f'<section id="counts"><h2>Stage counts</h2><table><tr><th>stage</th><th>counts</th></tr>{"".join(rows)}</table>'
            f"{chain}{checks_html}</section>")


def _flat(value: Any) -> str:
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{k}={v}" for k, v in value.items()) + ")"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _bars(visit: StateVisit, clock: _Clock, end: float) -> str:
    left, right = clock.pct(visit.entered), clock.pct(visit.exited if visit.exited is not None else end)
    parts = [f'<div class="bar-state" style="left:{left:.2f}%;width:{max(right - left, 0.3):.2f}%"></div>']
    for a, b in visit.retry_waits:
        parts.append(f'<div class="bar-wait" title="retry wait {b - a:,.3f} s" '
                     f'style="left:{clock.pct(a):.2f}%;width:{max(clock.pct(b) - clock.pct(a), 0.3):.2f}%"></div>')
    for attempt in visit.attempts:
        stop = attempt.ended if attempt.ended is not None else end
        parts.append(f'<div class="bar-attempt-{attempt.status}" title="attempt {attempt.number}: {attempt.status}" '
                     f'style="left:{clock.pct(attempt.started):.2f}%;width:{max(clock.pct(stop) - clock.pct(attempt.started), 0.3):.2f}%"></div>')
    return f'<div class="bars">{"".join(parts)}</div>'


def _timeline_section(trace: ExecutionTrace, clock: _Clock, wall: WallTimes) -> str:
    end = clock.origin + clock.span
    rows = []
    for visit in trace.visits:
        exited = visit.exited
        took = "" if exited is None else f"{exited - visit.entered:,.3f}"
        notes = []
        for attempt in visit.attempts:
            text = f"attempt {attempt.number}: {attempt.status}"
            if attempt.seconds is not None:
                text += f" in {attempt.seconds:,.3f} s"
            measured = wall.get((visit.name, attempt.number))
            if measured is not None and (attempt.seconds is None or abs(measured - attempt.seconds) > 0.0005):
                text += f" (wall {measured:,.3f} s)"
            if attempt.error:
                text += f" - {escape(attempt.error)}"
            notes.append(text)
        for a, b in visit.retry_waits:
            notes.append(f"retry wait {b - a:,.3f} s")
        rows.append(
            f'<tr class="outcome-{visit.outcome}" data-state="{escape(visit.name)}"><td>{escape(visit.name)}</td>'
            f"<td>{escape(visit.type)}</td><td>{visit.outcome.replace('_', ' ')}</td>"
            f'<td class="num">{clock.t(visit.entered)}</td><td class="num">{took}</td>'
            f"<td>{'<br>'.join(notes)}</td><td>{_bars(visit, clock, end)}</td></tr>")
    return ('<section id="timeline"><h2>Timeline</h2><p>Times in seconds since the start, on the execution clock'
            " (under the virtual clock, waits pass instantly but count here). Bars: grey the state, green/red task"
            " attempts, striped the retry waits.</p><table><tr><th>state</th><th>type</th><th>outcome</th><th>entered</th>"
            f"<th>took</th><th>attempts</th><th style=\"width:36%\"></th></tr>{''.join(rows)}</table></section>")


def _history_section(events: Sequence[Mapping[str, Any]], clock: _Clock) -> str:
    rows = []
    names: dict[int, str] = {}
    for event in events:
        details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
        event_id = event.get("id") if isinstance(event.get("id"), int) else -1
        previous = event.get("previousEventId")
        name = details.get("name") or (names.get(previous, "") if isinstance(previous, int) else "")
        kind = str(event.get("type"))
        if not kind.endswith("StateExited") and not kind.startswith("Execution"):
            names[event_id] = name
        summary = details.get("error") or ""
        body = escape(json.dumps(details, indent=1, ensure_ascii=False)) if details else ""
        shown = f"<details><summary>{escape(str(summary)) or 'details'}</summary><pre>{body}</pre></details>" if body else ""
        rows.append(f'<tr data-state="{escape(str(name))}"><td class="num">{event_id}</td>'
                    f'<td class="num">{escape(str(event.get("previousEventId", "")))}</td>'
                    f'<td class="num">{clock.t(event_time(event))}</td><td>{escape(kind)}</td>'
                    f"<td>{escape(str(name))}</td><td>{shown}</td></tr>")
    return ('<section id="history"><h2>History</h2><table><tr><th>id</th><th>previous</th><th>t (s)</th><th>type</th>'
            f"<th>state</th><th>details</th></tr>{''.join(rows)}</table></section>")


class AttemptStopwatch:
    """A progress callback that measures each task attempt's wall time (for ``wall_times``).

    Under a virtual clock the history's times are the execution clock's; this keeps what the
    attempts took on the wall, by (state name, attempt number).

    Example::

        stopwatch = AttemptStopwatch()
        pipeline = LocalPipeline(spec, objects=..., progress=stopwatch)
        execution_report(..., wall_times=stopwatch.seconds)
    """

    def __init__(self, timer: Callable[[], float] | None = None) -> None:
        import time

        self._timer = timer or time.perf_counter
        self._started: dict[tuple[str, int | None, int], float] = {}
        #: Seconds by (state name, attempt number), summed over the parts a Map state's iterations worked on.
        self.seconds: dict[tuple[str, int], float] = {}
        #: Finished task calls by state name (every attempt on every part): the Lambda requests.
        self.calls: dict[str, int] = {}

    def __call__(self, progress: Any) -> None:
        started = (progress.stage, getattr(progress, "part", None), progress.attempt)
        if progress.status == "started":
            self._started[started] = self._timer()
        elif started in self._started:
            key = (progress.stage, progress.attempt)
            self.seconds[key] = self.seconds.get(key, 0.0) + self._timer() - self._started.pop(started)
            self.calls[progress.stage] = self.calls.get(progress.stage, 0) + 1
