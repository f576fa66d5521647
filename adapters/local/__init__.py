"""Embedded backends: the defaults of a local run."""

from .candidates import SQLiteCandidateStore
from .journal import SQLiteExecutionJournal
from .objects import FileObjectStore
from .stores import LocalStores

__all__ = ["FileObjectStore", "SQLiteCandidateStore", "SQLiteExecutionJournal", "LocalStores"]
