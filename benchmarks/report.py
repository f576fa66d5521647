"""Ratios, targets, the printed table and ``docs/benchmarks.md``, all from the results document."""

from __future__ import annotations

from typing import Any

__all__ = ["TARGETS", "markdown", "ratios", "table", "targets"]

#: What issue 7 asks of ceap: (name, what is compared, threshold).
TARGETS = (
    ("ceap realtime executions/s (concurrency 1,000, one core)", "realtime_eps", 5_000.0),
    ("ceap realtime / bound, same run", "ceap_vs_bound", 0.25),
    ("ceap / moto on the 5-Pass definition", "ceap_vs_moto_5pass", 100.0),
)

_COLUMNS = (
    ("name", "name", "{}"),
    ("executions", "executions", "{:,}"),
    ("conc.", "concurrency", "{:,}"),
    ("exec/s", "executions_per_s", "{:,.1f}"),
    ("exec/CPU-s", "details.executions_per_cpu_s", "{:,.1f}"),
    ("transitions/s", "transitions_per_s", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:,.3f}"),
    ("p99 ms", "p99_ms", "{:,.3f}"),
    ("peak RSS MiB", "peak_rss_mib", "{:,.1f}"),
)


def _by_name(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in results}


def _eps(row: dict[str, Any] | None) -> float | None:
    value = row.get("executions_per_s") if row else None
    return value if isinstance(value, (int, float)) and value > 0 else None


def realtime_high(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ceap-realtime row at the highest concurrency (``ceap-realtime-c1000`` in a full run)."""
    rows = [r for r in results if r["name"].startswith("ceap-realtime-c") and r["name"] != "ceap-realtime-c1"]
    return max(rows, key=lambda r: r.get("concurrency") or 0, default=None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """``ceap_vs_bound`` = ceap-realtime-c1000 / bound and ``ceap_vs_moto_5pass`` = ceap-5pass / moto-5pass
    executions/s (``None`` when a side is missing or failed).

    >>> ratios([{"name": "ceap-5pass", "executions_per_s": 500.0}, {"name": "moto-5pass", "executions_per_s": 5.0}])
    {'ceap_vs_bound': None, 'ceap_vs_moto_5pass': 100.0}
    """
    rows = _by_name(results)
    return {
        "ceap_vs_bound": _ratio(_eps(realtime_high(results)), _eps(rows.get("bound"))),
        "ceap_vs_moto_5pass": _ratio(_eps(rows.get("ceap-5pass")), _eps(rows.get("moto-5pass"))),
    }


def targets(document: dict[str, Any]) -> list[tuple[str, float | None, float, bool | None]]:
    """Each target with the measured value, its threshold and whether it is met (``None``: not measured)."""
    values = dict(document["ratios"])
    values["realtime_eps"] = _eps(realtime_high(document["results"]))
    out = []
    for label, key, threshold in TARGETS:
        value = values.get(key)
        out.append((label, value, threshold, None if value is None else value >= threshold))
    return out


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get("details", {}).get(key[8:]) if key.startswith("details.") else row.get(key)
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(document: dict[str, Any]) -> str:
    """The results as a plain-text table, then the ratios and the targets."""
    rows = [[label for label, _, _ in _COLUMNS]]
    for row in document["results"]:
        cells = [_cell(row, key, fmt) for _, key, fmt in _COLUMNS]
        if row.get("details", {}).get("error"):
            cells[0] += "  FAILED"
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = []
    for n, cells in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for key, value in document["ratios"].items():
        lines.append(f"{key}: {'-' if value is None else f'{value:,.3f}'}")
    for label, value, threshold, met in targets(document):
        verdict = "not measured" if met is None else ("met" if met else "MISSED")
        shown = "-" if value is None else f"{value:,.2f}"
        lines.append(f"target {label}: {shown} (>= {threshold:,.2f}) {verdict}")
    for row in document["results"]:
        details = row.get("details", {})
        if details.get("stages") and not details.get("error"):
            per_stage = ", ".join(f"{name} {_num(s.get('records_per_s'), '{:,.0f}')}" for name, s in details["stages"].items())
            lines.append(f"{row['name']}: {_num(details.get('records'), '{:,}')} records, "
                         f"{_num(details.get('records_per_s'), '{:,.0f}')} records/s in all; per stage: {per_stage}")
    for row in document["results"]:
        error = row.get("details", {}).get("error")
        if error:
            lines.append(f"{row['name']} failed: {error}")
    return "\n".join(lines)


def _per_execution(row: dict[str, Any] | None) -> str:
    details = (row or {}).get("details") or {}
    if not details.get("transitions") or not row.get("executions"):
        return ""
    return f": {details['transitions'] / row['executions']:g} transitions per execution"


def _md_table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _num(value: Any, fmt: str = "{:,.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def markdown(document: dict[str, Any], *, command: str, mode: str, started: str, duration_s: float) -> str:
    """``docs/benchmarks.md``: machine, versions, command, every result and what each number means."""
    results = document["results"]
    out = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` ({mode} run, {started}, {duration_s:,.0f} s in all).",
        "Do not edit by hand: run the command again to regenerate this page.",
        "",
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in document["machine"].items()),
        "",
        "## Versions",
        "",
        *(f"- {key}: {value if value is not None else 'not installed'}" for key, value in document["versions"].items()),
        "",
        "## Results",
        "",
        *_md_table([label for label, _, _ in _COLUMNS],
                   [[_cell(r, key, fmt) + (" (FAILED)" if i == 0 and r.get("details", {}).get("error") else "")
                     for i, (_, key, fmt) in enumerate(_COLUMNS)] for r in results]),
        "",
        "## Ratios and targets",
        "",
        *(f"- `{key}` = {_num(value, '{:,.3f}')}" for key, value in document["ratios"].items()),
        "",
        *_md_table(["target", "measured", "threshold", "verdict"], [
            [label, _num(value, "{:,.2f}"), f"{threshold:,.2f}",
             "not measured" if met is None else ("met" if met else "**missed**")]
            for label, value, threshold, met in targets(document)
        ]),
        "",
    ]
    scaling = [r for r in results if r["name"].startswith("scaling-")]
    if scaling:
        out += [
            "## Scaling",
            "",
            "ceap-realtime at the highest concurrency; no result or history of a finished execution is kept "
            f"(kept: {scaling[0].get('details', {}).get('kept_histories')}). Time per execution should stay flat "
            "(time grows linearly) and peak RSS flat.",
            "",
            *_md_table(["name", "executions", "wall s", "µs / execution", "RSS before MiB", "RSS after MiB", "peak RSS MiB"], [
                [r["name"], _num(r.get("executions"), "{:,}"), _num(r.get("details", {}).get("wall_s"), "{:,.2f}"),
                 _num(r.get("details", {}).get("per_execution_us")), _num(r.get("details", {}).get("rss_before_mib")),
                 _num(r.get("details", {}).get("rss_after_mib")), _num(r.get("peak_rss_mib"))]
                for r in scaling
            ]),
            "",
        ]
    retry = [r for r in results if r["name"] == "retry-heavy"]
    if retry:
        d = retry[0].get("details", {})
        out += [
            "## Retry-heavy",
            "",
            "Every stage fails once (`Lambda.ServiceException`) and succeeds on its retry after the spec's retry "
            "interval (2 s for the Express workflow), in virtual time.",
            "",
            *_md_table(["executions", "wall s", "virtual s", "transitions", "transitions/s", "exec/s"], [[
                _num(retry[0].get("executions"), "{:,}"), _num(d.get("wall_s"), "{:,.2f}"), _num(d.get("virtual_s"), "{:,.0f}"),
                _num(d.get("transitions"), "{:,}"), _num(retry[0].get("transitions_per_s"), "{:,.0f}"),
                _num(retry[0].get("executions_per_s")),
            ]], right_from=0),
            "",
        ]
    e2e = [r for r in results if r["name"].startswith("e2e-") and r.get("details", {}).get("stages")]
    if e2e:
        stages = list(e2e[0]["details"]["stages"])
        out += [
            "## End to end",
            "",
            f"{e2e[0]['details'].get('driver')}, on order data from `examples/generate_orders.py`. "
            "Records/s of a stage = the records it was given / its time from StateEntered to StateExited "
            f"({e2e[0]['details'].get('timestamps')}); total = source records / execution time. "
            "Process wall time includes starting Python and importing ceap.",
            "",
            *_md_table(["name", "records", *(f"{s} rec/s" for s in stages), "total rec/s", "execution s",
                        "process wall s", "peak RSS MiB"], [
                [r["name"], _num(r["details"].get("records"), "{:,}"),
                 *(_num(r["details"]["stages"][s].get("records_per_s"), "{:,.0f}") for s in stages),
                 _num(r["details"].get("records_per_s"), "{:,.0f}"), _num(r["details"].get("wall_s"), "{:,.2f}"),
                 _num(r["details"].get("process_wall_s"), "{:,.2f}"), _num(r.get("peak_rss_mib"))]
                for r in e2e
            ]),
            "",
        ]
    glue = [r for r in results if r["name"].startswith("glue-job") and not r.get("details", {}).get("error")]
    if glue:
        out += [
            "## HeavyETL Glue job",
            "",
            "From `benchmarks/glue_job.py` (see its docstring): the local Glue runner on local Spark; cold = "
            "JVM and SparkSession start plus the first run, warm = later runs on the same session.",
            "",
            *_md_table(["name", "seconds", "candidates", "candidates/s", "JVM peak RSS MiB", "phases (s)"], [
                [r["name"], _num(r.get("p50_ms") and r["p50_ms"] / 1000, "{:,.2f}"),
                 _num(r["details"].get("candidates"), "{:,}"), _num(r["details"].get("candidates_per_s"), "{:,.0f}"),
                 _num(r["details"].get("jvm_peak_rss_mib")),
                 ", ".join(f"{k} {v}" for k, v in (r["details"].get("phases_s") or {}).items()) or "-"]
                for r in glue
            ]),
            "",
        ]
    failed = [r for r in results if r.get("details", {}).get("error")]
    if failed:
        out += ["## Failed scenarios", "", *(f"- `{r['name']}`: {r['details']['error']}" for r in failed), ""]
    out += [
        "## What is measured",
        "",
        "- Every scenario runs in its own Python process, so its peak RSS (`ru_maxrss`) is its own; it includes "
        "the interpreter and the imports (and, for moto, boto3 and moto). For `e2e-*` it is the `ceap` process's.",
        "- executions/s = executions / wall time of the measured run (after a warm-up of up to 200 executions, "
        "not counted). A state transition is a state entered plus each Task retry, as AWS bills them.",
        "- exec/CPU-s = executions / CPU time of the scenario's process (all its threads) over the same run: what "
        "the rate would be with a core to itself. Well above exec/s means other work shared the machine (see the "
        "load average above); the ratios and targets use exec/s, as the issue defines them.",
        "- p50/p99: wall time of one execution from its start to its end as the driver sees it; at concurrency "
        "1,000 it includes waiting for the event loop. For moto it is rounded up to a DescribeExecution sweep.",
        "- `bound`: one asyncio task per execution awaiting 5 no-op coroutines and appending 10 history tuples, "
        "under the same driver and concurrency limit: the ceiling for any asyncio engine in this Python. "
        "`bound-yield` gives the event loop one turn per state (as a runner doing real I/O would); it is context "
        "only, since ceap's no-op runners do not yield.",
        "- `ceap-realtime-*`: the realtime workflow's ASL as built for deployment (its Input Choice, 5 `lambda:invoke` "
        f"Tasks with the spec's Retry and Catch, and the Summary Pass{_per_execution(realtime_high(results))}) with "
        "no-op task runners, a virtual clock and full history kept while running.",
        "- `moto-5pass` / `ceap-5pass`: the same 5-Pass-state machine; moto's in-process interpreter "
        "(`mock_aws`, `execute_state_machine` on) starts every execution at once, one thread each; ceap runs the "
        "same number of executions 5 times (they take it a few hundredths of a second) and reports the median round.",
        "",
    ]
    return "\n".join(out)
