"""Execution names of local runs: ceap's rule, modelled on Step Functions' StartExecution.

Every local run records the execution that holds its name at
``executions/{name}/execution.json`` in the workflow bucket (workflow, digest of
the input, status, start and stop times), written when it starts (``RUNNING``)
and again when it ends. Starting a run under a name already recorded:

===================================  ==========================================================
earlier run under the name           what a new start with that name does
===================================  ==========================================================
none                                 starts
same input, never ended (kill -9)    resumes: runs again under the name; stages are idempotent,
                                     so what was done is not done twice
same input, ended                    says so (:attr:`NameClaim.rerun`) and runs again - the same
                                     rows, the same actions
different input (any status)         refused with :class:`~ceap_engine.errors.ExecutionAlreadyExists`
                                     naming the earlier run, unless ``replace``: then the earlier
                                     run's objects under ``executions/{name}/`` are deleted first
===================================  ==========================================================

AWS's rule for a Standard workflow, for comparison: StartExecution with a name in
use fails with ExecutionAlreadyExists, except that the same name *and* input while
that execution is still open returns the open execution (idempotent); names can be
reused 90 days after the execution closed. Express StartExecution is not
idempotent and does not check names. ceap is stricter than AWS on a closed run
(no 90-day reuse: the name holds the run's outputs) and kinder on an open one
(a crashed local run cannot stay open, so it is resumed).

Example::

    claim = await claim_name(objects, bucket, "daily", payload, workflow="realtime", clock=clock)
    claim.rerun   # the earlier record when the same input already ran under "daily"
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ceap_engine.errors import ExecutionAlreadyExists, ObjectNotFound
from ceap_engine.pipeline.layout import EXECUTIONS_PREFIX, execution_record_key
from ceap_engine.ports import Clock, ObjectStore
from ceap_engine.storage.objects import read_json, write_json

__all__ = ["TERMINAL_STATUSES", "NameClaim", "claim_name", "input_digest", "record_end", "record_start"]

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


def input_digest(payload: Any) -> str:
    """The SHA-256 of the input as canonical JSON (key order and spacing do not count).

    >>> input_digest({"b": 1, "a": 2}) == input_digest({"a": 2, "b": 1})
    True
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NameClaim:
    """The outcome of :func:`claim_name`: the name may be used.

    ``earlier`` is the record found under the name (``None``: first use); ``resumed``
    means that run never ended and this one takes it over; ``rerun`` that it ended
    with the same input; ``replaced`` that it had another input and was discarded.
    """

    name: str
    earlier: dict[str, Any] | None = None
    resumed: bool = False
    rerun: bool = False
    replaced: bool = False

    def describe(self) -> str | None:
        """One line for the user about the earlier run under this name (``None`` on first use)."""
        if self.earlier is None:
            return None
        when = self.earlier.get("startedAt", "?")
        if self.resumed:
            return f"execution {self.name} started at {when} never finished: resuming it (done work is not redone)"
        if self.rerun:
            return (f"execution {self.name} already ran with this input ({self.earlier.get('status')} at "
                    f"{self.earlier.get('stoppedAt', when)}): running it again, idempotently")
        if self.replaced:
            return f"execution {self.name} of {when} (another input) was replaced: its outputs were deleted"
        return None


async def _read_record(objects: ObjectStore, bucket: str, name: str) -> dict[str, Any] | None:
    try:
        record = await read_json(objects, bucket, execution_record_key(name))
    except ObjectNotFound:
        return None
    except ValueError:
        return {"status": "UNKNOWN", "inputSha256": None}  # unreadable: treat as another input
    return record if isinstance(record, dict) else {"status": "UNKNOWN", "inputSha256": None}


async def claim_name(
    objects: ObjectStore,
    bucket: str,
    name: str,
    payload: Any,
    *,
    workflow: str,
    replace: bool = False,
) -> NameClaim:
    """Check ``name`` against the run recorded under it (see the module doc); raise or say how to go on.

    Raises :class:`~ceap_engine.errors.ExecutionAlreadyExists` when the name holds a
    run of another input and ``replace`` is false; writes nothing in that case.
    """
    earlier = await _read_record(objects, bucket, name)
    if earlier is None:
        return NameClaim(name)
    same_input = earlier.get("inputSha256") == input_digest(payload) and earlier.get("workflow") == workflow
    if same_input:
        if earlier.get("status") in TERMINAL_STATUSES:
            return NameClaim(name, earlier, rerun=True)
        return NameClaim(name, earlier, resumed=True)
    if not replace:
        raise ExecutionAlreadyExists(
            f"execution name {name!r} is taken: workflow {earlier.get('workflow', '?')} ran under it at "
            f"{earlier.get('startedAt', '?')} (status {earlier.get('status', '?')}) with another input "
            f"(sha256 {str(earlier.get('inputSha256'))[:12]}..., this one {input_digest(payload)[:12]}...); "
            "choose another --execution-name, or pass --replace to delete that run's outputs and reuse the name",
            earlier,
        )
    prefix = f"{EXECUTIONS_PREFIX}/{name}/"
    for key in await objects.list(bucket, prefix):
        await objects.delete(bucket, key)
    return NameClaim(name, earlier, replaced=True)


async def record_start(
    objects: ObjectStore, bucket: str, name: str, payload: Any, *, workflow: str, clock: Clock
) -> dict[str, Any]:
    """Record that ``name`` now runs ``payload`` (status ``RUNNING``); return the record."""
    record = {
        "name": name,
        "workflow": workflow,
        "inputSha256": input_digest(payload),
        "status": "RUNNING",
        "startedAt": clock.now().isoformat(),
    }
    await write_json(objects, bucket, execution_record_key(name), record)
    return record


async def record_end(objects: ObjectStore, bucket: str, record: dict[str, Any], status: str, *, clock: Clock) -> None:
    """Record how the run under ``record["name"]`` ended."""
    await write_json(objects, bucket, execution_record_key(record["name"]),
                     {**record, "status": status, "stoppedAt": clock.now().isoformat()})
