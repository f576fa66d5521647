"""Ratios, targets, the printed table and ``docs/benchmarks.md``, all from the results document."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["TARGETS", "Target", "floor_pairs", "markdown", "ratios", "table", "targets"]

#: What issues 7 and 11 ask of ceap: (name, what is compared, how, threshold).
TARGETS = (
    ("ceap realtime executions/s (concurrency 1,000, one core)", "realtime_eps", ">=", 5_000.0),
    ("ceap realtime / bound, same run", "ceap_vs_bound", ">=", 0.25),
    ("ceap / moto on the 5-Pass definition", "ceap_vs_moto_5pass", ">=", 100.0),
    ("ceap / floor wall time, largest e2e run (1m in a full run)", "ceap_vs_floor_wall_largest", "<=", 2.0),
    ("ceap peak RSS MiB, largest e2e run (400 MB)", "e2e_largest_peak_rss_mib", "<=", 381.5),
    ("ceap peak RSS, largest e2e run / the next smaller one (1m / 100k)", "e2e_peak_rss_growth", "<=", 1.25),
    ("slowest stage records/s on one core (stage-speed)", "stage_min_records_per_s", ">=", 50_000.0),
)


class Target(NamedTuple):
    """A target with what was measured (``None``: not in this run) and whether it is met."""

    label: str
    value: float | None
    op: str
    threshold: float
    met: bool | None


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


def _failed(row: dict[str, Any] | None) -> bool:
    return not row or bool(row.get("details", {}).get("error"))


def _records_of(name: str) -> int:
    """The record count an ``e2e-<size>`` name says (``e2e-100k`` -> 100,000; ``e2e-1m`` -> 1,000,000).

    >>> _records_of("e2e-1m"), _records_of("e2e-100k"), _records_of("e2e-500")
    (1000000, 100000, 500)
    """
    size = name.removeprefix("e2e-").lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(size[-1:], 1)
    return int(float(size.rstrip("km")) * scale)


def floor_pairs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ``e2e-<size>`` row with its ``floor-<size>`` row (both succeeded), smallest first.

    Wall time is each command's process wall time (start to exit); peak RSS is the peak
    of the summed RSS of its process tree; the ratios are ceap / floor.
    """
    rows = _by_name(results)
    pairs = []
    for row in results:
        size = row["name"].removeprefix("e2e-")
        floor = rows.get(f"floor-{size}")
        if not row["name"].startswith("e2e-") or _failed(row) or _failed(floor):
            continue
        assert floor is not None
        ceap_d, floor_d = row["details"], floor["details"]
        records = ceap_d.get("records")
        ceap_wall, floor_wall = ceap_d.get("process_wall_s"), floor_d.get("process_wall_s")
        pairs.append({
            "size": size,
            "records": records,
            "ceap_wall_s": ceap_wall,
            "floor_wall_s": floor_wall,
            "ceap_records_per_s": round(records / ceap_wall, 1) if records and ceap_wall else None,
            "floor_records_per_s": round(records / floor_wall, 1) if records and floor_wall else None,
            "ceap_peak_rss_mib": row.get("peak_rss_mib"),
            "floor_peak_rss_mib": floor.get("peak_rss_mib"),
            "wall_ratio": _ratio(ceap_wall, floor_wall),
            "rss_ratio": _ratio(row.get("peak_rss_mib"), floor.get("peak_rss_mib")),
            "ceap_processes": ceap_d.get("processes"),
            "ceap_counts": ceap_d.get("counts") or {},
            "floor_counts": floor_d.get("counts") or {},
        })
    return sorted(pairs, key=lambda p: p["records"] or 0)


def ratios(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """``ceap_vs_bound`` = ceap-realtime-c1000 / bound and ``ceap_vs_moto_5pass`` = ceap-5pass / moto-5pass
    executions/s (``None`` when a side is missing or failed); then, for each size run end to
    end, ``ceap_vs_floor_wall_<size>`` and ``ceap_vs_floor_rss_<size>`` (see :func:`floor_pairs`).

    >>> ratios([{"name": "ceap-5pass", "executions_per_s": 500.0}, {"name": "moto-5pass", "executions_per_s": 5.0}])
    {'ceap_vs_bound': None, 'ceap_vs_moto_5pass': 100.0}
    """
    rows = _by_name(results)
    out = {
        "ceap_vs_bound": _ratio(_eps(realtime_high(results)), _eps(rows.get("bound"))),
        "ceap_vs_moto_5pass": _ratio(_eps(rows.get("ceap-5pass")), _eps(rows.get("moto-5pass"))),
    }
    for pair in floor_pairs(results):
        out[f"ceap_vs_floor_wall_{pair['size']}"] = pair["wall_ratio"]
        out[f"ceap_vs_floor_rss_{pair['size']}"] = pair["rss_ratio"]
    return out


def _measured(document: dict[str, Any]) -> dict[str, float | None]:
    results = document["results"]
    values: dict[str, float | None] = dict(document["ratios"])
    values["realtime_eps"] = _eps(realtime_high(results))
    pairs = floor_pairs(results)
    # A failed e2e run bigger than every one that succeeded (the 1m one timing out) leaves the
    # "largest run" targets unmeasured: a smaller size is not the size the target names.
    failed_sizes = [_records_of(r["name"]) for r in results if r["name"].startswith("e2e-") and _failed(r)]
    if pairs and not any(size > (pairs[-1]["records"] or 0) for size in failed_sizes):
        largest = pairs[-1]
        values["ceap_vs_floor_wall_largest"] = largest["wall_ratio"]
        values["e2e_largest_peak_rss_mib"] = largest["ceap_peak_rss_mib"]
        if len(pairs) > 1:
            values["e2e_peak_rss_growth"] = _ratio(largest["ceap_peak_rss_mib"], pairs[-2]["ceap_peak_rss_mib"])
    speed = _by_name(results).get("stage-speed")
    if not _failed(speed):
        assert speed is not None
        values["stage_min_records_per_s"] = speed["details"].get("min_records_per_s")
    return values


def targets(document: dict[str, Any]) -> list[Target]:
    """Each target with the measured value, its threshold and whether it is met (``None``: not measured)."""
    values = _measured(document)
    out = []
    for label, key, op, threshold in TARGETS:
        value = values.get(key)
        met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
        out.append(Target(label, value, op, threshold, met))
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
    for t in targets(document):
        verdict = "not measured" if t.met is None else ("met" if t.met else "MISSED")
        shown = "-" if t.value is None else f"{t.value:,.2f}"
        lines.append(f"target {t.label}: {shown} ({t.op} {t.threshold:,.2f}) {verdict}")
    pairs = floor_pairs(document["results"])
    if pairs:
        lines.append("ceap and the floor on the same file (process wall time; peak RSS summed over the process tree):")
    for p in pairs:
        c, f = p["ceap_counts"], p["floor_counts"]
        lines.append(
            f"  {p['size']}: ceap {_num(p['ceap_wall_s'], '{:,.2f}')} s, {_num(p['ceap_records_per_s'], '{:,.0f}')} rec/s, "
            f"{_num(p['ceap_peak_rss_mib'])} MiB | floor {_num(p['floor_wall_s'], '{:,.2f}')} s, "
            f"{_num(p['floor_records_per_s'], '{:,.0f}')} rec/s, {_num(p['floor_peak_rss_mib'])} MiB | "
            f"ceap/floor wall {_num(p['wall_ratio'], '{:,.2f}')}x, RSS {_num(p['rss_ratio'], '{:,.2f}')}x | "
            f"ceap/floor stored {_num(c.get('stored'), '{:,}')}/{_num(f.get('stored'), '{:,}')}, "
            f"actions {_num(c.get('actions'), '{:,}')}/{_num(f.get('actions'), '{:,}')}")
    for row in document["results"]:
        details = row.get("details", {})
        if row["name"] == "stage-speed" and details.get("stages") and not details.get("error"):
            per_stage = ", ".join(f"{name} {_num(s.get('records_per_s'), '{:,.0f}')}" for name, s in details["stages"].items())
            lines.append(f"stage-speed (one core, {_num(details.get('records'), '{:,}')} order events): records/s per "
                         f"stage: {per_stage}; slowest {details.get('slowest_stage')}")
        elif details.get("stages") and not details.get("error"):
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


#: The rows of ``benchmarks/serve.py``'s document, as the page names them.
_SERVE_ROWS = [
    ("a_ceap_sync_express", "(a) ceap serve: StartSyncExecution, Express 5-Pass, boto3, one after another"),
    ("a_noop_boto3_ceiling", "(a) boto3's ceiling: the same calls to a no-op HTTP server answering with ceap's own reply (interleaved)"),
    ("a_ministack_sync_express", "(a) MiniStack: StartSyncExecution, the same machine"),
    ("a_ceap_standard_polling", "(a) ceap serve: Standard StartExecution + DescribeExecution polling"),
    ("a_moto_standard_polling", "(a) moto server: Standard StartExecution + DescribeExecution polling"),
    ("b_ceap_capacity", "(b) ceap serve capacity: client processes over keep-alive connections"),
    ("b_ministack_capacity", "(b) MiniStack capacity: the same clients"),
]


def _serve_section(serve: dict[str, Any] | None) -> list[str]:
    """The page's section on ``benchmarks/serve.py`` (the endpoint over HTTP beside its peers)."""
    if not serve:
        return []
    if serve.get("error"):
        return ["## ceap serve over HTTP", "", f"Not measured: {serve['error']}", ""]
    rows = [[label, _num(serve[key].get("executions"), "{:,}"), _num(serve[key].get("per_second")),
             _num(serve[key].get("client_cpu_per_wall_second"), "{:,.2f}")]
            for key, label in _SERVE_ROWS if isinstance(serve.get(key), dict)]
    ratios = [("ceap / boto3's ceiling, sequential (target >= 0.80)", "a_ceap_share_of_boto3_ceiling"),
              ("ceap / MiniStack, capacity (target >= 20)", "b_ceap_over_ministack"),
              ("ceap / moto, Standard with polling", "a_ceap_over_moto_standard")]
    return [
        "## ceap serve over HTTP",
        "",
        "From `benchmarks/serve.py` (see its docstring): each server started on 127.0.0.1, a 5-Pass machine; "
        f"capacity target >= 2,000 executions/s. {serve.get('cpus', '?')} CPUs shared by servers and clients.",
        "",
        *_md_table(["row", "executions", "per second", "client CPU / wall s"], rows),
        "",
        *(f"- {label}: {_num(serve.get(key), '{:,.2f}')}" for label, key in ratios),
        "",
    ]


def _md_table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _num(value: Any, fmt: str = "{:,.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _pair_table(pairs: list[dict[str, Any]]) -> list[str]:
    def counted(p: dict[str, Any], key: str) -> str:
        return f"{_num(p['ceap_counts'].get(key), '{:,}')} / {_num(p['floor_counts'].get(key), '{:,}')}"

    return _md_table(
        ["records", "ceap wall s", "floor wall s", "ceap rec/s", "floor rec/s", "ceap peak RSS MiB",
         "floor peak RSS MiB", "wall ceap/floor", "RSS ceap/floor", "candidates ceap / floor",
         "stored ceap / floor", "actions ceap / floor"],
        [[_num(p["records"], "{:,}"), _num(p["ceap_wall_s"], "{:,.2f}"), _num(p["floor_wall_s"], "{:,.2f}"),
          _num(p["ceap_records_per_s"], "{:,.0f}"), _num(p["floor_records_per_s"], "{:,.0f}"),
          _num(p["ceap_peak_rss_mib"]), _num(p["floor_peak_rss_mib"]), _num(p["wall_ratio"], "{:,.2f}"),
          _num(p["rss_ratio"], "{:,.2f}"), counted(p, "candidates"), counted(p, "stored"), counted(p, "actions")]
         for p in pairs], right_from=0)


def _end_to_end_sections(results: list[dict[str, Any]]) -> list[str]:
    """The page's sections on ``e2e-*``, ``floor-*`` and ``stage-speed`` rows (empty if none ran)."""
    out: list[str] = []
    pairs = floor_pairs(results)
    if pairs:
        out += [
            "## End to end: ceap and the floor",
            "",
            "Each size's order data is generated once; `ceap run --local` and the floor (`benchmarks/floor.py`: the "
            "same logical work - validate, scope, merge, filter, score with both models, upsert into SQLite in batches, "
            "claim each engagement, one action per claimed engagement - in one plain standard-library process) run on "
            "that same file one after the other. Wall time is each command's, from start to exit (ceap's includes "
            "starting Python and importing ceap); records/s = source records / that time. Peak RSS is the peak of the "
            "summed RSS of the command's whole process tree (ceap's worker processes included; up to "
            f"{max((p['ceap_processes'] or 0) for p in pairs)} processes at once here), sampled every 100 ms. "
            "Similar counts on both sides show they did the same work.",
            "",
            *_pair_table(pairs),
            "",
        ]
    e2e = [r for r in results if r["name"].startswith("e2e-") and r.get("details", {}).get("stages")]
    if e2e:
        stages = list(e2e[0]["details"]["stages"])
        out += [
            "## End to end, per stage",
            "",
            f"{e2e[0]['details'].get('driver')}, on order data from `examples/generate_orders.py`. "
            "Records/s of a stage = the records it was given / its span in the execution history, from the first of "
            "its states entered (its Task, or its Map over the previous stage's parts) to the last exited (its "
            f"`.Manifest` step) ({e2e[0]['details'].get('timestamps')}); total = source records / execution time. "
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
    speed = next((r for r in results if r["name"] == "stage-speed" and not _failed(r)), None)
    if speed:
        d = speed["details"]
        out += [
            "## Each stage on one core",
            "",
            f"`benchmarks/stage_speed.py` on {_num(d.get('records'), '{:,}')} generated order events: "
            f"{d.get('driver')}. Decoding and encoding the part count in each stage's time "
            "(records are msgspec Structs on the wire, the pydantic models refereeing what they refuse: "
            "see docs/architecture.md, *Records on the wire*); importing the stage modules does not "
            "(once a process, before the clock starts). "
            "The issue's target is 50,000 records/s for every stage.",
            "",
            *_md_table(["stage", "records", "seconds", "records/s", "median records/s"], [
                [name, _num(s.get("records"), "{:,}"), _num(s.get("seconds"), "{:,.3f}"),
                 _num(s.get("records_per_s"), "{:,.0f}"), _num(s.get("median_records_per_s"), "{:,.0f}")]
                for name, s in d["stages"].items()
            ]),
            "",
        ]
    return out


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
            [t.label, _num(t.value, "{:,.2f}"), f"{t.op} {t.threshold:,.2f}",
             "not measured" if t.met is None else ("met" if t.met else "**missed**")]
            for t in targets(document)
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
    out += _end_to_end_sections(results)
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
    out += _serve_section(document.get("serve"))
    failed = [r for r in results if r.get("details", {}).get("error")]
    if failed:
        out += ["## Failed scenarios", "", *(f"- `{r['name']}`: {r['details']['error']}" for r in failed), ""]
    out += [
        "## What is measured",
        "",
        "- Every scenario runs in its own Python process, so its peak RSS (`ru_maxrss`) is its own; it includes "
        "the interpreter and the imports (and, for moto, boto3 and moto). For `e2e-*` and `floor-*` it is the peak "
        "of the summed RSS (`VmRSS`) of the command's process tree - the `ceap` process and its worker processes - "
        "sampled every 100 ms.",
        "- executions/s = executions / wall time of the measured run (after a warm-up of up to 200 executions, "
        "not counted). A state transition is a state entered plus each Task retry, as AWS bills them.",
        "- exec/CPU-s = executions / CPU time of the scenario's process (all its threads) over the same run: what "
        "the rate would be with a core to itself. Well above exec/s means other work shared the machine (see the "
        "load average above); the ratios and targets use exec/s, as the issue defines them.",
        "- p50/p99: wall time of one execution from its start to its end as the driver sees it; at concurrency "
        "1,000 it includes waiting for the event loop. For moto it is rounded up to a DescribeExecution sweep.",
        "- Every scenario's Python process starts as the `ceap` command does: `tune_collector()` "
        "(`ceap_engine/runtime/collector.py`: `gc.freeze()` and a young generation of 10,000 objects instead of "
        "700), the bound's and moto's processes too; the peer runs on Node with its defaults.",
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
