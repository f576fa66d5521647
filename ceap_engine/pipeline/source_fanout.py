"""The calls of a first stage that fans out over byte ranges of its source (ETL in the built-in workflows).

The built definition runs such a stage as ``<Stage>.Plan``, a Map of ``<Stage>.Range`` calls, a
Map of ``<Stage>.Merge`` calls and ``<Stage>.Manifest`` (docs/architecture.md). Each request
names its step (``"step": "plan" | "range" | "merge"``, or ``"assemble": true``) and this module
runs the stage's :class:`~ceap_engine.pipeline.stage.SourceSteps` for it, keeping what passes
between the calls in the bucket beside the stage's manifest::

    executions/{id}/ETL/plan.json         the execution input, the plan, a fresh planId
    executions/{id}/ETL/ranges.jsonl      the Range Map's items (a Distributed Map's ItemReader)
    executions/{id}/ETL/groups.jsonl      the Merge Map's items
    executions/{id}/ETL/ranges/00003.json what range 3 counted
    executions/{id}/ETL/merges/00002.json what group 2 counted

Retries: a range call overwrites its own scratch (same keys, same bytes). A merge call stores
its summary, then removes the scratch it consumed; a retry that finds its summary of this plan
(same planId) returns it instead of merging again, because the scratch it would need is gone.

Example::

    pointer = await invoke_source_step(request, steps, stage_input_of, data, context)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ceap_engine.errors import ObjectNotFound
from ceap_engine.pipeline.layout import GROUP_LIST, PLAN_DOCUMENT, RANGE_LIST, step_key
from ceap_engine.pipeline.stage import PermanentError, SourceSteps, StageContext
from ceap_engine.pipeline.stage_data import StageData
from ceap_engine.ports import ObjectStore

__all__ = ["SOURCE_STEPS", "invoke_source_step"]

#: The request's ``step`` values, besides ``assemble`` (the Manifest step).
SOURCE_STEPS = ("plan", "range", "merge")
#: At most this many scratch objects are removed at once after a merge.
_DELETES_IN_FLIGHT = 16


def _summary_key(execution_id: str, stage: str, step: str, index: int) -> str:
    return step_key(execution_id, stage, f"{step}s/{index:05d}.json")


async def _put_json(objects: ObjectStore, bucket: str, key: str, value: Any) -> None:
    await objects.put(bucket, key, json.dumps(value, separators=(",", ":"), allow_nan=False).encode(), "application/json")


async def _get_json(objects: ObjectStore, bucket: str, key: str, missing: str) -> Any:
    try:
        return json.loads(await objects.get(bucket, key))
    except ObjectNotFound:
        raise PermanentError(f"{missing} (s3://{bucket}/{key} is missing)") from None


def _item(event: Mapping[str, Any], name: str) -> dict[str, Any]:
    item = event.get(name)
    if not isinstance(item, Mapping) or not isinstance(item.get("index"), int):
        raise PermanentError(f"a {name} call needs '{name}': an object with an integer index, got {json.dumps(item)[:200]}")
    return dict(item)


async def invoke_source_step(
    event: Mapping[str, Any],
    steps: SourceSteps,
    parse_input: Callable[[Any], Any],
    data: StageData,
    ctx: StageContext,
) -> dict[str, Any]:
    """Run the step ``event`` asks for; return what the state machine gets (small: items, counts, a pointer)."""
    objects, bucket, execution, stage = data.store, data.bucket, data.execution_id, data.stage
    step = event.get("step")
    if step == "plan":
        if event.get("input") is None:
            raise PermanentError(f"{stage} is the first stage and needs the execution input in the request's 'input'")
        stage_input = parse_input(event["input"])
        plan = await steps.plan(stage_input, ctx)
        document = {"planId": uuid.uuid4().hex, "input": event["input"], **plan}
        await _put_json(objects, bucket, step_key(execution, stage, PLAN_DOCUMENT), document)
        for name, items in ((RANGE_LIST, plan["ranges"]), (GROUP_LIST, plan["groups"])):
            body = b"".join(json.dumps(i, separators=(",", ":")).encode() + b"\n" for i in items)
            await objects.put(bucket, step_key(execution, stage, name), body, "application/x-ndjson")
        # partCount: how many calls the next Map makes (what a progress display counts down).
        return {"stage": stage, "ranges": plan["ranges"], "groups": plan["groups"], "partCount": len(plan["ranges"]),
                "rangeCount": len(plan["ranges"]), "groupCount": len(plan["groups"]),
                "counts": {"ranges": len(plan["ranges"]), "groups": len(plan["groups"]), "partitions": plan.get("partitions")}}

    document = await _get_json(objects, bucket, step_key(execution, stage, PLAN_DOCUMENT),
                               f"{stage} has no plan: its Plan step did not run in execution {execution}")
    stage_input = parse_input(document["input"])
    if step == "range":
        item = _item(event, "range")
        summary = {"planId": document["planId"], **await steps.split(stage_input, ctx, document, item)}
        await _put_json(objects, bucket, _summary_key(execution, stage, "range", item["index"]), summary)
        return {"stage": stage, "range": item["index"], "counts": {"inputCount": summary.get("recordsRead", 0)}}

    ranges = await _summaries(objects, bucket, execution, stage, "range", document)
    if step == "merge":
        item = _item(event, "group")
        key = _summary_key(execution, stage, "merge", item["index"])
        try:
            done = json.loads(await objects.get(bucket, key))
        except ObjectNotFound:
            done = None
        if not (isinstance(done, Mapping) and done.get("planId") == document["planId"]):
            done = {"planId": document["planId"], **await steps.merge(stage_input, ctx, document, item, ranges)}
            await _put_json(objects, bucket, key, done)
        await _delete_all(objects, bucket, done.get("scratch", ()))
        return {"stage": stage, "group": item["index"], "counts": {"inputCount": done.get("candidates", 0)}}
    if not event.get("assemble"):
        raise PermanentError(f"unknown step {step!r} of {stage}: one of {', '.join(SOURCE_STEPS)}, or assemble")
    merges = await _summaries(objects, bucket, execution, stage, "merge", document)
    output = await steps.finish(stage_input, ctx, document, ranges, merges)
    summary = await data.summarise(0, output, ctx, inputs=None, input_errors=[])
    await data.write_summary(summary)
    return await data.assemble([summary], previous_out=None)


async def _summaries(objects: ObjectStore, bucket: str, execution: str, stage: str, step: str,
                     plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = plan[f"{step}s" if step == "range" else "groups"]
    keys = [_summary_key(execution, stage, step, int(item["index"])) for item in items]
    found = await asyncio.gather(*(
        _get_json(objects, bucket, key, f"{stage}'s {step} {item['index']} did not finish") for key, item in zip(keys, items, strict=True)
    ))
    for summary, key in zip(found, keys, strict=True):
        if summary.get("planId") != plan["planId"]:
            raise PermanentError(f"s3://{bucket}/{key} is from another plan of {stage} (an earlier run of this execution)")
    return list(found)


async def _delete_all(objects: ObjectStore, bucket: str, keys: Any) -> None:
    slots = asyncio.Semaphore(_DELETES_IN_FLIGHT)

    async def delete(key: str) -> None:
        async with slots:
            await objects.delete(bucket, key)

    await asyncio.gather(*(delete(k) for k in keys))
