"""``ceap graph``: draw a state machine (a shipped workflow or any ASL definition)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import CeapError, InputError, Problem, ValidationFailed
from ._options import OutputFormat
from ._output import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    console,
    emit_problems,
    envelope,
    print_json,
    tolerate_broken_pipe,
    write_output_file,
)

__all__ = ["graph"]

_SUFFIXES = (".svg", ".png", ".html", ".dot")


class GraphWorkflow(str, Enum):
    realtime = "realtime"
    batch = "batch"


def load_graph_definition(definition: Path | None, workflow: str | None) -> tuple[dict[str, Any], str]:
    """The definition to draw and its title: a file, or a shipped workflow as it is built and deployed."""
    if (definition is None) == (workflow is None):
        raise InputError([Problem("/definition", "give a DEFINITION.json file or --workflow realtime|batch (one of them)")],
                         "arguments")
    if workflow is not None:
        from ceap_engine.pipeline import builtin
        from ceap_engine.pipeline.builder import build_definition

        return build_definition(builtin(workflow)), f"workflow {workflow}"
    from .asl import read_definition

    document = read_definition(definition)  # type: ignore[arg-type]
    if not isinstance(document, dict):
        raise InputError([Problem("/", f"{definition} is not an ASL definition (a JSON object with StartAt and States)")],
                         "state machine definition")
    return document, definition.stem  # type: ignore[union-attr]


def graph(
    definition: Annotated[Path | None, typer.Argument(help="An ASL definition (JSON file); or use --workflow.")] = None,
    workflow: Annotated[GraphWorkflow | None, typer.Option("--workflow", help="A shipped workflow: realtime or batch")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="FILE.svg, FILE.png, FILE.html (a page) or FILE.dot; default: DOT text on stdout")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="text or json: how the result or the error is reported (without -o the DOT text is the JSON's 'dot')")] = OutputFormat.text,
) -> None:
    """Draw a state machine as a graph: SVG, PNG, an HTML page, or DOT text.

    States are nodes by type, Next/Default/Choice/Catch/Retry edges are labelled, Map and
    Parallel are nested groups, terminal states are doubly outlined.

    SVG, PNG and HTML are laid out by Graphviz's 'dot' (Debian/Ubuntu: apt-get install graphviz).
    Exit codes: 0 written, 2 bad definition or arguments, or Graphviz missing (nothing written).
    """
    from ceap_engine.observe.dot import Graphviz, GraphvizMissing, to_dot
    from ceap_engine.observe.graph import workflow_graph
    from ceap_engine.observe.report import graph_page

    try:
        document, title = load_graph_definition(definition, workflow.value if workflow else None)
        suffix = output.suffix.lower() if output is not None else ".dot"
        if suffix not in _SUFFIXES:
            raise InputError([Problem("/output", f"-o {output}: the file name must end in {', '.join(_SUFFIXES)}")], "arguments")
        model = workflow_graph(document)
        layout = Graphviz()
        if suffix == ".dot":
            data = to_dot(model, title=title).encode("utf-8")
        elif suffix == ".html":
            data = graph_page(document, layout.svg, title=title).encode("utf-8")
        else:
            data = layout.render(to_dot(model, title=title), suffix[1:])
    except ValidationFailed as exc:
        emit_problems(exc, format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except GraphvizMissing as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc), "GRAPHVIZ_MISSING")], "environment"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except CeapError as exc:
        emit_problems(ValidationFailed([Problem("/", str(exc), "ERROR")], "graph"), format.value)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if output is not None:
        try:
            write_output_file(output, data)
        except ValidationFailed as exc:
            emit_problems(exc, format.value)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    if format is OutputFormat.json:
        # Without -o the DOT text is the "dot" field: stdout stays one JSON document.
        print_json(envelope({"output": str(output) if output else None, "states": len(model.nodes),
                             "transitions": len(model.edges), "dot": None if output else data.decode("utf-8")}))
    elif output is None:
        with tolerate_broken_pipe():
            typer.echo(data.decode("utf-8"), nl=False)
    else:
        console.print(f"wrote {output} ({len(model.nodes)} states, {len(model.edges)} transitions)")
    raise typer.Exit(EXIT_OK)
