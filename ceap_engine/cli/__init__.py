"""The ``ceap`` command (composition root: the one place that wires adapters to the engine)."""

from .app import app, main

__all__ = ["app", "main"]
