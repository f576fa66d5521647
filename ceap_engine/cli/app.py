"""The root ``ceap`` command; each sub-command group lives in its own module."""

from __future__ import annotations

import sys

import typer

from ceap_engine.runtime.collector import tune_collector
from ceap_engine.runtime.memory import tune_malloc

from . import asl, aws, cost, executions, graph, queue, run, serve
from ._output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    click_module,
    error_envelope,
    print_json,
    tolerate_broken_pipe,
)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="ceap: run the CEAP pipeline locally on an exact ASL interpreter, or deploy it to AWS.",
)
app.add_typer(asl.app, name="asl")
app.add_typer(executions.app, name="executions")
app.command("run")(run.run)
app.command("event")(run.event)
app.command("serve")(serve.serve)
app.command("graph")(graph.graph)
app.command("cost")(cost.cost)
aws.register(app)
queue.register(app)


def _wants_json(argv: list[str]) -> bool:
    """Did the user ask for ``--format json``? Read from argv, since a usage error comes before parsing ends."""
    for i, arg in enumerate(argv):
        if arg == "--format=json" or (arg == "--format" and argv[i + 1:i + 2] == ["json"]):
            return True
    return False


_GROUPS = ("asl", "dlq", "executions")  # commands whose sub-command is part of the name: "asl run", "dlq list"


def _typed_command(argv: list[str]) -> str:
    """The command as typed (``asl run``, ``dlq list``, ``run``), read from argv when click's context is gone."""
    words = argv[:2] if argv[:1] and argv[0] in _GROUPS else argv[:1]
    return " ".join(words) or "ceap"


def _usage_command(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    parts = ctx.command_path.split() if ctx is not None else []
    return " ".join(parts[1:]) or "ceap"


def main(argv: list[str] | None = None) -> None:
    """The ``ceap`` entry point: the commands' exit codes; usage errors as exit 2 (in JSON with ``--format json``)."""
    tune_collector()  # many executions in flight: see ceap_engine.runtime.collector
    tune_malloc()  # memory a stage call frees is used again: see ceap_engine.runtime.memory
    args = list(sys.argv[1:] if argv is None else argv)
    click = click_module("exceptions")
    try:
        with tolerate_broken_pipe():
            code = app(args, prog_name="ceap", standalone_mode=False)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help text, shown as asked
            exc.show()
            sys.exit(EXIT_BAD_INPUT)
        if _wants_json(args):
            print_json(error_envelope(f"usage: {exc.format_message()}",
                                      [{"path": "/", "message": exc.format_message(), "code": "USAGE"}],
                                      command=_usage_command(exc)))
        else:
            exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        # Ctrl-C outside an execution (a running one ends ABORTED on its own): no traceback.
        sys.stderr.write("\ninterrupted (Ctrl-C)\n")
        sys.exit(EXIT_FAILED)
    except RecursionError:
        # JSON that parses can still nest deeper than a recursive walk (validation, JSONPath) can follow.
        message = "the input, payload or definition is nested too deeply to process: flatten it"
        if _wants_json(args):
            print_json(error_envelope(message, [{"path": "/", "message": message, "code": "NESTED_TOO_DEEPLY"}],
                                      command=_typed_command(args)))
        else:
            sys.stderr.write(f"error: {message}\n")
        sys.exit(EXIT_BAD_INPUT)
    except (typer.Abort, getattr(click, "Abort", typer.Abort)):
        # Ctrl-C at a prompt (destroy's confirmation): nothing was done.
        sys.stderr.write("\naborted: nothing done\n")
        sys.exit(EXIT_FAILED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
