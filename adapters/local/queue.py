"""Queues in SQLite: durable, shared by processes, with SQS semantics (the local twin of SQS).

One file holds every queue of a store folder (``.ceap/queues.sqlite3``): a
``queues`` table (name, settings) and a ``messages`` table. A receive picks and
hides messages in one ``BEGIN IMMEDIATE`` transaction, so two processes polling
the same queue never get the same delivery, and a process killed with ``kill -9``
loses nothing: its in-flight messages come back when their visibility timeout
ends, as on SQS. Time is the injected clock's (visibility, delay, retention and
long polling are virtual under a :class:`~ceap_engine.runtime.clock.VirtualClock`);
across processes use real time.

Why calls run inline on the event loop: each statement is well under a
millisecond (WAL, ``synchronous=NORMAL``); what can hold the loop is waiting up to
``timeout`` seconds for another process's write lock (the busy timeout).

Example::

    queues = SQLiteQueues(".ceap/queues.sqlite3")
    await queues.create_queue("ceap-workflow-demo-queue", QueueSettings(visibility_timeout=600))
    await queues.send("ceap-workflow-demo-queue", OutgoingMessage('{"programId": "p1"}'))
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ceap_engine.errors import QueueError, QueueNotFound, StorageError
from ceap_engine.ports import (
    BatchEntryFailure,
    Clock,
    MessageAttribute,
    OutgoingMessage,
    QueueCounts,
    QueueSettings,
    ReceivedMessage,
    RedrivePolicy,
    SendBatchResult,
    SentMessage,
)
from ceap_engine.runtime.clock import RealClock, VirtualClock
from ceap_engine.storage import queue as rules

__all__ = ["POLL_INTERVAL", "SQLiteQueues"]

POLL_INTERVAL = 0.05
"""Seconds between looks at the file while a long poll on a real clock waits (another process may send)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name       TEXT PRIMARY KEY,
    settings   TEXT NOT NULL          -- QueueSettings as JSON
);
CREATE TABLE IF NOT EXISTS messages (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,   -- arrival order
    queue             TEXT NOT NULL,
    message_id        TEXT NOT NULL UNIQUE,
    body              TEXT NOT NULL,
    attributes        TEXT NOT NULL,  -- JSON: name -> [data_type, string or null, base64 or null]
    sent_at           REAL NOT NULL,  -- the original enqueue time (kept when dead-lettered)
    visible_at        REAL NOT NULL,
    receive_count     INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL,
    receipt           TEXT,
    dead_letter_source TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, seq);
"""

_COLUMNS = ("seq, message_id, body, attributes, sent_at, visible_at, receive_count, first_received_at, receipt, "
            "dead_letter_source")


def _encode_attributes(attributes: Mapping[str, MessageAttribute]) -> str:
    return json.dumps({
        name: [a.data_type, a.string_value,
               None if a.binary_value is None else base64.b64encode(bytes(a.binary_value)).decode()]
        for name, a in attributes.items()
    })


def _decode_attributes(text: str) -> dict[str, MessageAttribute]:
    return {
        name: MessageAttribute(kind, string, None if binary is None else base64.b64decode(binary))
        for name, (kind, string, binary) in json.loads(text).items()
    }


def _settings_json(settings: QueueSettings) -> str:
    return json.dumps(dataclasses.asdict(settings), sort_keys=True)


def _settings_of(text: str) -> QueueSettings:
    values = json.loads(text)
    redrive = values.pop("redrive")
    return QueueSettings(**values, redrive=RedrivePolicy(**redrive) if redrive else None)


def _received(row: sqlite3.Row, *, receipt: bool = True) -> ReceivedMessage:
    attributes = _decode_attributes(row["attributes"])
    return ReceivedMessage(
        message_id=row["message_id"], receipt_handle=(row["receipt"] or "") if receipt else "", body=row["body"],
        md5_of_body=rules.md5_of_body(row["body"]), receive_count=row["receive_count"], sent_at=row["sent_at"],
        first_received_at=row["first_received_at"], attributes=attributes,
        md5_of_attributes=rules.md5_of_attributes(attributes), dead_letter_source=row["dead_letter_source"],
    )


class SQLiteQueues:
    """A :class:`~ceap_engine.ports.Queues` in one SQLite file (or ``":memory:"``).

    ``timeout`` is the busy timeout: how long a call waits for another process's
    write lock before failing with a :class:`~ceap_engine.errors.StorageError`.
    Close with :meth:`close` or use as a context manager.

    >>> import asyncio
    >>> with SQLiteQueues(":memory:") as queues:
    ...     asyncio.run(queues.create_queue("q"))
    ...     asyncio.run(queues.send("q", OutgoingMessage("hello"))).md5_of_body
    '5d41402abc4b2a76b9719d911017c592'
    """

    def __init__(self, path: Path | str = ".ceap/queues.sqlite3", *, clock: Clock | None = None,
                 timeout: float = 5.0) -> None:
        self.path = path if path == ":memory:" else Path(path)
        self.clock = clock or RealClock()
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._wake: dict[str, asyncio.Event] = {}
        with self._errors("opening"):
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SQLiteQueues:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageError(f"the queue database {self.path} failed while {what}: {exc} "
                               "(another process may hold it locked for longer than the busy timeout)") from exc

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors(what):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _event(self, queue: str) -> asyncio.Event:
        return self._wake.setdefault(queue, asyncio.Event())

    def _settings(self, db: sqlite3.Connection, name: str) -> QueueSettings:
        row = db.execute("SELECT settings FROM queues WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise QueueNotFound(name)
        return _settings_of(row["settings"])

    # -- queues ----------------------------------------------------------------
    async def create_queue(self, name: str, settings: QueueSettings | None = None) -> None:
        rules.check_queue_name(name)
        settings = rules.check_settings(settings or QueueSettings())
        with self._transaction(f"creating queue {name}") as db:
            row = db.execute("SELECT settings FROM queues WHERE name = ?", (name,)).fetchone()
            if row is None:
                db.execute("INSERT INTO queues (name, settings) VALUES (?, ?)", (name, _settings_json(settings)))
            elif _settings_of(row["settings"]) != settings:
                raise QueueError("QueueNameExists", f"A queue named {name!r} already exists with different attributes.")

    async def settings(self, name: str) -> QueueSettings:
        with self._lock, self._errors(f"reading queue {name}"):
            return self._settings(self._db, name)

    async def list_queues(self, prefix: str = "") -> list[str]:
        with self._lock, self._errors("listing queues"):
            rows = self._db.execute("SELECT name FROM queues ORDER BY name").fetchall()
        return [r["name"] for r in rows if r["name"].startswith(prefix)]

    # -- sending ---------------------------------------------------------------
    @staticmethod
    def _insert(db: sqlite3.Connection, queue: str, message: OutgoingMessage, *, now: float, delay: int,
                sent_at: float | None = None) -> str:
        message_id = uuid.uuid4().hex
        db.execute("INSERT INTO messages (queue, message_id, body, attributes, sent_at, visible_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (queue, message_id, message.body, _encode_attributes(message.attributes or {}),
                    now if sent_at is None else sent_at, now + delay))
        return message_id

    async def send(self, queue: str, message: OutgoingMessage) -> SentMessage:
        result = await self.send_batch(queue, [message], _single=True)
        if result.failed:
            failure = result.failed[0]
            raise QueueError(failure.code, failure.message, sender_fault=failure.sender_fault)
        return result.successful[0]

    async def send_batch(self, queue: str, messages: Sequence[OutgoingMessage], *,
                         _single: bool = False) -> SendBatchResult:
        if not _single:
            rules.check_send_batch(messages)
        sent, failed = [], []
        with self._transaction(f"sending to queue {queue}") as db:
            settings = self._settings(db, queue)
            now = self.clock.time()
            for message in messages:
                try:
                    rules.check_message(message, settings.maximum_message_size)
                except QueueError as exc:
                    if _single:
                        raise
                    failed.append(BatchEntryFailure(message.id, exc.code, exc.message, exc.sender_fault))
                    continue
                delay = settings.delay_seconds if message.delay_seconds is None else message.delay_seconds
                message_id = self._insert(db, queue, message, now=now, delay=delay)
                sent.append(SentMessage(message.id, message_id, rules.md5_of_body(message.body),
                                        rules.md5_of_attributes(message.attributes or {})))
        self._event(queue).set()
        return SendBatchResult(tuple(sent), tuple(failed))

    # -- receiving -------------------------------------------------------------
    def _take(self, queue: str, max_messages: int, visibility: int | None) -> list[ReceivedMessage]:
        out: list[ReceivedMessage] = []
        with self._transaction(f"receiving from queue {queue}") as db:
            settings = self._settings(db, queue)
            hide_for = settings.visibility_timeout if visibility is None else visibility
            now = self.clock.time()
            # Scan in arrival order, a chunk at a time, so a long queue costs what its head costs; expired
            # and dead-lettered messages leave on the way.
            dlq_exists = None
            after = -1
            while len(out) < max_messages:
                rows = db.execute(f"SELECT {_COLUMNS} FROM messages WHERE queue = ? AND visible_at <= ? AND seq > ? "
                                  "ORDER BY seq LIMIT ?", (queue, now, after, max_messages * 2)).fetchall()
                if not rows:
                    break
                for row in rows:
                    after = row["seq"]
                    if len(out) >= max_messages:
                        break
                    verdict = rules.delivery(sent_at=row["sent_at"], visible_at=row["visible_at"],
                                             receive_count=row["receive_count"], settings=settings, now=now)
                    if verdict == rules.EXPIRE:
                        db.execute("DELETE FROM messages WHERE seq = ?", (row["seq"],))
                    elif verdict == rules.DEAD_LETTER:
                        dlq = settings.redrive.dead_letter_queue  # type: ignore[union-attr]
                        if dlq_exists is None:
                            dlq_exists = db.execute("SELECT 1 FROM queues WHERE name = ?", (dlq,)).fetchone() is not None
                        db.execute("DELETE FROM messages WHERE seq = ?", (row["seq"],))
                        if dlq_exists:  # as on SQS, a redrive policy naming a deleted DLQ drops the message
                            db.execute(
                                "INSERT INTO messages (queue, message_id, body, attributes, sent_at, visible_at, "
                                "receive_count, first_received_at, dead_letter_source) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (dlq, row["message_id"], row["body"], row["attributes"], row["sent_at"], now,
                                 row["receive_count"], row["first_received_at"], queue))
                            self._event(dlq).set()
                    elif verdict == rules.DELIVER:
                        receipt = rules.new_receipt_handle(queue, row["message_id"])
                        first = row["first_received_at"] if row["first_received_at"] is not None else now
                        db.execute("UPDATE messages SET receive_count = receive_count + 1, first_received_at = ?, "
                                   "visible_at = ?, receipt = ? WHERE seq = ?",
                                   (first, now + hide_for, receipt, row["seq"]))
                        delivered = db.execute(f"SELECT {_COLUMNS} FROM messages WHERE seq = ?",
                                               (row["seq"],)).fetchone()
                        out.append(_received(delivered))
        return out

    async def receive(self, queue: str, max_messages: int = 1, *, visibility_timeout: int | None = None,
                      wait_seconds: int | None = None) -> list[ReceivedMessage]:
        rules.check_max_messages(max_messages)
        if visibility_timeout is not None:
            rules.check_visibility(visibility_timeout)
        settings = await self.settings(queue)
        wait = settings.receive_wait_seconds if wait_seconds is None else rules.check_wait_seconds(wait_seconds)

        async def take() -> list[ReceivedMessage]:
            return self._take(queue, max_messages, visibility_timeout)

        async def next_due() -> float | None:
            with self._lock, self._errors(f"reading queue {queue}"):
                row = self._db.execute("SELECT MIN(visible_at) AS due FROM messages WHERE queue = ?",
                                       (queue,)).fetchone()
            return row["due"]

        # Another process's send is seen by looking again every POLL_INTERVAL of real time; on a
        # virtual clock a wait jumps straight to its end or to the next due message instead.
        interval = None if isinstance(self.clock, VirtualClock) else POLL_INTERVAL
        return await rules.long_poll(self.clock, take, wait, next_due=next_due, wake=self._event(queue),
                                     poll_interval=interval)

    def _current(self, db: sqlite3.Connection, queue: str, receipt_handle: str) -> sqlite3.Row | None:
        message_id = rules.parse_receipt_handle(queue, receipt_handle)
        self._settings(db, queue)
        row = db.execute("SELECT seq, visible_at, receipt FROM messages WHERE queue = ? AND message_id = ?",
                         (queue, message_id)).fetchone()
        return row if row is not None and row["receipt"] == receipt_handle else None

    async def delete(self, queue: str, receipt_handle: str) -> None:
        with self._transaction(f"deleting from queue {queue}") as db:
            row = self._current(db, queue, receipt_handle)
            if row is not None:  # a stale handle (the message was received again since) deletes nothing
                db.execute("DELETE FROM messages WHERE seq = ?", (row["seq"],))

    async def change_visibility(self, queue: str, receipt_handle: str, visibility_timeout: int) -> None:
        rules.check_visibility(visibility_timeout)
        with self._transaction(f"changing visibility in queue {queue}") as db:
            row = self._current(db, queue, receipt_handle)
            now = self.clock.time()
            if row is None or row["visible_at"] <= now:
                raise QueueError("MessageNotInflight", "The message referred to is not in flight.")
            db.execute("UPDATE messages SET visible_at = ? WHERE seq = ?", (now + visibility_timeout, row["seq"]))
        if visibility_timeout == 0:
            self._event(queue).set()

    async def purge(self, queue: str) -> None:
        with self._transaction(f"purging queue {queue}") as db:
            self._settings(db, queue)
            db.execute("DELETE FROM messages WHERE queue = ?", (queue,))

    async def counts(self, queue: str) -> QueueCounts:
        with self._lock, self._errors(f"counting queue {queue}"):
            self._settings(self._db, queue)
            row = self._db.execute(
                "SELECT SUM(visible_at <= :now) AS visible, SUM(visible_at > :now AND receive_count > 0) AS in_flight, "
                "SUM(visible_at > :now AND receive_count = 0) AS delayed FROM messages WHERE queue = :queue",
                {"now": self.clock.time(), "queue": queue}).fetchone()
        return QueueCounts(row["visible"] or 0, row["in_flight"] or 0, row["delayed"] or 0)

    async def peek(self, queue: str, limit: int = 100) -> list[ReceivedMessage]:
        with self._lock, self._errors(f"reading queue {queue}"):
            self._settings(self._db, queue)
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM messages WHERE queue = ? ORDER BY seq LIMIT ?",
                                    (queue, limit)).fetchall()
        return [_received(row, receipt=False) for row in rows]

    async def dead_letter_sources(self, queue: str) -> list[str]:
        with self._lock, self._errors("listing queues"):
            self._settings(self._db, queue)
            rows = self._db.execute("SELECT name, settings FROM queues ORDER BY name").fetchall()
        out = []
        for row in rows:
            redrive = _settings_of(row["settings"]).redrive
            if redrive is not None and redrive.dead_letter_queue == queue:
                out.append(row["name"])
        return out

    async def move_messages(self, source: str, destination: str | None = None) -> int:
        sources = await self.dead_letter_sources(source)
        if destination is None and not sources:
            raise QueueError("InvalidParameterValue", f"{source!r} is not the dead-letter queue of any queue: "
                             "name a destination queue")
        moved = 0
        with self._transaction(f"moving messages out of queue {source}") as db:
            known = {r["name"] for r in db.execute("SELECT name FROM queues").fetchall()}
            if destination is not None and destination not in known:
                raise QueueNotFound(destination)
            now = self.clock.time()
            rows = db.execute(f"SELECT {_COLUMNS} FROM messages WHERE queue = ? ORDER BY seq", (source,)).fetchall()
            for row in rows:
                target = destination or row["dead_letter_source"]
                if target is None or target not in known:
                    continue  # no known source queue: the message stays in the DLQ
                db.execute("DELETE FROM messages WHERE seq = ?", (row["seq"],))
                message = OutgoingMessage(row["body"], attributes=_decode_attributes(row["attributes"]))
                self._insert(db, target, message, now=now, delay=0)
                self._event(target).set()
                moved += 1
        return moved
