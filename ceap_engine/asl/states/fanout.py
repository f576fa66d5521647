"""Fan-out states: Parallel and Map (inline and Distributed), and :func:`run_children`.

Example::

    outputs = await run_children(frame, [(branch, value, None) for branch in branches])
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from ceap_engine.ports import Activity

from ...errors import StatesError
from ..flow import ABSENT, CatchClause, DataFlow
from ..frame import Children, Frame, Program
from ..jsonata_flow import describe_type, query_failure
from ..map_io import ItemBatcher, ItemReader, write_results
from ..map_run import MapRun, allowed_failures
from ..payload import RuntimeFailure, ValuePath, compile_template, to_json
from .base import Retrying

__all__ = ["MapState", "ParallelState", "run_children"]


def _as_integer(value: Any) -> Any:
    """AWS reads a Map parameter from a path leniently: ``"1"`` is 1."""
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return value
    return value


def _as_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _quoted(value: Any) -> str:
    """A value as AWS quotes it in Map parameter errors: ``"NoNumber"``, ``"{}"``."""
    return '"' + (value if isinstance(value, str) else to_json(value)) + '"'


class ParallelState(Retrying):
    type = "Parallel"
    failed_event = "ParallelStateFailed"

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow,
                 catch_compiler: Callable[[dict, int], CatchClause], branches: list[Program]) -> None:
        super().__init__(name, raw, language, flow, catch_compiler)
        self.branches = branches

    async def attempt(self, frame: Frame, raw: Any, effective: Any) -> tuple[Any, str | None]:
        branch_input = self.flow.arguments(frame, effective)
        frame.event("ParallelStateStarted")
        results = await run_children(
            frame, [(branch, branch_input, None) for branch in self.branches], max_concurrency=0
        )
        # AWS chains the Exited event to the same event as ParallelStateSucceeded.
        before = frame.last_event
        frame.event("ParallelStateSucceeded")
        frame.last_event = before
        return self.finish(frame, raw, results)


class MapState(Retrying):
    """Inline and Distributed Map: items from the input (or an ItemReader), an
    ItemSelector and ItemBatcher per item, one child run per item."""

    type = "Map"
    failed_event = "MapStateFailed"

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow,
                 catch_compiler: Callable[[dict, int], CatchClause], processor: Program) -> None:
        super().__init__(name, raw, language, flow, catch_compiler)
        self.processor = processor
        config = (raw.get("ItemProcessor") or raw.get("Iterator") or {}).get("ProcessorConfig") or {}
        self.distributed = config.get("Mode") == "DISTRIBUTED"
        self.child_type = config.get("ExecutionType", "STANDARD")
        self.label = raw.get("Label")
        self.items_path = ValuePath(raw["ItemsPath"]) if "ItemsPath" in raw else None
        selector = raw.get("ItemSelector", raw.get("Parameters", ABSENT))
        if self.jsonata:
            self.item_selector: Any = flow.fields.get("ItemSelector")  # type: ignore[attr-defined]
        else:
            self.item_selector = None if selector is ABSENT else compile_template(selector, "ItemSelector")
        self.item_reader = ItemReader(raw["ItemReader"], language) if "ItemReader" in raw else None
        self.item_batcher = ItemBatcher(raw["ItemBatcher"], language) if "ItemBatcher" in raw else None
        self.result_writer = raw.get("ResultWriter")
        self.max_concurrency = raw.get("MaxConcurrency", 0)
        self.max_concurrency_path = ValuePath(raw["MaxConcurrencyPath"]) if "MaxConcurrencyPath" in raw else None
        self.tolerated_count = raw.get("ToleratedFailureCount")
        self.tolerated_count_path = (
            ValuePath(raw["ToleratedFailureCountPath"]) if "ToleratedFailureCountPath" in raw else None
        )
        self.tolerated_percentage = raw.get("ToleratedFailurePercentage")
        self.tolerated_percentage_path = (
            ValuePath(raw["ToleratedFailurePercentagePath"]) if "ToleratedFailurePercentagePath" in raw else None
        )
        self.has_tolerance = any(
            k in raw for k in ("ToleratedFailureCount", "ToleratedFailureCountPath",
                               "ToleratedFailurePercentage", "ToleratedFailurePercentagePath")
        )

    # -- the Map state's own parameters, each from a literal, a path or an expression
    def _jsonata_number(self, frame: Frame, raw: Any, key: str, integer: bool) -> Any:
        flow = self.flow
        if key not in flow.fields:  # type: ignore[attr-defined]
            return None
        value = flow.field(frame, key, raw)  # type: ignore[attr-defined]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
            kind = "integer" if integer else "number"
            raise query_failure(
                frame, key,
                f"The {key} field must evaluate to a non-negative {kind}, but was: {to_json(value)}",
            )
        return int(value) if integer else value

    def concurrency(self, frame: Frame, effective: Any) -> int:
        if self.jsonata:
            value = self._jsonata_number(frame, effective, "MaxConcurrency", True)
            return value or 0
        path = self.max_concurrency_path
        if path is None:
            return int(self.max_concurrency or 0)
        value = _as_integer(path.require(effective, frame))
        if isinstance(value, bool) or not isinstance(value, int):
            raise RuntimeFailure(
                f"The MaxConcurrencyPath field refers to value {_quoted(value)} which is not a valid integer: {path.text}"
            )
        if value < 0:
            raise RuntimeFailure(f"The MaxConcurrencyPath field refers to a negative value: {path.text}")
        return value

    def tolerance(self, frame: Frame, effective: Any, total: int) -> int:
        """How many failed iterations the Map tolerates (AWS: count or percentage, whichever allows more)."""
        count, percentage = self.tolerance_settings(frame, effective)
        return allowed_failures(count, percentage, total)

    def tolerance_settings(self, frame: Frame, effective: Any) -> tuple[int | None, float | None]:
        if self.jsonata:
            count = self._jsonata_number(frame, effective, "ToleratedFailureCount", True)
            percentage = self._jsonata_number(frame, effective, "ToleratedFailurePercentage", False)
        else:
            count = self.tolerated_count
            if self.tolerated_count_path is not None:
                path = self.tolerated_count_path
                count = _as_integer(path.require(effective, frame))
                if isinstance(count, bool) or not isinstance(count, int):
                    raise RuntimeFailure(
                        f"The ToleratedFailureCountPath field refers to value {_quoted(count)} which is not a valid integer: {path.text}"
                    )
            percentage = self.tolerated_percentage
            if self.tolerated_percentage_path is not None:
                path = self.tolerated_percentage_path
                percentage = _as_number(path.require(effective, frame))
                if isinstance(percentage, bool) or not isinstance(percentage, (int, float)):
                    raise RuntimeFailure(
                        f"The ToleratedFailurePercentagePath field refers to value {_quoted(percentage)} which is not a valid float: {path.text}"
                    )
        if count is not None and count < 0:
            raise RuntimeFailure("ToleratedFailureCount cannot be negative.")
        if percentage is not None and not 0 <= percentage <= 100:
            raise RuntimeFailure("ToleratedFailurePercentage must be between 0 and 100.")
        return count, percentage

    # -- items
    def items(self, frame: Frame, raw: Any, effective: Any) -> list[Any]:
        """The items to iterate over (before any ItemReader, ItemSelector or ItemBatcher)."""
        if self.jsonata:
            flow = self.flow
            if "Items" in flow.fields:  # type: ignore[attr-defined]
                template = flow.fields["Items"]  # type: ignore[attr-defined]
                items = template.evaluate(frame, flow.states(frame, raw))  # type: ignore[attr-defined]
                if not isinstance(items, list):
                    shown = template.expression_text
                    raise query_failure(
                        frame, "Items",
                        f"The JSONata expression '{shown}' specified for the field 'Items' returned an unexpected "
                        f"result type. Expected 'array', but was '{describe_type(items)}' for value: {to_json(items)}"
                        if shown is not None else
                        f"The field 'Items' must be an array, but was '{describe_type(items)}' for value: {to_json(items)}",
                    )
                return items
            if not isinstance(raw, list):
                raise query_failure(frame, None, f"Map state input must be an array but was: {to_json(raw)}")
            return raw
        if self.items_path is None:
            items = effective
        else:
            items = self.items_path.require(effective, frame)
        if not isinstance(items, list):
            # AWS names the path without the context object's extra "$" ("$$.x" -> "$.x").
            text = self.items_path.text if self.items_path is not None else "$"
            shown = text[1:] if text.startswith("$$") else text
            raise RuntimeFailure(f'Reference path "{shown}" must point to array.')
        return items

    def select(self, frame: Frame, raw: Any, effective: Any, index: int, item: Any) -> Any:
        """One item's input to its iteration (the ItemSelector, with ``$$.Map.Item``)."""
        selector = self.item_selector
        if selector is None:
            return item
        frame.map_item = (index, item)
        frame.invalidate_context()
        try:
            if self.jsonata:
                return selector.evaluate(frame, self.flow.states(frame, raw))  # type: ignore[attr-defined]
            return selector.evaluate(effective, frame)
        finally:
            frame.map_item = None
            frame.invalidate_context()

    async def attempt(self, frame: Frame, raw: Any, effective: Any) -> tuple[Any, str | None]:
        if self.item_reader is not None:
            items = await self.item_reader.read(frame, raw, effective, self.flow)
        else:
            items = self.items(frame, raw, effective)
        inputs = [self.select(frame, raw, effective, index, item) for index, item in enumerate(items)]
        if self.item_batcher is not None:
            inputs = self.item_batcher.batches(frame, raw, effective, self.flow, inputs)
        children = [(self.processor, value, index) for index, value in enumerate(inputs)]
        concurrency = self.concurrency(frame, effective)
        frame.event("MapStateStarted", {"length": len(children)})
        if self.distributed:
            count, percentage = self.tolerance_settings(frame, effective)
            sizes = [len(v["Items"]) if self.item_batcher is not None and isinstance(v, dict)
                     and isinstance(v.get("Items"), list) else 1 for v in inputs]
            results = await self._run_distributed(frame, children, concurrency, count, percentage, sizes)
        elif not children:
            results = []  # what run_children returns for no children, without its coroutine
        else:
            results = await run_children(
                frame, children, max_concurrency=concurrency, map_name=self.name,
                tolerated_failures=self.tolerance(frame, effective, len(children)),
            )
        if self.result_writer is not None:
            results = await write_results(frame, self, raw, effective, results)
        # AWS chains the Exited event to the same event as MapStateSucceeded.
        before = frame.last_event
        frame.event("MapStateSucceeded")
        frame.last_event = before
        return self.finish(frame, raw, results)

    async def _run_distributed(self, frame: Frame, children: list, concurrency: int, count: int | None,
                               percentage: float | None, sizes: list[int]) -> list[Any]:
        execution = frame.execution
        label = f"/{self.label or self.name}"
        run_arn = (
            f"{execution.state_machine_arn.replace(':stateMachine:', ':mapRun:')}{label}:"
            f"{uuid.UUID(int=frame.rng.getrandbits(128), version=4)}"
        )
        started = frame.event("MapRunStarted", {"mapRunArn": run_arn})
        run = MapRun(run_arn, execution.arn, execution.state_machine_arn + label, execution.clock, sizes,
                     child_type=self.child_type, max_concurrency=concurrency, tolerated_count=count,
                     tolerated_percentage=percentage)
        runs = execution.map_runs
        if runs is not None:
            runs.started(run)
        try:
            results = await run_children(frame, children, record_events=False, threshold_error=True, map_run=run)
        except StatesError:
            frame.last_event = started
            frame.event("MapRunFailed")
            run.finish("FAILED")
            raise
        except BaseException:
            run.finish("ABORTED")
            raise
        else:
            run.results_written = self.result_writer is not None
            run.finish("SUCCEEDED")
        finally:
            if runs is not None:
                runs.ended(run)
        frame.last_event = started
        frame.event("MapRunSucceeded")
        return results


# -- running the children ------------------------------------------------------


async def run_children(
    self: Frame,
    children: Children,
    *,
    max_concurrency: int = 0,
    map_name: str | None = None,
    tolerated_failures: int = 0,
    record_events: bool = True,
    threshold_error: bool = False,
    map_run: MapRun | None = None,
) -> list[Any]:
    """Run sub-programs concurrently; return their outputs in order.

    The first failure beyond ``tolerated_failures`` stops the others and is
    raised - as ``States.ExceedToleratedFailureThreshold`` when
    ``threshold_error`` (a Distributed Map run), else as the child's own error.
    A ``map_run`` (Distributed Map) sets the concurrency and the tolerated
    failures instead, both changeable while it runs, and records each child.

    previousEventId follows what AWS records: each child's first event
    points at the event that started the children; MapIterationSucceeded/
    Failed point at the child's last event; when a child fails the state,
    every abort event (``<Kind>StateAborted``, ``MapIterationAborted``) and
    the state's own Failed event point at the failing child's last event,
    and a Task that failed the iteration is closed with ``TaskStateAborted``.
    """
    execution = self.execution
    clock = execution.clock
    results: list[Any] = [None] * len(children)
    if not children:
        return results
    limit = max_concurrency if max_concurrency and max_concurrency > 0 else len(children)
    semaphore: Any = asyncio.Semaphore(limit) if limit < len(children) else None
    if map_run is not None:
        semaphore = map_run
    failures: list[StatesError] = []
    failed_count = 0
    done_frames: list[Frame] = []
    start_last = self.last_event
    last_iteration_end = 0
    failed_at = 0  # the failing child's last event, once a failure stops the others
    failed_child: list[Frame] = []
    stopped = False
    remaining = [len(children)]

    def aborted(child: Frame, index: int | None) -> None:
        if not record_events:
            return
        if child.state is not None:
            execution.history.add(f"{child.state.type}StateAborted", failed_at or child.last_event)
        if map_name is not None:
            execution.history.add("MapIterationAborted", failed_at or child.last_event,
                                  {"index": index, "name": map_name})

    async def run_child(position: int, program: Program, value: Any, index: int | None, activity: Activity) -> None:
        nonlocal failed_count, stopped, last_iteration_end, failed_at
        with activity:
            if semaphore is not None:
                with activity.idle():
                    await semaphore.acquire()
            try:
                if stopped:
                    return  # a sibling already failed the whole state: never start
                child = self.child(activity, detached=not record_events)
                if map_name is not None:
                    child.event("MapIterationStarted", {"index": index, "name": map_name})
                    if limit > 1:
                        await asyncio.sleep(0)  # every running iteration starts before any goes on
                try:
                    if record_events:
                        results[position] = await execution.run_program(program, value, child)
                    elif map_run is not None:
                        results[position] = await map_run.run_child(
                            position, value, child, lambda: execution.run_detached(program, value, child))
                    else:
                        results[position] = await execution.run_detached(program, value, child)
                except asyncio.CancelledError:
                    aborted(child, index)
                    raise
                except StatesError as err:
                    # Siblings failing at the same instant record their own failure first (as AWS does).
                    await asyncio.sleep(0)
                    if stopped:
                        aborted(child, index)
                        return
                    failed_count += 1
                    end = child.last_event
                    if map_name is not None and record_events:
                        last_iteration_end = execution.history.add(
                            "MapIterationFailed", end, {"index": index, "name": map_name}
                        )
                    if failed_count > (map_run.tolerated if map_run is not None else tolerated_failures):
                        stopped = True
                        if record_events:
                            failed_at = end
                            failed_child.append(child)
                        failure = StatesError(
                            "States.ExceedToleratedFailureThreshold",
                            "The specified tolerated failure threshold was exceeded",
                        ) if threshold_error else err
                        failures.append(failure)
                        raise failure from None
                    if record_events:
                        self.last_event = end
                    return
                if map_name is not None and record_events:
                    last_iteration_end = execution.history.add(
                        "MapIterationSucceeded", child.last_event, {"index": index, "name": map_name}
                    )
                if record_events:
                    self.last_event = child.last_event
                done_frames.append(child)
            finally:
                if semaphore is not None:
                    semaphore.release()
                remaining[0] -= 1
                if stopped or remaining[0] == 0:
                    # This child's end is what wakes the parent: make the parent busy
                    # before this child stops counting, or virtual time could jump
                    # ahead in between.
                    self.activity.wake()

    tasks = []
    for position, (program, value, index) in enumerate(children):
        activity = clock.activity()  # busy from now, before the task first runs
        tasks.append(asyncio.ensure_future(run_child(position, program, value, index, activity)))
    try:
        with self.activity.idle():
            await _gather_fail_fast(tasks)
    except StatesError:
        if failed_child:
            child = failed_child[0]
            if child.state is not None and child.state.type == "Task":
                # The Task that failed its iteration is closed too (recorded on AWS).
                execution.history.add("TaskStateAborted", failed_at)
            self.last_event = failed_at
        raise failures[0] if failures else StatesError("States.Runtime", "a branch failed") from None
    if map_name is not None and last_iteration_end:
        # AWS chains the Map's own closing events to the last iteration's end event.
        self.last_event = last_iteration_end
    elif record_events and self.last_event == start_last and done_frames:
        self.last_event = done_frames[-1].last_event
    return results




async def _gather_fail_fast(tasks: list[asyncio.Future]) -> None:
    """Wait for all tasks; on the first exception cancel the rest, wait for them, re-raise."""
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.cancelled():
                    continue
                exc = t.exception()
                if exc is not None:
                    raise exc
    except BaseException:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
