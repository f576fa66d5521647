"""The root ``ceap`` command; each sub-command group lives in its own module."""

from __future__ import annotations

import typer

from ceap_engine.runtime.collector import tune_collector

from . import asl, aws, cost, executions, graph, queue, run, serve

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


def main() -> None:
    tune_collector()  # many executions in flight: see ceap_engine.runtime.collector
    app()
