"""Embedded backends: the defaults of a local run."""

from .candidates import SQLiteCandidateStore
from .objects import FileObjectStore

__all__ = ["FileObjectStore", "SQLiteCandidateStore"]
