"""Faults to inject into a workflow run: a throttled or raced candidate store, a killed process.

Everything here wraps a real port or handler (no patching): hand the wrapper to
:class:`~ceap_engine.testing.WorkflowTestEnvironment` or a stage context.

A store where half the writes are throttled once (as DynamoDB reports items it
left unprocessed after its own retries)::

    store = FaultyCandidateStore(MemoryCandidateStore(), throttle_share=0.5, throttle_times=1)
    env = WorkflowTestEnvironment(candidates=store)

A concurrent writer that gets in between a Store's reads and its writes::

    store = FaultyCandidateStore(inner, before_write=apply_consumed_event)

A process killed (``kill -9``) right after a stage did its work, before the
engine saw the result - the execution never reaches a terminal status::

    await run_until_killed(env, "realtime", payload, name="daily", stage="Store")
    result = await env.run("realtime", payload, name="daily")   # resumed
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ceap_engine.errors import ObjectNotFound
from ceap_engine.pipeline.layout import PART_LIST
from ceap_engine.pipeline.stage_runtime import make_stage_handler
from ceap_engine.ports import CandidateRecord, CandidateStore, PutResult, ResourceInfo, TaskContext, TaskRunner
from ceap_engine.storage.objects import read_json, write_json

__all__ = ["FaultyCandidateStore", "ProcessKilled", "copy_stage_runner", "run_until_killed"]

Key = tuple[str, str]


class ProcessKilled(BaseException):
    """The process running the execution died (``kill -9``): nothing after this point ran.

    A ``BaseException``, as a real kill is not an error any Retry or Catch could see.
    """


def _share_selects(key: Key, share: float) -> bool:
    digest = hashlib.sha256(f"{key[0]}|{key[1]}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


class FaultyCandidateStore:
    """A :class:`~ceap_engine.ports.CandidateStore` around ``inner`` that fails as told.

    ``throttle_share`` of the keys (chosen by a hash, so the same keys every run)
    are throttled on their first ``throttle_times`` writes (``None``: always):
    reported in ``PutResult.failed`` and ``retryable`` without being written, as
    DynamoDB reports items still unprocessed after the adapter's retries.
    ``before_write`` is awaited before each ``put_batch`` that carries
    conditions, with the records about to be written - a concurrent writer's
    moment. ``throttled`` counts the throttled writes.
    """

    def __init__(
        self,
        inner: CandidateStore,
        *,
        throttle_share: float = 0.0,
        throttle_times: int | None = 1,
        before_write: Callable[[Sequence[CandidateRecord]], Awaitable[None]] | None = None,
    ) -> None:
        self.inner = inner
        self.throttle_share = throttle_share
        self.throttle_times = throttle_times
        self.before_write = before_write
        self.throttled = 0
        self._attempts: dict[Key, int] = {}

    def _throttles(self, key: Key) -> bool:
        if not _share_selects(key, self.throttle_share):
            return False
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        return self.throttle_times is None or attempt <= self.throttle_times

    async def put_batch(
        self,
        records: Sequence[CandidateRecord],
        *,
        expected_versions: Mapping[Key, int | None] | None = None,
    ) -> PutResult:
        if expected_versions and self.before_write is not None:
            await self.before_write(records)
        throttled = [r.key for r in records if self._throttles(r.key)]
        self.throttled += len(throttled)
        skip = set(throttled)
        result = await self.inner.put_batch([r for r in records if r.key not in skip],
                                            expected_versions=expected_versions)
        reason = "throttled (injected): the store left the write unprocessed after its retries"
        return PutResult(
            stored=result.stored,
            failed=result.failed + tuple((key, reason) for key in throttled),
            conflicts=result.conflicts,
            retryable=result.retryable + tuple(throttled),
        )

    async def get(self, pk: str, sk: str) -> CandidateRecord | None:
        return await self.inner.get(pk, sk)

    async def query(self, program_id: str, channel: str | None = None, *, marketplace: str | None = None,
                    limit: int | None = None) -> list[CandidateRecord]:
        return await self.inner.query(program_id, channel, marketplace=marketplace, limit=limit)

    async def delete(self, pk: str, sk: str) -> None:
        await self.inner.delete(pk, sk)

    async def claim_engagements(self, keys: Sequence[str], execution_id: str) -> dict[str, str]:
        return await self.inner.claim_engagements(keys, execution_id)


def copy_stage_runner(objects: Any) -> TaskRunner:
    """A ``glue:startJobRun`` runner that copies its input document to its output key (a HeavyETL stand-in).

    For tests of the batch workflow's plumbing without Spark: Score then reads
    Filter's candidates, unenriched.
    """

    async def run(resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
        arguments = parameters["Arguments"]
        document = await read_json(objects, arguments["--input-bucket"], arguments["--input-key"])
        await write_json(objects, arguments["--output-bucket"], arguments["--output-key"], document)
        # The part list beside the manifest is what Score's Distributed Map reads: copy it too
        # (its lines name Filter's parts, which Score reads where they are).
        source = arguments["--input-key"].rsplit("/", 1)[0] + "/" + PART_LIST
        target = arguments["--output-key"].rsplit("/", 1)[0] + "/" + PART_LIST
        try:
            data = await objects.get(arguments["--input-bucket"], source)
        except ObjectNotFound:
            data = None
        if data is not None:
            await objects.put(arguments["--output-bucket"], target, data, content_type="application/x-ndjson")
        return {"Id": f"jr_{context.execution_name}", "JobRunState": "SUCCEEDED", "Arguments": arguments,
                "JobName": parameters.get("JobName")}

    return run


def _killing_handler(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    async def killed(event: Any, lambda_context: Any) -> Any:
        await handler(event, lambda_context)  # the stage's effects happen ...
        raise ProcessKilled(f"killed after {event.get('currentStage')} did its work")  # ... its result is lost

    return killed


def _killing_runner(runner: TaskRunner) -> TaskRunner:
    async def killed(resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
        await runner(resource, parameters, context)
        raise ProcessKilled(f"killed after {context.state_name} did its work")

    return killed


async def run_until_killed(
    env: Any,
    workflow: str,
    payload: Any,
    *,
    name: str,
    stage: str,
    runners: Mapping[str, TaskRunner] | None = None,
) -> None:
    """Run ``workflow`` under ``name`` until the process is "killed" right after ``stage`` did its work.

    The execution's record stays ``RUNNING`` (it never ended), the stages before
    and including ``stage`` have written what they write; nothing else happens.
    ``env`` is a :class:`~ceap_engine.testing.WorkflowTestEnvironment`; make a new
    one on the same stores (a new process) to run the name again.
    """
    from ceap_engine.pipeline import builtin

    spec = builtin(workflow)
    step = spec.stage(stage)
    handlers: dict[str, Any] = {}
    runners = dict(runners or {})
    if step.kind == "lambda":
        handlers[stage] = _killing_handler(make_stage_handler(
            step.function, objects=env.objects, candidates=env.candidates, clock=env.clock, config=step.config))
    else:
        runners["glue:startJobRun"] = _killing_runner(runners["glue:startJobRun"])
    pipeline = env.pipeline(workflow, handlers=handlers, runners=runners)
    execution = await pipeline.start_checked(payload, name=name)
    try:
        await execution.task
    except ProcessKilled:
        return
    raise AssertionError(f"the execution ended without reaching {stage}: {execution.task.result()!r}")
