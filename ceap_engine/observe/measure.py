"""Measure a local execution as AWS would bill it: requests, transitions, time, bytes.

:class:`CountingObjectStore` wraps any :class:`~ceap_engine.ports.ObjectStore`
and counts the S3 requests and bytes going through it; :func:`measure_execution`
turns an execution's history, the stages' wall times and those counts into a
:class:`~ceap_engine.observe.cost.Measurement`.

Example::

    objects = CountingObjectStore(FileObjectStore(root))
    ... run the workflow on ``objects`` with an AttemptStopwatch as progress ...
    measurement = measure_execution(result.execution.to_json(), definition, stages, stopwatch.seconds, objects, counts)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .cost import Measurement, StageMeasure
from .graph import workflow_graph
from .trace import trace_execution

__all__ = ["CountingObjectStore", "measure_execution"]


class CountingObjectStore:
    """An ObjectStore that counts what it is asked (as S3 bills it) and passes everything on.

    Example::

        store = CountingObjectStore(MemoryObjectStore())
        await store.put("b", "k", b"abc"); store.puts, store.bytes_written   # (1, 3)
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.puts = 0  # PUT, COPY, POST and LIST are billed alike
        self.gets = 0
        self.bytes_written = 0

    async def get(self, bucket: str, key: str) -> bytes:
        self.gets += 1
        return await self.inner.get(bucket, key)

    async def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.puts += 1
        self.bytes_written += len(data)
        await self.inner.put(bucket, key, data, content_type)

    async def list(self, bucket: str, prefix: str = "") -> list[str]:
        self.puts += 1
        return await self.inner.list(bucket, prefix)

    async def delete(self, bucket: str, key: str) -> None:
        await self.inner.delete(bucket, key)  # DELETE requests are free

    async def size(self, bucket: str, key: str) -> int:
        self.gets += 1  # HEAD is billed as a GET
        return await self.inner.size(bucket, key)

    async def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        self.gets += 1
        return await self.inner.get_range(bucket, key, start, end)

    def __getattr__(self, name: str) -> Any:
        # Other methods of the wrapped store (streaming reads and writes) pass through uncounted.
        return getattr(self.inner, name)


def measure_execution(
    execution: Mapping[str, Any],
    definition: Mapping[str, Any],
    stages: Sequence[tuple[str, str]],
    wall_times: Mapping[tuple[str, int], float],
    objects: CountingObjectStore,
    counts: Mapping[str, Mapping[str, Any]],
    *,
    workflow: str,
    execution_type: str,
    calls: Mapping[str, int] | None = None,
) -> Measurement:
    """The measurement of one finished execution; ``stages`` are (name, kind) in order.

    ``calls`` counts the task calls by state name (:attr:`AttemptStopwatch.calls`: every
    attempt on every part); without it, each (state, attempt) of ``wall_times`` is one call.
    """
    events = list(execution.get("events") or [])
    trace = trace_execution(events)
    graph = workflow_graph(definition)
    in_map = {n.name for n in graph.nodes if _inside_map(graph, n.group)}
    distributed = [g for g in graph.groups if g.kind == "map" and "distributed" in g.label]
    outer = inner = 0
    for visit in trace.visits:
        cost = 1 + max(0, len(visit.attempts) - 1)  # each retry is one more transition
        if visit.name in in_map:
            inner += cost
        else:
            outer += cost
    measured = []
    for name, kind in stages:
        # A stage's states: itself, or its part calls and manifest step (``Filter.Part``, ``Filter.Manifest``).
        keys = [(s, n) for (s, n) in wall_times if s == name or s.startswith(f"{name}.")]
        if calls is not None:
            invocations = sum(count for state, count in calls.items() if state == name or state.startswith(f"{name}."))
        else:
            invocations = len(keys)
        measured.append(StageMeasure(name, kind, invocations, sum(wall_times[key] for key in keys)))
    payloads = [len(str(v)) for e in events for d in e.values() if isinstance(d, dict)
                for k, v in d.items() if k in ("input", "output")]
    waits = sum(b - a for visit in trace.visits for a, b in visit.retry_waits)
    steps = sum(1 for n in graph.nodes if n.type in ("Map", "Parallel"))
    children = sum(1 for e in events if e.get("type") == "MapIterationStarted") if distributed else 0
    child_type = "STANDARD"
    for state in _all_states(definition):
        config = (state.get("ItemProcessor") or {}).get("ProcessorConfig") or {}
        if config.get("Mode") == "DISTRIBUTED":
            child_type = config.get("ExecutionType", "STANDARD")
    etl = counts.get("ETL") or {}
    store = counts.get("Store") or {}
    return Measurement(
        workflow=workflow, execution_type=execution_type,
        records=int(etl.get("processedCount") or 0), transitions=outer, map_transitions=inner,
        distributed_children=children, child_type=child_type, stages=measured,
        s3_puts=objects.puts, s3_gets=objects.gets, s3_bytes_written=objects.bytes_written,
        candidates_written=int(store.get("storedCount") or 0),
        definition_bytes=len(json.dumps(definition)), max_payload_bytes=max(payloads, default=0),
        parallel_or_map_steps=steps, retry_wait_seconds=waits,
        input_bytes=len(json.dumps(execution.get("input"))),
    )


def _inside_map(graph: Any, group: str | None) -> bool:
    while group is not None:
        g = next(x for x in graph.groups if x.key == group)
        if g.kind == "map":
            return True
        group = g.parent
    return False


def _all_states(definition: Mapping[str, Any]):
    for state in (definition.get("States") or {}).values():
        yield state
        for branch in state.get("Branches") or []:
            yield from _all_states(branch)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if isinstance(processor, Mapping):
            yield from _all_states(processor)
