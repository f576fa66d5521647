"""``--report FILE.html`` of ``ceap run`` and ``ceap asl run``: checked before the run, written after it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem

__all__ = ["check_report_path", "write_report"]


def check_report_path(path: Path | None) -> None:
    """Refuse, before anything runs, a report that could not be written: not .html, or no Graphviz."""
    if path is None:
        return
    from ceap_engine.observe.dot import Graphviz, GraphvizMissing

    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError([Problem("/report", f"--report {path}: the report is an HTML page; name it FILE.html")], "arguments")
    if path.is_dir():
        raise InputError([Problem("/report", f"--report {path} is a folder; give a file name such as run.html")], "arguments")
    try:
        Graphviz().path()
    except GraphvizMissing as exc:
        raise InputError([Problem("/report", str(exc), "GRAPHVIZ_MISSING")], "arguments") from None


def write_report(
    path: Path,
    definition: Any,
    execution: Mapping[str, Any],
    *,
    counts: Mapping[str, Mapping[str, Any]] | None = None,
    checks: Sequence[tuple[str, bool]] = (),
    wall_times: Mapping[tuple[str, int], float] | None = None,
    wall_seconds: float | None = None,
) -> Path:
    """Write the execution's report page; returns the path written."""
    from ceap_engine.observe.dot import Graphviz
    from ceap_engine.observe.report import execution_report

    page = execution_report(definition, execution, svg_of=Graphviz().svg, counts=counts, checks=checks,
                            wall_times=wall_times, wall_seconds=wall_seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a page
    return path
