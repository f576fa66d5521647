"""A stage's data in parts: reading the previous manifest, writing parts, summaries and the manifest.

The stage runtime calls a stage once per part of its input (each call can be one Lambda
invocation under a Map state) and this module does the I/O around the call:

* :class:`PreviousOutput` reads the previous stage's manifest and one part at a time;
* :func:`parse_part_input` validates a part's records with the stage's input model and
  isolates the records that fail (reason ``INVALID_RECORD``) instead of failing the part;
* :meth:`StageData.summarise` writes the output's record lists as parts of their own
  streams (``candidates`` -> ``part-00000.jsonl``, ``rejected``, ``unscored``, ``failed``,
  ``errors``...) and what the call counted as ``summaries/00000.json``; a record that holds
  a non-finite number is moved to the errors part (``NON_FINITE``), never written;
* :meth:`StageData.assemble` (after the Map) adds up the summaries into the stage's
  manifest (``output.json``) and part list (``parts.jsonl``), and checks the
  reconciliation: ``in = out + rejected + errors + skipped (+ merged)`` for the stage, and
  ``in`` = the previous stage's ``out``. A link that does not hold fails the stage
  (``Ceap.PermanentError``: re-running cannot make lost records reappear) after writing
  the manifest, so the summary can show where the records went missing.

Example::

    data = StageData(store, "bucket", "e-1", "Filter")
    previous = await data.previous("ETL")
    for part in previous.parts: ...
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ceap_engine.errors import ObjectNotFound
from ceap_engine.pipeline.layout import (
    RECORDS_STREAM,
    execution_key,
    part_key,
    part_list_key,
    summary_key,
)
from ceap_engine.pipeline.record_codec import RecordCodec, encode_struct, encode_structs
from ceap_engine.pipeline.stage import PermanentError, StageContext
from ceap_engine.ports import ObjectStore
from ceap_engine.storage.parts import (
    MANIFEST_KIND,
    NonFiniteNumber,
    PartInfo,
    PartWriter,
    decode_line,
    encode_record,
    manifest_document,
    parse_manifest,
    split_lines,
)

__all__ = [
    "ERRORS_STREAM",
    "InputPart",
    "PartOutput",
    "PreviousOutput",
    "StageData",
    "describe_errors",
    "parse_part_input",
    "parse_wire_input",
    "record_fields",
]

ERRORS_STREAM = "errors"
ACTIONS_STREAM = "actions"
#: Fields of a summary or output that are the reconciliation, not the stage's own header.
_NOT_HEADER = {"metrics", "reconciliation"}


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """pydantic errors as one readable line: ``dateRange.end: ...; source: Field required``."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{where}: {err.get('msg')}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def record_fields(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` that are lists of records (pydantic models): each is a stream of parts.

    >>> from pydantic import BaseModel, create_model
    >>> R = create_model("R", x=(int, ...))
    >>> O = create_model("O", candidates=(list[R], ...), note=(str, ""))
    >>> record_fields(O)
    ['candidates']
    """
    names = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if get_origin(annotation) is list:
            (item,) = get_args(annotation) or (None,)
            if isinstance(item, type) and issubclass(item, BaseModel):
                names.append(name)
    return names


def _alias(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    return info.alias or name


@dataclass(frozen=True, slots=True)
class InputPart:
    """One part of the previous stage's records, as a Map item names it."""

    index: int
    key: str
    records: int
    inline: tuple[bytes, ...] | None = None  # a previous output that was one plain document

    def to_item(self) -> dict[str, Any]:
        return {"index": self.index, "key": self.key, "records": self.records}


@dataclass
class PreviousOutput:
    """The previous stage's manifest: its header fields, its record parts and how many it handed on."""

    store: ObjectStore
    bucket: str
    key: str
    header: dict[str, Any]
    parts: list[InputPart]
    out: int

    def where(self, part: InputPart) -> str:
        return f"s3://{self.bucket}/{part.key}"

    def part_at(self, index: int, key: str) -> InputPart:
        if 0 <= index < len(self.parts) and self.parts[index].key == key:
            return self.parts[index]
        raise PermanentError(
            f"part {index} ({key}) is not in the part list of s3://{self.bucket}/{self.key}: "
            "the Map's items must come from that manifest's partList"
        )

    async def lines_of(self, part: InputPart) -> list[bytes]:
        if part.inline is not None:
            return list(part.inline)
        try:
            lines = split_lines(await self.store.get(self.bucket, part.key))
        except ObjectNotFound:
            raise PermanentError(f"part {part.key} listed in s3://{self.bucket}/{self.key} is missing") from None
        # The part's bytes, split, are garbage now - but the finished future of the read still holds
        # them for as long as the event loop's callback that resumed this task runs, which is until
        # the task next suspends; a stage call that never suspends (every sync store) would carry
        # the whole part's bytes beside its lines (13 MiB of 10,000 scored candidates). One turn of
        # the loop lets them go.
        await asyncio.sleep(0)
        return lines


def parse_part_input(
    stage: Any, header: Mapping[str, Any], lines: Sequence[bytes], where: str
) -> tuple[BaseModel, list[dict[str, Any]]]:
    """The stage's input model over ``header`` and the part's records, and the records it refused.

    A record that fails validation is left out and returned as an error
    (``INVALID_RECORD``, its position and pydantic's message); a header that fails is the
    stage's :class:`PermanentError` (its input is wrong as a whole).
    """
    model: type[BaseModel] = stage.input_model
    field = _alias(model, RECORDS_STREAM) if RECORDS_STREAM in model.model_fields else RECORDS_STREAM
    head = json.dumps({k: v for k, v in header.items() if k != field}, separators=(",", ":"), default=str).encode()
    errors: list[dict[str, Any]] = []
    kept = list(lines)
    positions = list(range(len(lines)))
    for _ in range(2):
        body = head[:-1] + (b"," if len(head) > 2 else b"") + b'"' + field.encode() + b'":[' + b",".join(kept) + b"]}"
        try:
            return model.model_validate_json(body), errors
        except ValidationError as exc:
            bad: dict[int, str] = {}
            for err in exc.errors():
                loc = err.get("loc", ())
                if len(loc) >= 2 and loc[0] == field and isinstance(loc[1], int):
                    where_in = ".".join(str(p) for p in loc[2:]) or "(record)"
                    bad.setdefault(loc[1], f"{where_in}: {err.get('msg')}")
                else:
                    raise PermanentError(
                        f"{where} is not a valid {model.__name__}: {describe_errors(exc)}"
                    ) from None
            for i in sorted(bad):
                errors.append(_input_error(kept[i], positions[i], bad[i]))
            kept = [line for i, line in enumerate(kept) if i not in bad]
            positions = [p for i, p in enumerate(positions) if i not in bad]
        except ValueError as exc:  # a part that is not JSON at all was not written by ceap
            raise PermanentError(f"{where} is not JSON Lines: {exc}") from None
    raise PermanentError(f"{where}: records keep failing validation")  # pragma: no cover - one pass removes them all


def parse_wire_input(
    model: type[BaseModel], codec: RecordCodec, header: Mapping[str, Any], lines: Sequence[bytes], where: str
) -> tuple[BaseModel, list[dict[str, Any]]]:
    """As :func:`parse_part_input`, with the records decoded by ``codec`` (Structs) instead of the model.

    The header is validated by the model; the records by the codec, which refuses
    exactly the records the model refuses, with the model's message (a projection: in the
    fields it reads, see :mod:`~ceap_engine.pipeline.record_codec`).
    """
    field = _alias(model, RECORDS_STREAM) if RECORDS_STREAM in model.model_fields else RECORDS_STREAM
    try:
        head = model.model_validate({**{k: v for k, v in header.items() if k != field}, field: []})
    except ValidationError as exc:
        raise PermanentError(f"{where} is not a valid {model.__name__}: {describe_errors(exc)}") from None
    records, failures = codec.decode(lines)
    for failure in failures:
        if failure.not_json:  # a part that is not JSON at all was not written by ceap
            raise PermanentError(f"{where} is not a valid {model.__name__}: line {failure.position + 1}: {failure.message}")
    errors = [_input_error(f.line, f.position, f.message) for f in failures]
    return head.model_copy(update={RECORDS_STREAM: records}), errors


def _input_error(line: bytes, position: int, message: str) -> dict[str, Any]:
    error: dict[str, Any] = {"position": position, "reasonCode": "INVALID_RECORD", "message": message}
    try:
        record = decode_line(line)
        if isinstance(record, Mapping) and isinstance(record.get("customerId"), str):
            error["key"] = record["customerId"]
    except ValueError:
        pass
    return error


def _record_key(item: Any) -> str | None:
    key = getattr(item, "key", None)
    if isinstance(key, tuple):
        return "/".join(str(k) for k in key)
    return key if isinstance(key, str) else None


def _encode_items(items: Sequence[Any]) -> list[bytes | NonFiniteNumber]:
    """Each item's line (as :func:`_encode_item`), or the :class:`NonFiniteNumber` that keeps it from being one.

    The Structs of a stage's fast path - consecutive ones together - go through one encoder
    call (:func:`encode_structs`): a part's records are encoded in runs, not one by one.
    """
    out: list[bytes | NonFiniteNumber] = []
    run: list[Any] = []
    for item in items:
        if isinstance(item, bytes | BaseModel):
            if run:
                out.extend(encode_structs(run))
                run = []
            try:
                out.append(_encode_item(item))
            except NonFiniteNumber as exc:
                out.append(exc)
        else:
            run.append(item)
    if run:
        out.extend(encode_structs(run))
    return out


def _encode_item(item: Any) -> bytes:
    if isinstance(item, bytes):  # a line the stage encoded itself (or passed through unchanged)
        return item
    if not isinstance(item, BaseModel):
        # A Struct of a stage's fast path: its numbers were decoded (finite) or checked by the stage.
        return encode_struct(item)
    line = item.__pydantic_serializer__.to_json(item, by_alias=True)
    # Models serialise Infinity/NaN as those constants (ser_json_inf_nan="constants"); the
    # cheap substring test sends only suspicious lines through the strict decoder.
    if b"Infinity" in line or b"NaN" in line:
        decode_line(line)
    return line


def _merge_counts(into: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``other`` into ``into``: numbers add up, mappings merge the same way, lists join (each
    item once, in order: a stage's ``actionsKeys`` over its slices), the rest keeps the first."""
    for key, value in other.items():
        have = into.get(key)
        if isinstance(value, list) and isinstance(have, list):
            into[key] = [*have, *(item for item in value if item not in have)]
        elif isinstance(value, bool) or isinstance(have, bool):
            into[key] = bool(have) or bool(value)
        elif isinstance(value, (int, float)) and isinstance(have, (int, float)):
            into[key] = have + value
        elif isinstance(value, Mapping) and isinstance(have, Mapping):
            into[key] = _merge_counts(dict(have), value)
        elif have is None:
            into[key] = value if not isinstance(value, Mapping) else dict(value)
    return into


#: The terms of a stage's balance: in = out + rejected + errors + skipped + merged.
TERMS = ("out", "rejected", "errors", "skipped", "merged")


class StageData:
    """The object I/O of one stage of one execution (see the module doc)."""

    def __init__(self, store: ObjectStore, bucket: str, execution_id: str, stage: str) -> None:
        self.store, self.bucket, self.execution_id, self.stage = store, bucket, execution_id, stage

    async def previous(self, previous_stage: str) -> PreviousOutput:
        key = execution_key(self.execution_id, previous_stage)
        try:
            raw = await self.store.get(self.bucket, key)
        except ObjectNotFound:
            raise PermanentError(
                f"the output of the previous stage {previous_stage} is missing at s3://{self.bucket}/{key}: "
                f"{self.stage} can only run after {previous_stage} succeeded in execution {self.execution_id}"
            ) from None
        try:
            document = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PermanentError(f"the output of {previous_stage} at s3://{self.bucket}/{key} is not JSON: {exc}") from None
        if isinstance(document, Mapping) and document.get("kind") == MANIFEST_KIND:
            try:
                manifest = parse_manifest(document, f"s3://{self.bucket}/{key}")
            except Exception as exc:
                raise PermanentError(str(exc)) from None
            records = manifest["parts"].get(RECORDS_STREAM, [])
            parts = [InputPart(i, p.key, p.records) for i, p in enumerate(p for p in records if p.records)]
            header = {k: v for k, v in manifest.items() if k not in ("schemaVersion", "kind", "stage", "executionId",
                                                                       "counts", "parts", "partList", *_NOT_HEADER)}
            return PreviousOutput(self.store, self.bucket, key, header, parts, sum(p.records for p in parts))
        # A plain document (written by hand or by a tool that predates parts): one part, in memory.
        if not isinstance(document, Mapping) or not isinstance(document.get(RECORDS_STREAM), list):
            raise PermanentError(
                f"the output of {previous_stage} at s3://{self.bucket}/{key} is neither a stage manifest nor a "
                f"document with a '{RECORDS_STREAM}' list"
            )
        try:
            lines = tuple(encode_record(r) for r in document[RECORDS_STREAM])
        except NonFiniteNumber as exc:
            raise PermanentError(f"the output of {previous_stage} at s3://{self.bucket}/{key}: {exc}") from None
        header = {k: v for k, v in document.items() if k not in (RECORDS_STREAM, *_NOT_HEADER)}
        parts = [InputPart(0, key, len(lines), inline=lines)] if lines else []
        return PreviousOutput(self.store, self.bucket, key, header, parts, len(lines))

    async def summarise(self, index: int, output: Any, ctx: StageContext, *, inputs: int | None,
                        input_errors: list[dict[str, Any]]) -> dict[str, Any]:
        """Write ``output``'s record lists as parts and return what this call counted."""
        sink = self.part_output(index)
        await sink.add(output, inputs=inputs, input_errors=input_errors)
        return await sink.close(ctx)

    def part_output(self, index: int) -> PartOutput:
        """The writer of part ``index``'s outputs, for a part whose records go through the stage in slices."""
        return PartOutput(self, index)

    def _reconcile(self, inputs: int | None, parts: Mapping[str, list[PartInfo]], header: Mapping[str, Any],
                   declared: Any) -> dict[str, int]:
        counted = {s: sum(p.records for p in ps) for s, ps in parts.items()}
        if isinstance(declared, Mapping):  # a first stage knows its own input (lines read)
            out = {t: int(declared.get(t, 0)) for t in ("in", *TERMS)}
            out["errors"] = max(out["errors"], counted.get(ERRORS_STREAM, 0))
            return out
        skipped = header.get("skipped")
        return {
            "in": int(inputs or 0),
            "out": counted.get(RECORDS_STREAM, 0) + counted.get(ACTIONS_STREAM, 0),
            "rejected": sum(n for s, n in counted.items() if s not in (RECORDS_STREAM, ACTIONS_STREAM, ERRORS_STREAM)),
            "errors": counted.get(ERRORS_STREAM, 0),
            "skipped": sum(v for v in skipped.values() if isinstance(v, int)) if isinstance(skipped, Mapping) else 0,
            "merged": 0,
        }

    async def write_summary(self, summary: Mapping[str, Any]) -> None:
        await self.store.put(self.bucket, summary_key(self.execution_id, self.stage, summary["index"]),
                             json.dumps(summary, separators=(",", ":"), allow_nan=False).encode(), "application/json")

    async def read_summaries(self, count: int) -> list[dict[str, Any]]:
        out = []
        for index in range(count):
            key = summary_key(self.execution_id, self.stage, index)
            try:
                out.append(json.loads(await self.store.get(self.bucket, key)))
            except ObjectNotFound:
                raise PermanentError(
                    f"{self.stage} has no summary for part {index} (s3://{self.bucket}/{key}): its Map iteration "
                    "did not finish, so the stage's output cannot be assembled"
                ) from None
        return out

    async def assemble(self, summaries: Sequence[Mapping[str, Any]], *, previous_out: int | None) -> dict[str, Any]:
        """Write the manifest and part list from the summaries; check the reconciliation; return the pointer."""
        header: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        totals = {t: 0 for t in ("in", *TERMS)}
        parts: dict[str, list[PartInfo]] = {}
        for summary in sorted(summaries, key=lambda s: s["index"]):
            _merge_counts(header, summary.get("header") or {})
            _merge_counts(metrics, summary.get("metrics") or {})
            for term, value in (summary.get("reconciliation") or {}).items():
                totals[term] = totals.get(term, 0) + int(value)
            for stream, entries in (summary.get("parts") or {}).items():
                parts.setdefault(stream, []).extend(PartInfo.from_json(e) for e in entries)
        parts.setdefault(RECORDS_STREAM, [])
        parts.setdefault(ERRORS_STREAM, [])
        handed_on = [p for p in parts[RECORDS_STREAM] if p.records]
        list_key = part_list_key(self.execution_id, self.stage)
        items = [{"index": i, "key": p.key, "records": p.records} for i, p in enumerate(handed_on)]
        body = b"".join(json.dumps(item, separators=(",", ":")).encode() + b"\n" for item in items)
        await self.store.put(self.bucket, list_key, body, "application/x-ndjson")
        balance = totals["in"] - sum(totals[t] for t in TERMS)
        reconciliation: dict[str, Any] = {**totals, "balanced": balance == 0}
        if previous_out is not None:
            reconciliation["previousOut"] = previous_out
            reconciliation["chained"] = previous_out == totals["in"]
        manifest = manifest_document(stage=self.stage, execution_id=self.execution_id, header=header, metrics=metrics,
                                     parts=parts, part_list=list_key, reconciliation=reconciliation)
        out_key = execution_key(self.execution_id, self.stage)
        await self.store.put(self.bucket, out_key, json.dumps(manifest, separators=(",", ":"), allow_nan=False,
                                                              ensure_ascii=False).encode(), "application/json")
        problems = []
        if balance:
            problems.append(
                f"{self.stage} took in {totals['in']} records but accounted for {totals['in'] - balance} "
                f"(out {totals['out']} + rejected {totals['rejected']} + errors {totals['errors']} + skipped "
                f"{totals['skipped']} + merged {totals['merged']}): {abs(balance)} records "
                f"{'vanished' if balance > 0 else 'appeared from nowhere'}"
            )
        if previous_out is not None and previous_out != totals["in"]:
            problems.append(f"the previous stage handed on {previous_out} records but {self.stage} read {totals['in']}")
        if problems:
            raise PermanentError(f"reconciliation failed: {'; '.join(problems)} (see s3://{self.bucket}/{out_key})")
        return {
            "stage": self.stage,
            "outputKey": out_key,
            "counts": metrics,
            "partList": list_key,
            "partCount": len(items),
            "parts": items,
        }


class PartOutput:
    """One part's outputs, written as the stage returns them: once, or slice by slice.

    Each :meth:`add` writes an output's record lists through writers that stay open, so
    the slices of one part land in the same part objects, in order, as one output would;
    :meth:`close` writes what is left and returns the part's summary, its header,
    metrics and declared reconciliation added up over the slices (as :meth:`StageData.assemble`
    adds up parts).
    """

    def __init__(self, data: StageData, index: int) -> None:
        self.data, self.index = data, index
        self.writers: dict[str, PartWriter] = {}
        self.errors = self._writer(ERRORS_STREAM)
        self.header: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.declared: dict[str, Any] | None = None
        self.inputs: int | None = None

    def _writer(self, stream: str) -> PartWriter:
        data = self.data
        return PartWriter(data.store, data.bucket,
                          lambda n: part_key(data.execution_id, data.stage, stream, self.index, n))

    async def add(self, output: Any, *, inputs: int | None, input_errors: list[dict[str, Any]]) -> None:
        stage = self.data.stage
        if not isinstance(output, BaseModel):
            raise TypeError(f"stage {stage} returned {type(output).__name__}; it must return its pydantic output model")
        model = type(output)
        streams = record_fields(model)
        for error in input_errors:
            await self.errors.add({"stage": stage, "part": self.index, **error})
        for name in streams:
            stream = _alias(model, name) if name != RECORDS_STREAM else RECORDS_STREAM
            if stream == ERRORS_STREAM:
                writer = self.errors
            else:
                writer = self.writers.get(stream) or self.writers.setdefault(stream, self._writer(stream))
            items = getattr(output, name)
            lines = _encode_items(items)
            if stream != ERRORS_STREAM and all(type(line) is bytes for line in lines):
                await writer.add_lines(lines)  # every item encoded: the lines go in as a run
                continue
            for item, line in zip(items, lines, strict=True):
                if isinstance(line, NonFiniteNumber):
                    await self.errors.add({"stage": stage, "part": self.index, "key": _record_key(item),
                                           "reasonCode": "NON_FINITE", "message": f"{stream}: {line}"})
                    continue
                if stream == ERRORS_STREAM:
                    line = _with_stage(line, stage, self.index)
                if not writer.try_add(line):
                    await writer.add_line(line)
        document = output.model_dump(mode="json", by_alias=True, exclude=set(streams))
        metrics = document.pop("metrics", None)
        declared = document.pop("reconciliation", None)
        _merge_counts(self.header, document)
        _merge_counts(self.metrics, metrics if isinstance(metrics, Mapping) else {})
        if isinstance(declared, Mapping):
            self.declared = _merge_counts(self.declared or {}, declared)
        if inputs is not None:
            self.inputs = (self.inputs or 0) + inputs

    async def close(self, ctx: StageContext) -> dict[str, Any]:
        parts: dict[str, list[PartInfo]] = {}
        for stream, writer in self.writers.items():
            parts[stream] = await writer.close()
        for stream, written in ctx.written_parts().items():
            parts.setdefault(stream, []).extend(written)
        parts[ERRORS_STREAM] = [*parts.get(ERRORS_STREAM, []), *await self.errors.close()]
        return {
            "index": self.index,
            "header": self.header,
            "metrics": self.metrics,
            "parts": {s: [p.to_json() for p in ps] for s, ps in parts.items()},
            "reconciliation": self.data._reconcile(self.inputs, parts, self.header, self.declared),
        }


def _with_stage(line: bytes, stage: str, index: int) -> bytes:
    record = decode_line(line)
    if isinstance(record, dict):
        record = {"stage": stage, "part": index, **record}
    return encode_record(record)
