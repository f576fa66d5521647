"""The fast codec of a part's records: msgspec Structs, with the stage's pydantic model as the arbiter.

Validating a part's records with a pydantic model costs ~100 µs a record on this kind of
machine (nested models, a Python validator per timestamp); a msgspec ``Struct`` that
mirrors the model decodes the same line in a few µs, straight from the bytes. A stage
declares both (:class:`RecordWire`): the Struct for speed, the model for meaning.

The rule that keeps the two from ever disagreeing: **the fast path only accepts what
the model accepts, with the same values.** The Structs are strict (no string to number
coercion, timestamps with an offset), so every line the fast path refuses - or might
read differently, such as a timestamp in another offset than UTC, which the model
normalises - goes to the model: a line the model refuses is the record's error with
the model's own message (exactly as before), a line the model accepts is re-encoded in
the model's normal form and decoded again. So a record is accepted, refused and
reported the same way with or without the fast path.

A Struct may be a *projection* of the model: only the fields a stage reads, the others skipped
unread (Reactive's ``stages.wire.ActionCandidate``). Then the rule holds for the fields it reads;
a line the model would refuse only for a field the stage never reads is read like any other. Only
for a stage that hands no record on and writes none, over records a stage checked in full wrote.

msgspec was chosen over orjson (which decodes to dicts and still needs validation) and
pydantic-core's JSON (already the slow path): it parses and validates into typed,
slotted objects in one C pass, and its encoder writes them back in one call.

Example::

    codec = RecordCodec(WireCandidate, Candidate)
    records, failures = codec.decode([b'{"customerId":"C1",...}', b'{"customerId":""}'])
    failures[0].position, failures[0].message   # 1, "customerId: String should have at least 1 character"
"""

from __future__ import annotations

import gc
import re
import threading
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from pydantic import BaseModel, ValidationError

__all__ = ["DecodedRecords", "RecordCodec", "RecordFailureAt", "RecordWire", "encode_struct", "encode_structs", "paused_gc"]

# A time of day not followed by "Z" or by six fraction digits and "Z" - an offset ("...+02:00",
# "...-0500", "...+00:00"), a naive "...12:00:00", or a fraction of more than six digits: the model
# converts it to UTC ("Z") and truncates the fraction to microseconds, msgspec would keep the offset
# and round - such lines take the model's path. Every stage writes its timestamps with msgspec, which
# gives six digits or none; a time written otherwise (".5Z", "z") is read by the model too: slower,
# the same result. Found by the literal ':' and two lookaheads: ~1.1 us a 1.5 KB candidate, against
# ~0.9 for the former ':\d\d"', which missed "+0200" and the fractions.
_OFFSET = re.compile(rb':\d\d:\d\d(?!Z")(?!\.\d{6}Z")')
_encoder = msgspec.json.Encoder()


def _nothing(line: bytes) -> None:
    return None


def encode_struct(value: Any) -> bytes:
    """One Struct (or plain JSON value) as a compact JSON line.

    >>> encode_struct({"a": [1, 2.5]})
    b'{"a":[1,2.5]}'
    """
    return _encoder.encode(value)


def encode_structs(values: Sequence[Any]) -> list[bytes]:
    """Many Structs as their JSON lines, as :func:`encode_struct` writes each.

    One encoder call for the whole run costs about half of one call per record (each
    call allocates and grows its own output buffer); JSON text never holds a raw newline
    (strings escape it), so splitting the JSON Lines output gives the lines back.

    >>> encode_structs([{"a": "x\\ny"}, [1]])
    [b'{"a":"x\\\\ny"}', b'[1]']
    """
    if not values:
        return []
    lines = _encoder.encode_lines(values).split(b"\n")
    lines.pop()  # encode_lines ends every line with a newline: the last piece is empty
    return lines


def _json_array(lines: Sequence[bytes]) -> bytes:
    """``b"[" + b",".join(lines) + b"]"`` in one copy of the lines (each ``+`` copied a whole part again).

    >>> _json_array([b"1"]), _json_array([b"1", b"2", b"3"])
    (b'[1]', b'[1,2,3]')
    """
    if len(lines) == 1:
        return b"[" + lines[0] + b"]"
    return b",".join([b"[" + lines[0], *lines[1:-1], lines[-1] + b"]"])


@dataclass(frozen=True, slots=True)
class RecordFailureAt:
    """A line the model refused: its position in the part, the line, and the model's message."""

    position: int
    line: bytes
    message: str
    not_json: bool = False  # the line is not JSON at all (no ceap stage wrote it)


class DecodedRecords(list):  # type: ignore[type-arg]
    """Decoded records, each with the line it was decoded from (``lines[i]`` is ``self[i]``'s).

    A stage may hand a record it did not change on as its line (``bytes``): nothing is
    encoded again, and fields the Struct does not know pass through.
    """

    def __init__(self, records: list[Any], lines: Sequence[bytes]) -> None:
        super().__init__(records)
        self.lines = lines


class RecordCodec:
    """Decodes JSON lines into ``struct`` instances, refusing exactly what ``model`` refuses.

    ``utc_checked``: the Struct itself refuses every timestamp not in UTC (its
    ``__post_init__``), so lines are not scanned for offsets first (:data:`_OFFSET`).
    Only for Structs whose lines are never handed on as they were (a ``+00:00`` is read
    as UTC, the model's value, but its text is not the model's ``Z``), over lines a stage wrote:
    msgspec rounds a fraction past six digits, which the model truncates, and only the scan
    sends such a time to the model (a stage writes six digits at most).
    """

    def __init__(self, struct: type, model: type[BaseModel], *, utc_checked: bool = False) -> None:
        self.struct, self.model = struct, model
        self._scan = _OFFSET.search if not utc_checked else _nothing
        self._one = msgspec.json.Decoder(struct)
        self._many = msgspec.json.Decoder(list[struct])  # type: ignore[valid-type]

    def decode(self, lines: Sequence[bytes]) -> tuple[DecodedRecords, list[RecordFailureAt]]:
        """The records of ``lines`` (in order) and the lines refused, each with its position."""
        if not lines:
            return DecodedRecords([], []), []
        body = _json_array(lines)
        if self._scan(body) is None:
            try:
                return DecodedRecords(self._many.decode(body), lines), []
            except (msgspec.DecodeError, ValueError, TypeError, OverflowError):
                pass  # some line is not for the fast path: find it line by line
        records: list[Any] = []
        kept: list[bytes] = []
        failures: list[RecordFailureAt] = []
        for position, line in enumerate(lines):
            record = self.fast(line)
            if record is not None:
                records.append(record)
                kept.append(line)
                continue
            record = self._by_model(line)
            if isinstance(record, _Refused):
                failures.append(RecordFailureAt(position, line, record.message, record.not_json))
            else:
                records.append(record)
                kept.append(b"")  # a line the model read differently is not handed on as it was
        return DecodedRecords(records, kept), failures

    def decode_own(self, line: bytes) -> Any:
        """A line encoded from one of this codec's records (a stage's scratch data): no model needed."""
        return self._one.decode(line)

    def fast(self, line: bytes) -> Any:
        """The line's record if the fast path takes it, else ``None`` (then ask the model)."""
        if self._scan(line) is None:
            try:
                return self._one.decode(line)
            except (msgspec.DecodeError, ValueError, TypeError, OverflowError):
                return None
        return None

    def decode_line(self, line: bytes) -> Any:
        """One record, or a :class:`_Refused` with the model's message when the model refuses the line."""
        record = self.fast(line)
        return record if record is not None else self._by_model(line)

    def _by_model(self, line: bytes) -> Any:
        try:
            normal = self.model.model_validate_json(line)
        except ValidationError as exc:
            return _Refused(_describe(exc), exc.errors()[0].get("type") == "json_invalid")
        except (ValueError, RecursionError) as exc:
            return _Refused(f"(record): {exc}", True)
        return self._one.decode(normal.__pydantic_serializer__.to_json(normal, by_alias=True))

    def to_model(self, record: Any) -> BaseModel:
        """A Struct as the pydantic model (for callers of a stage's typed API).

        A Struct holding what the model would refuse (a non-finite number a caller put into
        its input with ``model_copy``) comes back as it is, unvalidated, as it went in.
        """
        try:
            return self.model.model_validate_json(_encoder.encode(record))
        except ValidationError:
            return _construct(self.model, record)

    def from_model(self, value: BaseModel) -> Any:
        """A pydantic model instance as the Struct (its values as they are, non-finite numbers too)."""
        return msgspec.convert(value.model_dump(by_alias=True), self.struct)


def _construct(model: type[BaseModel], record: Any) -> BaseModel:
    values = {name: _construct_value(info.annotation, getattr(record, name))
              for name, info in model.model_fields.items() if hasattr(record, name)}
    return model.model_construct(**values)


def _construct_value(annotation: Any, value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        candidates = [annotation, *typing.get_args(annotation)]
        model = next((t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)), None)
        return _construct(model, value) if model is not None else value
    args = typing.get_args(annotation)
    if isinstance(value, list):
        return [_construct_value(args[0] if args else Any, v) for v in value]
    if isinstance(value, dict):
        return {k: _construct_value(args[1] if len(args) == 2 else Any, v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class _Refused:
    message: str
    not_json: bool


def _describe(exc: ValidationError) -> str:
    # As the runtime reports a record refused inside a whole part: the first problem's place and message.
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "(record)"
    return f"{where}: {err.get('msg')}"


@dataclass(frozen=True)
class RecordWire:
    """How the runtime feeds a stage its records fast.

    ``codec`` decodes the part's records (``candidates``) into Structs; ``core`` is the stage
    function over them: it takes the stage's input model holding Structs in its record
    field and returns its output model whose record fields hold Structs (encoded with
    msgspec) or already encoded lines (``bytes``, written as they are). ``slice_records``: how many
    records the runtime hands ``core`` at a time (``None``: its default slice,
    :data:`~ceap_engine.pipeline.stage_runtime.SLICE_RECORDS`); a stage whose per-call cost
    falls with a bigger call (Store: one candidate store transaction a call) may take more.
    """

    codec: RecordCodec
    core: Callable[..., Any]
    slice_records: int | None = None

    def __post_init__(self) -> None:
        size = self.slice_records
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"slice_records must be a whole number >= 1 or None, got {size!r}")


class _CollectorPause:
    """How many holders want the collector paused, and whether it was on before the first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.was_enabled = False


_pause = _CollectorPause()


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a part is decoded, processed and encoded.

    Decoding 10,000 records allocates ~500,000 containers; each allocation burst makes
    the collector walk everything alive, which costs more than the decoding itself (2-3x
    on a part). The records hold no reference cycles worth collecting mid-part; the
    collector runs again as soon as the last part in the process is done. Nested and
    concurrent holds (threads, Map iterations) keep it paused until the last one ends.
    """
    with _pause.lock:
        if _pause.holders == 0:
            _pause.was_enabled = gc.isenabled()
            gc.disable()
        _pause.holders += 1
    try:
        yield
    finally:
        with _pause.lock:
            _pause.holders -= 1
            if _pause.holders == 0 and _pause.was_enabled:
                gc.enable()
