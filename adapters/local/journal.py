"""The execution journal in SQLite: what lets ``ceap serve`` resume Standard executions.

Three tables: ``executions`` (one row per execution, the DescribeExecution fields),
``events`` (history events as GetExecutionHistory JSON, keyed ``(arn, id)``) and
``resources`` (state machines, versions, aliases, activities, tags: JSON documents by
kind and ARN). WAL with ``synchronous=NORMAL``: a commit survives a killed process
(kill -9), though not a power cut of the machine - enough for a local endpoint, and a
transaction costs ~0.1 ms, so calls run inline on the event loop.

Example::

    journal = SQLiteExecutionJournal(".ceap/serve/journal.sqlite3")
    journal.list_executions(status="RUNNING")
    journal.events(arn, after_id=0, limit=100)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ceap_engine.errors import StorageError
from ceap_engine.ports import ExecutionRecord
from ceap_engine.storage.journal import check_event_ids

__all__ = ["SQLiteExecutionJournal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    arn               TEXT PRIMARY KEY,
    state_machine_arn TEXT NOT NULL,
    name              TEXT NOT NULL,
    type              TEXT NOT NULL,
    status            TEXT NOT NULL,
    start_date        REAL NOT NULL,
    stop_date         REAL,
    input             TEXT NOT NULL,
    output            TEXT,
    error             TEXT,
    cause             TEXT,
    extra             TEXT NOT NULL      -- JSON object
);
CREATE INDEX IF NOT EXISTS executions_by_machine ON executions (state_machine_arn, start_date);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status);
CREATE TABLE IF NOT EXISTS events (
    arn   TEXT NOT NULL,
    id    INTEGER NOT NULL,
    event TEXT NOT NULL,                 -- the event as GetExecutionHistory returns it, JSON
    PRIMARY KEY (arn, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resources (
    kind     TEXT NOT NULL,
    arn      TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (kind, arn)
);
"""

_COLUMNS = "arn, state_machine_arn, name, type, status, start_date, stop_date, input, output, error, cause, extra"


def _record(row: tuple) -> ExecutionRecord:
    return ExecutionRecord(
        execution_arn=row[0], state_machine_arn=row[1], name=row[2], type=row[3], status=row[4],
        start_date=row[5], stop_date=row[6], input=row[7], output=row[8], error=row[9], cause=row[10],
        extra=json.loads(row[11]),
    )


class SQLiteExecutionJournal:
    """An :class:`~ceap_engine.ports.ExecutionJournal` in one SQLite file."""

    def __init__(self, path: Path | str, *, timeout: float = 10.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the execution journal {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def _write(self, statements: list[tuple[str, Sequence[Any]]] | None = None, many: tuple[str, list] | None = None) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for sql, args in statements or ():
                        self._db.execute(sql, args)
                    if many is not None:
                        self._db.executemany(*many)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"execution journal {self.path}: {exc}") from exc

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"execution journal {self.path}: {exc}") from exc

    # -- executions ------------------------------------------------------------
    def put_execution(self, record: ExecutionRecord) -> None:
        self._write([(
            f"INSERT OR REPLACE INTO executions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (record.execution_arn, record.state_machine_arn, record.name, record.type, record.status,
             record.start_date, record.stop_date, record.input, record.output, record.error, record.cause,
             json.dumps(dict(record.extra), separators=(",", ":"))),
        )])

    def get_execution(self, execution_arn: str) -> ExecutionRecord | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM executions WHERE arn = ?", (execution_arn,))
        return _record(rows[0]) if rows else None

    def list_executions(self, state_machine_arn: str | None = None, status: str | None = None) -> list[ExecutionRecord]:
        where, args = [], []
        if state_machine_arn is not None:
            where.append("state_machine_arn = ?")
            args.append(state_machine_arn)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT {_COLUMNS} FROM executions{clause} ORDER BY start_date DESC, arn DESC", args)
        return [_record(r) for r in rows]

    def delete_execution(self, execution_arn: str) -> None:
        self._write([("DELETE FROM executions WHERE arn = ?", (execution_arn,)),
                     ("DELETE FROM events WHERE arn = ?", (execution_arn,))])

    # -- events ----------------------------------------------------------------
    def append_events(self, execution_arn: str, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    last = self._db.execute("SELECT MAX(id) FROM events WHERE arn = ?", (execution_arn,)).fetchone()[0] or 0
                    check_event_ids(execution_arn, last, events)
                    self._db.executemany(
                        "INSERT INTO events (arn, id, event) VALUES (?,?,?)",
                        [(execution_arn, e["id"], json.dumps(e, separators=(",", ":"))) for e in events],
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"execution journal {self.path}: {exc}") from exc

    def events(self, execution_arn: str, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        rows = self._read("SELECT event FROM events WHERE arn = ? AND id > ? ORDER BY id LIMIT ?",
                          (execution_arn, after_id, -1 if limit is None else limit))
        return [json.loads(r[0]) for r in rows]

    # -- resources -------------------------------------------------------------
    def put_resource(self, kind: str, arn: str, document: Mapping[str, Any]) -> None:
        text = json.dumps(dict(document), separators=(",", ":"))
        # Keep the first-stored position on replace, so listings do not reorder on update.
        self._write([(
            ("INSERT INTO resources (kind, arn, seq, document) VALUES "
             "(?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM resources), ?) "
             "ON CONFLICT (kind, arn) DO UPDATE SET document = excluded.document"),
            (kind, arn, text),
        )])

    def delete_resource(self, kind: str, arn: str) -> None:
        self._write([("DELETE FROM resources WHERE kind = ? AND arn = ?", (kind, arn))])

    def resources(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._read("SELECT document FROM resources WHERE kind = ? ORDER BY seq", (kind,))]

    def close(self) -> None:
        with self._lock:
            self._db.close()
