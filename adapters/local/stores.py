"""The embedded storage of a local run, opened by name: what a worker process needs.

``ceap run --local`` keeps objects under ``--store DIR`` and candidates in
``DIR/candidates.sqlite3``. A :class:`LocalStores` is that pair as a picklable recipe, so
a worker process (:mod:`ceap_engine.pipeline.workers`) opens the same files the run uses:
SQLite in WAL mode with a busy timeout lets several processes write one database.

    >>> from pathlib import Path
    >>> LocalStores(Path(".ceap")).candidates_path
    PosixPath('.ceap/candidates.sqlite3')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ceap_engine.ports import Clock

from .candidates import SQLiteCandidateStore
from .objects import FileObjectStore

__all__ = ["CANDIDATES_FILE", "LocalStores"]

#: The candidate database's file name inside the store folder.
CANDIDATES_FILE = "candidates.sqlite3"


@dataclass(frozen=True)
class LocalStores:
    """The object store folder ``root`` and its candidate database, opened per call."""

    root: Path

    @property
    def candidates_path(self) -> Path:
        return self.root / CANDIDATES_FILE

    def __call__(self, clock: Clock) -> tuple[FileObjectStore, SQLiteCandidateStore]:
        return FileObjectStore(self.root), SQLiteCandidateStore(self.candidates_path, clock=clock)
