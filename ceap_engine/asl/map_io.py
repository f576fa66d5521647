"""Distributed Map input and output: ItemReader, ItemBatcher and ResultWriter.

An ``ItemReader`` reads the Map's items from the object store the engine was
given (``Engine(object_store=...)``), the local stand-in for S3::

    "ItemReader": {
      "Resource": "arn:aws:states:::s3:getObject",
      "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW", "MaxItems": 100},
      "Parameters": {"Bucket": "orders", "Key": "2026/01/orders.csv"}
    }

``s3:getObject`` reads a JSON array, JSON Lines or CSV object; ``s3:listObjectsV2``
iterates over the keys under a prefix. An ``ItemBatcher`` groups the selected
items into ``{"Items": [...], "BatchInput": ...}`` inputs; a ``ResultWriter``
writes the results to the store and makes the Map's result a pointer to them,
as AWS does. A failure to read is ``States.ItemReaderFailed``, one to write
``States.ResultWriterFailed``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any, Protocol

from ..errors import StatesError
from .flow import DataFlow
from .frame import Frame
from .payload import RuntimeFailure, ValuePath, compile_template, to_json

__all__ = ["ItemBatcher", "ItemReader", "write_results"]


class _ResultWriting(Protocol):
    """What :func:`write_results` reads of the Map state."""

    name: str
    language: str
    flow: DataFlow
    result_writer: dict[str, Any] | None

ITEM_READER_FAILED = "States.ItemReaderFailed"
RESULT_WRITER_FAILED = "States.ResultWriterFailed"
_READ_RESOURCES = ("s3:getObject", "s3:listObjectsV2")


def _resource_action(resource: str) -> str:
    # arn:aws:states:::s3:getObject -> s3:getObject
    return ":".join(resource.split(":")[-2:])


def _store(frame: Frame, error: str) -> Any:
    store = getattr(frame.execution, "object_store", None)
    if store is None:
        raise StatesError(
            error,
            "This engine has no object store, so the Map state cannot read or write S3 objects locally: "
            "give it one (the ceap command: ceap asl run --objects DIR; in code: Engine(object_store=...), for "
            "example MemoryObjectStore or FileObjectStore).",
        )
    return store


class _Arguments:
    """``Parameters`` (JSONPath) or ``Arguments`` (JSONata) of a reader or writer."""

    def __init__(self, raw: dict[str, Any], language: str, where: str) -> None:
        self.jsonata = language == "JSONata"
        if self.jsonata:
            from .jsonata_flow import JsonataTemplate

            self.template: Any = JsonataTemplate(raw.get("Arguments", {}), f"{where}/Arguments")
        else:
            self.template = compile_template(raw.get("Parameters", {}), f"{where}/Parameters")

    def evaluate(self, frame: Frame, raw: Any, effective: Any, flow: DataFlow) -> dict[str, Any]:
        if self.jsonata:
            value = self.template.evaluate(frame, flow.states(frame, raw))  # type: ignore[attr-defined]
        else:
            value = self.template.evaluate(effective, frame)
        return value if isinstance(value, dict) else {}


class ItemReader:
    """Where a Distributed Map's items come from (an object, or the keys under a prefix)."""

    def __init__(self, raw: dict[str, Any], language: str) -> None:
        self.action = _resource_action(raw.get("Resource", ""))
        self.config = raw.get("ReaderConfig") or {}
        self.arguments = _Arguments(raw, language, "ItemReader")
        path = self.config.get("MaxItemsPath")
        self.max_items_path = ValuePath(path) if isinstance(path, str) else None

    def _max_items(self, frame: Frame, effective: Any) -> int | None:
        if self.max_items_path is not None:
            value = self.max_items_path.require(effective, frame)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RuntimeFailure(
                    f"The MaxItemsPath field refers to value {to_json(value)} which is not a valid integer: "
                    f"{self.max_items_path.text}"
                )
            return value or None
        value = self.config.get("MaxItems")
        return value if isinstance(value, int) and value > 0 else None

    async def read(self, frame: Frame, raw: Any, effective: Any, flow: DataFlow) -> list[Any]:
        """The items, read from the engine's object store."""
        if self.action not in _READ_RESOURCES:
            raise StatesError(
                ITEM_READER_FAILED,
                f"The ItemReader resource '{self.action}' is not supported locally; use s3:getObject or s3:listObjectsV2",
            )
        arguments = self.arguments.evaluate(frame, raw, effective, flow)
        limit = self._max_items(frame, effective)
        store = _store(frame, ITEM_READER_FAILED)
        bucket = arguments.get("Bucket")
        if not isinstance(bucket, str):
            raise StatesError(ITEM_READER_FAILED, "The ItemReader needs a string 'Bucket' in its Parameters/Arguments")
        try:
            if self.action == "s3:listObjectsV2":
                items = await self._list(store, bucket, arguments.get("Prefix", ""), limit)
            else:
                key = arguments.get("Key")
                if not isinstance(key, str):
                    raise StatesError(ITEM_READER_FAILED, "The ItemReader needs a string 'Key' in its Parameters/Arguments")
                data = await store.get(bucket, key)
                items = self._parse(data, key)
        except StatesError:
            raise
        except Exception as exc:  # noqa: BLE001 - a store's error (missing object, bad key) fails the read
            raise StatesError(ITEM_READER_FAILED, f"{type(exc).__name__}: {exc}") from None
        return items[:limit] if limit else items

    async def _list(self, store: Any, bucket: str, prefix: Any, limit: int | None) -> list[Any]:
        keys = await store.list(bucket, prefix if isinstance(prefix, str) else "")
        if limit:
            keys = keys[:limit]
        items = []
        for key in keys:
            data = await store.get(bucket, key)
            items.append({
                "Etag": f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"',
                "Key": key,
                "Size": len(data),
                "StorageClass": "STANDARD",
            })
        return items

    def _parse(self, data: bytes, key: str) -> list[Any]:
        input_type = self.config.get("InputType", "JSON")
        text = data.decode("utf-8")
        if input_type == "JSON":
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise StatesError(ITEM_READER_FAILED, f"The object '{key}' is not valid JSON: {exc.msg}") from None
            if not isinstance(value, list):
                raise StatesError(
                    ITEM_READER_FAILED, f"The object '{key}' must hold a JSON array of items, not {type(value).__name__}"
                )
            return value
        if input_type == "JSONL":
            items = []
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        items.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise StatesError(
                            ITEM_READER_FAILED, f"Line {number} of '{key}' is not valid JSON: {exc.msg}"
                        ) from None
            return items
        if input_type == "CSV":
            delimiter = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}.get(
                self.config.get("CSVDelimiter", "COMMA"), ","
            )
            rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
            if self.config.get("CSVHeaderLocation", "FIRST_ROW") == "GIVEN":
                headers = list(self.config.get("CSVHeaders") or [])
            else:
                if not rows:
                    return []
                headers, rows = rows[0], rows[1:]
            return [dict(zip(headers, row, strict=False)) for row in rows if row]
        raise StatesError(
            ITEM_READER_FAILED, f"The ReaderConfig InputType '{input_type}' is not supported locally; use JSON, JSONL or CSV"
        )


class ItemBatcher:
    """Groups a Distributed Map's items: each child gets ``{"Items": [...], "BatchInput": ...}``."""

    def __init__(self, raw: dict[str, Any], language: str) -> None:
        self.raw = raw
        self.jsonata = language == "JSONata"
        self.max_items = raw.get("MaxItemsPerBatch")
        self.max_bytes = raw.get("MaxInputBytesPerBatch")
        self.max_items_path = ValuePath(raw["MaxItemsPerBatchPath"]) if "MaxItemsPerBatchPath" in raw else None
        self.max_bytes_path = ValuePath(raw["MaxInputBytesPerBatchPath"]) if "MaxInputBytesPerBatchPath" in raw else None
        if "BatchInput" not in raw:
            self.batch_input: Any = None
        elif self.jsonata:
            from .jsonata_flow import JsonataTemplate

            self.batch_input = JsonataTemplate(raw["BatchInput"], "ItemBatcher/BatchInput")
        else:
            self.batch_input = compile_template(raw["BatchInput"], "BatchInput")

    def _limit(self, frame: Frame, raw: Any, effective: Any, flow: DataFlow, literal: Any, path: ValuePath | None,
               name: str) -> int | None:
        value = literal
        if path is not None:
            value = path.require(effective, frame)
        elif self.jsonata and isinstance(value, str):
            from .jsonata_flow import JsonataTemplate

            value = JsonataTemplate(value, f"ItemBatcher/{name}").evaluate(frame, flow.states(frame, raw))  # type: ignore[attr-defined]
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RuntimeFailure(f"The ItemBatcher field {name} must be a non-negative integer, got {to_json(value)}")
        return value or None

    def batches(self, frame: Frame, raw: Any, effective: Any, flow: DataFlow, items: list[Any]) -> list[Any]:
        max_items = self._limit(frame, raw, effective, flow, self.max_items, self.max_items_path, "MaxItemsPerBatch")
        max_bytes = self._limit(frame, raw, effective, flow, self.max_bytes, self.max_bytes_path, "MaxInputBytesPerBatch")
        batch_input = None
        if self.batch_input is not None:
            if self.jsonata:
                batch_input = self.batch_input.evaluate(frame, flow.states(frame, raw))  # type: ignore[attr-defined]
            else:
                batch_input = self.batch_input.evaluate(effective, frame)
        out: list[Any] = []
        current: list[Any] = []
        size = 0
        for item in items:
            item_size = len(to_json(item).encode("utf-8")) + 1
            full = (max_items is not None and len(current) >= max_items) or (
                max_bytes is not None and current and size + item_size > max_bytes
            )
            if full:
                out.append(current)
                current, size = [], 0
            current.append(item)
            size += item_size
        if current:
            out.append(current)
        return [
            ({"BatchInput": batch_input, "Items": batch} if batch_input is not None else {"Items": batch})
            for batch in out
        ]


async def write_results(frame: Frame, state: _ResultWriting, raw: Any, effective: Any, results: list[Any]) -> Any:
    """Write a Distributed Map's results to the object store; return AWS's pointer result."""
    writer = state.result_writer or {}
    settings = _Arguments(writer, state.language, "ResultWriter").evaluate(frame, raw, effective, state.flow)
    bucket = settings.get("Bucket")
    prefix = settings.get("Prefix", "")
    if not isinstance(bucket, str):
        raise StatesError(RESULT_WRITER_FAILED, "The ResultWriter needs a string 'Bucket' in its Parameters/Arguments")
    store = _store(frame, RESULT_WRITER_FAILED)
    run_id = f"{frame.execution.name}-{state.name}".replace("/", "-")
    base = f"{prefix.rstrip('/')}/{run_id}" if prefix else run_id
    body = json.dumps(results, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    manifest = {
        "DestinationBucket": bucket,
        "MapRunArn": f"{frame.execution.state_machine_arn.replace(':stateMachine:', ':mapRun:')}/{state.name}:{run_id}",
        "ResultFiles": {"SUCCEEDED": [{"Key": f"{base}/SUCCEEDED_0.json", "Size": len(body)}], "FAILED": [], "PENDING": []},
    }
    try:
        await store.put(bucket, f"{base}/SUCCEEDED_0.json", body, "application/json")
        await store.put(bucket, f"{base}/manifest.json", json.dumps(manifest).encode("utf-8"), "application/json")
    except Exception as exc:  # noqa: BLE001 - a store's error fails the write
        raise StatesError(RESULT_WRITER_FAILED, f"{type(exc).__name__}: {exc}") from None
    return {"MapRunArn": manifest["MapRunArn"], "ResultWriterDetails": {"Bucket": bucket, "Key": f"{base}/manifest.json"}}
