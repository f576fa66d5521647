"""What every ``ceap`` command shares: exit codes, JSON printing, problem reports."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from ..errors import ValidationFailed

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    """One JSON document on stdout (never through rich, so it stays machine-readable)."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def emit_problems(exc: ValidationFailed, fmt: str) -> None:
    """Report a bad definition, input or argument: JSON on stdout, or text on stderr."""
    if fmt == "json":
        print_json({
            "schemaVersion": 1,
            "error": f"invalid {exc.what}",
            "details": [{"path": p.path or "/", "message": p.message, "code": p.code} for p in exc.problems],
        })
        return
    err_console.print(f"[bold red]error:[/] invalid {exc.what} ({len(exc.problems)} problem(s))")
    for p in exc.problems:
        err_console.print(f"  - {p.code}: {p.message} [dim]at {p.path or '/'}[/]")
