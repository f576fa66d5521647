from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="ceap: run the CEAP pipeline locally on an exact ASL interpreter, or deploy it to AWS.")


@app.callback()
def _root() -> None:
    """ceap: run the CEAP pipeline locally on an exact ASL interpreter, or deploy it to AWS."""


def main() -> None:
    app()
