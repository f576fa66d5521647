"""What every ``ceap`` command shares: exit codes, JSON printing, problem reports."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..errors import InputError, Problem, ValidationFailed

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
    err_console.print(f"[bold red]error:[/] invalid {escape(exc.what)} ({len(exc.problems)} problem(s))")
    for p in exc.problems:
        err_console.print(f"  - {p.code}: {escape(p.message)} [dim]at {escape(p.path or '/')}[/]")


def read_json_file(path: Path, what: str, code: str = "INVALID_JSON") -> Any:
    """A JSON file's content; a missing, unreadable or malformed file is an :class:`InputError` saying which."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([Problem("/", f"{what} file not found: {path}")], what) from None
    except OSError as exc:
        raise InputError([Problem("/", f"cannot read {path}: {exc.strerror}")], what) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            [Problem("/", f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", code)], what
        ) from None
    except RecursionError:
        raise InputError([Problem("/", f"{path} nests its JSON too deeply to be read", code)], what) from None


async def await_interruptibly(execution: Any, ready: Callable[[], None] | None = None) -> Any:
    """Wait for a started execution; Ctrl-C or SIGTERM stops it as ABORTED (with its ExecutionAborted event).

    ``ready`` is called once both signals are handled (a readiness line can say so).
    """
    loop = asyncio.get_running_loop()
    # SIGTERM is what `timeout`, CI runners and systemd send: it ends the run like Ctrl-C.
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, execution.stop)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix event loops
            pass
    if ready is not None:
        ready()
    try:
        return await asyncio.shield(execution.task)
    except asyncio.CancelledError:
        return execution.result()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
