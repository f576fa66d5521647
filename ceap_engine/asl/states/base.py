"""The base of the compiled states: :class:`State`, and :class:`Retrying` (Retry and Catch).

Each state is compiled once from its (already validated) definition. At run
time :meth:`State.run` receives the running :class:`~ceap_engine.asl.frame.Frame`
and the state's raw input and returns ``(output, next_state_name)``;
``next_state_name`` is ``None`` when the state ends its (sub-)machine. The
Entered/Exited events around it are written by the interpreter's loop; the
events inside (Task*, Map*, Parallel*) are written by the states.

A state fails by raising :class:`~ceap_engine.errors.StatesError`; a
:class:`Terminal` error is one that Retry and Catch never see.

Example::

    class Noop(State):
        type = "Noop"
        sync = True

        def step(self, frame, raw):
            return raw, self.next
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ceap_engine.asl.retry import BackoffSchedule, Retrier, decide, find_catcher

from ...errors import StatesError
from ..flow import CatchClause, DataFlow
from ..frame import Frame
from ..history import EventShape

__all__ = ["Retrying", "State", "Terminal", "error_object"]


class Terminal(StatesError):
    """An error that fails the execution without Retry or Catch (States.Runtime,
    a state's own output over the payload limit)."""



def error_object(err: StatesError) -> dict[str, Any]:
    """The ``{"Error", "Cause"}`` document a catcher receives."""
    return {"Error": err.error, "Cause": err.cause if err.cause is not None else ""}



class State:
    """Base of the compiled states."""

    type: str = ""
    entered_type: str = ""
    exited_type: str = ""
    writes_exit_event = True
    has_retry_count = False
    #: The state's work needs no await: the state loop calls :meth:`step` instead of :meth:`run`.
    sync = False

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow | None) -> None:
        self.name = name
        self.raw = raw
        self.language = language
        self.flow = flow
        self.next: str | None = raw.get("Next")
        self.end = bool(raw.get("End", False))
        self.assign = flow.compile_assign(raw["Assign"]) if (flow is not None and "Assign" in raw) else None
        self.jsonata = language == "JSONata"
        self.entered_type = f"{self.type}StateEntered"
        self.exited_type = f"{self.type}StateExited"
        self.entered_shape = EventShape("input", after={"name": name})
        self.exited_shape = EventShape("output", before={"name": name})

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        """Run on ``raw`` input; return ``(output, next state name or None at the end)``."""
        return self.step(frame, raw)

    def step(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:  # pragma: no cover - abstract
        """:meth:`run` without a coroutine, for the states whose work never awaits (``sync``)."""
        raise NotImplementedError

    def finish(self, frame: Frame, raw: Any, result: Any) -> tuple[Any, str | None]:
        """Apply the data flow's output side (and Assign) and pick the next state."""
        if self.assign is None:
            return self.flow.output(frame, raw, result), self.next
        return self.flow.output_assigning(frame, raw, result, self.assign), self.next


# -- retry / catch ----------------------------------------------------------


class Retrying(State):
    """Task, Map and Parallel: states with Retry and Catch."""

    has_retry_count = True
    #: Event written once the state gives up on a failure (after its retries).
    failed_event: str | None = None

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow | None,
                 catch_compiler: Callable[[dict, int], CatchClause]) -> None:
        super().__init__(name, raw, language, flow)
        self.retriers = tuple(
            Retrier(
                tuple(r["ErrorEquals"]),
                BackoffSchedule(
                    r.get("IntervalSeconds", 1),
                    r.get("BackoffRate", 2.0),
                    r.get("MaxAttempts", 3),
                    r.get("MaxDelaySeconds"),
                    r.get("JitterStrategy", "NONE"),
                ),
            )
            for r in raw.get("Retry", ())
        )
        self.catchers = tuple(catch_compiler(c, i) for i, c in enumerate(raw.get("Catch", ())))
        self._catchers_plain = tuple(c.catcher for c in self.catchers)

    async def attempt(self, frame: Frame, raw: Any, effective: Any) -> tuple[Any, str | None]:
        raise NotImplementedError  # pragma: no cover

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        effective = self.flow.effective_input(frame, raw)
        attempts: list[int] | None = None
        while True:
            try:
                return await self.attempt(frame, raw, effective)
            except Terminal:
                raise
            except StatesError as err:
                attempts, delay = self.retry_delay(frame, err, attempts)
                if delay is None:
                    return self.give_up(frame, raw, err)
                await frame.clock.sleep(delay)

    def retry_delay(self, frame: Frame, err: StatesError, attempts: list[int] | None) -> tuple[list[int] | None, float | None]:
        """After a failed attempt: the retriers' attempt counts and the delay before the next attempt
        (``None``: no retry, give up)."""
        retriers = self.retriers
        if not retriers:
            return attempts, None
        if attempts is None:
            attempts = [0] * len(retriers)
        decision = decide(retriers, attempts, err.error, frame.rng)
        if not decision.retry:
            return attempts, None
        attempts[decision.retrier_index] += 1  # type: ignore[index]
        frame.retry_count += 1
        frame.invalidate_context()
        return attempts, decision.delay

    def give_up(self, frame: Frame, raw: Any, err: StatesError) -> tuple[Any, str | None]:
        """No more retries: the state's Failed event, then a matching catcher's output, or ``err`` raised."""
        if self.failed_event is not None:
            frame.event(self.failed_event)
        clause = self._find_clause(err.error)
        if clause is None:
            raise err
        return self.caught(frame, raw, clause, err)

    def _find_clause(self, error: str) -> CatchClause | None:
        if not self.catchers:
            return None
        plain = find_catcher(self._catchers_plain, error)
        return None if plain is None else self.catchers[plain.index]

    def caught(self, frame: Frame, raw: Any, clause: CatchClause, err: StatesError) -> tuple[Any, str | None]:
        document = error_object(err)
        if clause.assign is not None:
            frame.pending_assign = self.flow.assign_error(frame, raw, document, clause.assign)  # type: ignore[attr-defined]
        return self.flow.error_output(frame, raw, clause, document), clause.catcher.next

