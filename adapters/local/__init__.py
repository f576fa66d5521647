"""Embedded backends: the defaults of a local run."""
