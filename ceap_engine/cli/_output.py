"""What every ``ceap`` command shares: exit codes, the JSON envelope, problem reports.

With ``--format json`` every command prints exactly one JSON document on
stdout, in one envelope (documented in docs/cli.md)::

    {"schemaVersion": 1, "command": "asl validate", "ok": true, ...the command's fields}
    {"schemaVersion": 1, "command": "run", "ok": false, "error": "invalid payload",
     "details": [{"path": "/source", "message": "...", "code": "INVALID_PAYLOAD"}]}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..errors import InputError, Problem, ValidationFailed

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
SCHEMA_VERSION = 1



def _discard_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class _Console(Console):
    """Rich's console, except that a closed pipe (``| head -1``) is not exit 1: the rest is discarded."""

    def on_broken_pipe(self) -> None:
        if self.quiet:
            return
        self.quiet = True
        if not self.stderr:
            _discard_stdout()


console = _Console(highlight=False, soft_wrap=True)
err_console = _Console(stderr=True, highlight=False, soft_wrap=True)


def click_module(name: str) -> Any:
    """Click's ``exceptions`` or ``globals`` module: newer typer releases vendor click as ``typer._click``."""
    import importlib

    try:
        return importlib.import_module(f"typer._click.{name}")
    except ImportError:
        return importlib.import_module(f"click.{name}")


def command_name() -> str:
    """The running sub-command as a user typed it (``"asl validate"``), from click's context."""
    ctx = click_module("globals").get_current_context(silent=True)
    if ctx is None:
        return "ceap"
    parts = ctx.command_path.split()
    return " ".join(parts[1:]) or parts[0]


def envelope(fields: dict[str, Any], *, ok: bool = True, command: str | None = None) -> dict[str, Any]:
    """A command's JSON document: ``schemaVersion``, ``command`` and ``ok`` first, then the command's fields.

    >>> envelope({"valid": True}, command="asl validate")
    {'schemaVersion': 1, 'command': 'asl validate', 'ok': True, 'valid': True}
    """
    head = {"schemaVersion": SCHEMA_VERSION, "command": command or command_name(), "ok": ok}
    return head | {k: v for k, v in fields.items() if k not in head}


def error_envelope(error: str, details: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    """The envelope of a command that did not do its work: ``error`` says what, ``details`` where.

    >>> error_envelope("invalid payload", [{"path": "/", "message": "x", "code": "C"}], command="run")["ok"]
    False
    """
    command = fields.pop("command", None)
    return envelope({"error": error, "details": details, **fields}, ok=False, command=command)


def print_json(document: Any) -> None:
    """One JSON document on stdout (never through rich, so it stays machine-readable)."""
    with tolerate_broken_pipe():
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()


@contextlib.contextmanager
def tolerate_broken_pipe() -> Iterator[None]:
    """Let ``ceap ... | head -1`` end quietly: a reader that stopped reading is not a failed command.

    The rest of stdout goes to /dev/null, so the exit code stays the command's own.
    """
    try:
        yield
    except BrokenPipeError:
        _discard_stdout()


def problem_details(problems: list[Problem]) -> list[dict[str, str]]:
    return [p.as_dict() for p in problems]


def emit_problems(exc: ValidationFailed, fmt: str, **fields: Any) -> None:
    """Report a bad definition, input or argument: the JSON envelope on stdout, or text on stderr."""
    if fmt == "json":
        print_json(error_envelope(f"invalid {exc.what}", problem_details(exc.problems), **fields))
        return
    err_console.print(f"[bold red]error:[/] invalid {escape(exc.what)} ({len(exc.problems)} problem(s))")
    for p in exc.problems:
        err_console.print(f"  - {p.code}: {escape(p.message)} [dim]at {escape(p.path or '/')}[/]")


def emit_error(message: str, fmt: str, code: str = "ERROR", details: list[dict[str, str]] | None = None) -> None:
    """Report an error that is not about one field (AWS said no, a backend failed)."""
    if fmt == "json":
        print_json(error_envelope(message, details or [{"path": "/", "message": message, "code": code}]))
        return
    err_console.print(f"[bold red]error:[/] {escape(message)}")


def bad_input(problem: Problem, what: str = "argument") -> InputError:
    """An :class:`InputError` with one problem: ``raise bad_input(Problem("/store", "..."))``."""
    return InputError([problem], what)


def ensure_writable_folder(path: Path, option: str) -> None:
    """Create ``path`` if missing and check that files can be written in it; else an :class:`InputError` naming ``option``.

    >>> try:
    ...     ensure_writable_folder(Path("/proc/x"), "--store")
    ... except InputError as exc:
    ...     print(exc.problems[0].code, exc.problems[0].path)
    NOT_WRITABLE /store
    """
    import tempfile

    where = "/" + option.lstrip("-")
    if path.exists() and not path.is_dir():
        raise InputError([Problem(where, f"{option} {path} is a file, not a folder: name a folder (it is created "
                                         "if missing)", "NOT_A_FOLDER")], "arguments")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=path, prefix=".ceap-write-check-").close()
    except OSError as exc:
        raise InputError([Problem(where, f"{option} {path} is not a writable folder ({exc.strerror}): choose "
                                         "another folder", "NOT_WRITABLE")], "arguments") from None


def write_output_file(path: Path, data: str | bytes, option: str = "--output") -> None:
    """Write a command's ``-o`` file (its folder made if missing); a folder or unwritable place is an
    :class:`InputError` naming ``option`` (exit 2).

    >>> try:
    ...     write_output_file(Path("/proc/ceap/t.json"), "{}")
    ... except InputError as exc:
    ...     print(exc.problems[0].code, exc.problems[0].path)
    NOT_WRITABLE /output
    """
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    except OSError as exc:
        raise InputError([Problem("/" + option.lstrip("-"), f"cannot write {path} ({exc.strerror}): name a file in a "
                                                           "writable folder", "NOT_WRITABLE")], "argument") from None


def parse_json_text(text: str, where: str, origin: str, code: str = "INVALID_JSON") -> Any:
    """JSON text, or an :class:`InputError` naming ``origin`` (a file or an option) and the position.

    >>> parse_json_text('{"a": 1}', "/input", "--input")
    {'a': 1}
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            [Problem(where, f"{origin} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", code)]
        ) from None
    except RecursionError:
        raise InputError([Problem(where, f"{origin} is nested too deeply to read (over ~{sys.getrecursionlimit()} "
                                         "levels of arrays or objects)", "NESTED_TOO_DEEPLY")]) from None


def read_json_file(path: Path, what: str, code: str = "INVALID_JSON", where: str = "/") -> Any:
    """A JSON file's content; a missing, unreadable or malformed file is an :class:`InputError` saying which."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([Problem(where, f"{what} file not found: {path}", "FILE_NOT_FOUND")], what) from None
    except IsADirectoryError:
        raise InputError([Problem(where, f"{path} is a folder, not a {what} file", "NOT_A_FILE")], what) from None
    except UnicodeDecodeError:
        raise InputError([Problem(where, f"{path} is not UTF-8 text", code)], what) from None
    except OSError as exc:
        raise InputError([Problem(where, f"cannot read {path}: {exc.strerror}", "UNREADABLE")], what) from None
    try:
        return parse_json_text(text, where, str(path), code)
    except InputError as exc:
        raise InputError(exc.problems, what) from None


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
