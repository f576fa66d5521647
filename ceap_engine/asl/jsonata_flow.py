"""JSONata query language: ``{% ... %}`` expressions, ``Arguments``/``Output``/``Assign``.

A state whose ``QueryLanguage`` is ``JSONata`` gets a :class:`JsonataFlow`
instead of the JSONPath one; its fields are compiled once, when the definition
is loaded, into :class:`JsonataTemplate` objects (a JSON value in which every
string ``"{% expr %}"`` is an expression). An expression sees::

    $states.input        the state's input
    $states.result       the task / Map / Parallel result (Output, Assign)
    $states.errorOutput  the error object (a Catch's Output and Assign)
    $states.context      the context object
    $name                a workflow variable

plus AWS's added functions ``$partition``, ``$range``, ``$hash``, ``$random``,
``$uuid`` and ``$parse``. An expression that fails, returns nothing or returns
a function fails the state with ``States.QueryEvaluationError`` and writes an
``EvaluationFailed`` event, in AWS's words.

Example::

    template = JsonataTemplate({"total": "{% $sum($states.input.items) %}"}, "Output")
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import regex
from jsonata import Jsonata
from jsonata.functions import Functions
from jsonata.regex_engine import RegexFlags
from jsonata.utils import Utils

from ceap_engine.asl.retry import Catcher

from ..errors import StatesError
from .flow import ABSENT, CatchClause, DataFlow
from .frame import Frame
from .payload import to_json

__all__ = [
    "QUERY_EVALUATION_ERROR",
    "JsonataExpression",
    "JsonataFlow",
    "JsonataTemplate",
    "QueryEvaluationFailure",
    "compile_jsonata",
    "compile_jsonata_catch",
    "is_jsonata",
    "query_failure",
]

QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"

_HASH_ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_SAFE_INTEGER = 2**53


def is_jsonata(value: Any) -> bool:
    """Is ``value`` a ``{% ... %}`` JSONata expression string?"""
    return isinstance(value, str) and len(value) >= 4 and value.startswith("{%") and value.endswith("%}")


class JsonataSyntaxError(ValueError):
    """A ``{% %}`` string that is not a JSONata expression."""


class _Undefined(Exception):
    pass


class _Unsupported(Exception):
    pass


class _EvaluationError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- AWS's added functions ---------------------------------------------------------

class _Evaluation:
    """What the added functions need from the running execution: its random
    source and its clock. Evaluation is synchronous, so these are set just
    before each evaluation (``$now()`` is then the same all through it, as
    JSONata wants, and follows a virtual clock)."""

    __slots__ = ("millis", "rng")

    def __init__(self) -> None:
        self.rng = random.Random()
        self.millis = 0


_active = _Evaluation()


def _plain(value: Any) -> Any:
    """A JSONata value as plain JSON data (``null`` objects, sequences and integral floats converted)."""
    if value is Utils.NULL_VALUE:
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer() and abs(value) < _SAFE_INTEGER:
        return int(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise _Unsupported()


def _integer_argument(name: str, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise _EvaluationError(f"The {what} argument of ${name} must be an integer, got {to_json(_plain_or_text(value))}")
    return int(value)


def _plain_or_text(value: Any) -> Any:
    try:
        return _plain(value)
    except _Unsupported:
        return str(value)


def _partition(items: Any, size: Any) -> Any:
    if not isinstance(items, list):
        raise _EvaluationError(f"The first argument of $partition must be an array, got {to_json(_plain_or_text(items))}")
    chunk = _integer_argument("partition", size, "second")
    if chunk <= 0:
        raise _EvaluationError(f"The chunk size of $partition must be a positive integer, got {chunk}")
    values = list(items)
    return [values[i : i + chunk] for i in range(0, len(values), chunk)]


def _range(start: Any, end: Any, step: Any = 1) -> Any:
    first = _integer_argument("range", start, "first")
    last = _integer_argument("range", end, "second")
    stride = _integer_argument("range", step, "third")
    if stride == 0:
        raise _EvaluationError("The step of $range must not be 0")
    span = range(first, last + (1 if stride > 0 else -1), stride)
    if len(span) > 1000:  # measured before anything is allocated
        raise _EvaluationError(f"$range would return {len(span)} items; the limit is 1000")
    values = list(span)
    # A sequence, as JSONata's own functions return: a single item is that item.
    return Utils.create_sequence_from_iter(values)


def _hash(data: Any, algorithm: Any) -> str:
    if not isinstance(data, str):
        raise _EvaluationError(f"The first argument of $hash must be a string, got {to_json(_plain_or_text(data))}")
    name = _HASH_ALGORITHMS.get(algorithm) if isinstance(algorithm, str) else None
    if name is None:
        raise _EvaluationError(
            f"The hash algorithm {to_json(_plain_or_text(algorithm))} is not supported; use one of {', '.join(_HASH_ALGORITHMS)}"
        )
    return hashlib.new(name, data.encode("utf-8")).hexdigest()


def _random(seed: Any = None) -> float:
    if seed is None:
        return _active.rng.random()
    return random.Random(_integer_argument("random", seed, "seed")).random()


def _uuid() -> str:
    return str(uuid.UUID(int=_active.rng.getrandbits(128), version=4))


def _now(picture: Any = None, timezone: Any = None) -> str:
    return Functions.datetime_from_millis(_active.millis, picture, timezone)


def _millis() -> int:
    return _active.millis


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        raise _EvaluationError(f"The argument of $parse must be a string, got {to_json(_plain_or_text(text))}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _EvaluationError(f"$parse could not parse {to_json(text)} as JSON: {exc.msg}") from None
    return Utils.NULL_VALUE if value is None else value


def _eval(*_: Any) -> Any:
    raise _EvaluationError(EVAL_UNSUPPORTED)


#: Step Functions does not allow JSONata's $eval.
EVAL_UNSUPPORTED = "The JSONata function $eval is not supported by Step Functions"
_EVAL_CALL = re.compile(r"\$eval\s*\(")

#: Wall seconds one regular expression may spend matching (ours: AWS documents no
#: figure); a catastrophic pattern fails the evaluation instead of hanging the run.
REGEX_TIMEOUT_SECONDS = 1.0
#: Wall milliseconds one JSONata evaluation may take, and its call depth (ours).
EVALUATION_TIMEOUT_MS = 10_000
EVALUATION_MAX_DEPTH = 500


class _Bounds:
    """Wall time and call depth of one evaluation (jsonata-python's Timebox counts
    from the expression's creation; a compiled expression is reused for hours)."""

    __slots__ = ("deadline", "depth")

    def __init__(self, expression: Jsonata) -> None:
        self.deadline = 0.0
        self.depth = 0

        def entry(expr: Any, input: Any, env: Any) -> None:
            if env.is_parallel_call:
                return
            self.depth += 1
            if self.depth > EVALUATION_MAX_DEPTH:
                raise _EvaluationError(f"The expression nests calls deeper than {EVALUATION_MAX_DEPTH}")
            if time.monotonic() > self.deadline:
                raise _EvaluationError(f"The expression ran for more than {EVALUATION_TIMEOUT_MS} ms")

        def exit(expr: Any, input: Any, env: Any, result: Any) -> None:
            if not env.is_parallel_call:
                self.depth -= 1

        expression.environment.set_evaluate_entry_callback(entry)
        expression.environment.set_evaluate_exit_callback(exit)

    def reset(self) -> None:
        self.deadline = time.monotonic() + EVALUATION_TIMEOUT_MS / 1000
        self.depth = 0


class _BoundedPattern:
    """A compiled regex whose every match is bounded in time (the ``regex`` module's timeout)."""

    __slots__ = ("_pattern",)

    def __init__(self, pattern: Any) -> None:
        self._pattern = pattern

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args, timeout=REGEX_TIMEOUT_SECONDS)
        except TimeoutError:
            raise _EvaluationError(
                f"The regular expression /{self._pattern.pattern}/ took more than {REGEX_TIMEOUT_SECONDS:g} s to match"
            ) from None

    def search(self, string: str) -> Any:
        return self._timed(self._pattern.search, string)

    def finditer(self, string: str) -> Any:
        # Matched eagerly, so that the timeout covers the whole scan.
        return iter(self._timed(lambda text, timeout: list(self._pattern.finditer(text, timeout=timeout)), string))

    def sub(self, repl: Any, string: str, count: int = 0) -> str:
        return self._timed(lambda text, timeout: self._pattern.sub(repl, text, count, timeout=timeout), string)

    def split(self, string: str, maxsplit: int = 0) -> list[str]:
        return self._timed(lambda text, timeout: self._pattern.split(text, maxsplit, timeout=timeout), string)


def _regex_engine(pattern: str, flags: RegexFlags) -> _BoundedPattern:
    options = (regex.IGNORECASE if flags.case_insensitive else 0) | (regex.MULTILINE if flags.multiline else 0)
    return _BoundedPattern(regex.compile(pattern, options))


_AWS_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "eval": _eval,
    "partition": _partition,
    "range": _range,
    "hash": _hash,
    "random": _random,
    "uuid": _uuid,
    "parse": _parse,
    # JSONata's own, on the execution's clock instead of the wall clock.
    "now": _now,
    "millis": _millis,
}


# -- expressions and templates -------------------------------------------------------


class JsonataExpression:
    """One compiled ``{% expr %}``; :meth:`evaluate` returns plain JSON data."""

    __slots__ = ("_bounds", "_expression", "source", "text", "variables")

    def __init__(self, source: str) -> None:
        self.source = source
        self.text = source[2:-2].strip()
        if not self.text:
            raise JsonataSyntaxError("the expression between {% and %} is empty")
        if _EVAL_CALL.search(self.text):
            raise JsonataSyntaxError(EVAL_UNSUPPORTED)
        try:
            expression = Jsonata(self.text, _regex_engine)
        except Exception as exc:  # noqa: BLE001 - the parser raises several kinds
            raise JsonataSyntaxError(str(exc)) from None
        if expression.get_errors():
            raise JsonataSyntaxError(str(expression.get_errors()[0]))
        self._bounds = _Bounds(expression)
        expression.set_output_convert_nulls(False)
        expression.set_validate_input(False)
        for name, function in _AWS_FUNCTIONS.items():
            expression.register_lambda(name, function)
        self._expression = expression
        self.variables = frozenset(n for n in _VARIABLE.findall(self.text) if n != "states")

    def evaluate(self, bindings: dict[str, Any], rng: random.Random, millis: int = 0) -> Any:
        """The value; raises ``_Undefined``, ``_Unsupported`` or ``_EvaluationError``."""
        _active.rng = rng
        _active.millis = millis
        # jsonata-python's higher-order functions ($map, $filter...) call back
        # through a per-thread "current expression": make it this one.
        Jsonata.CURRENT.jsonata = self._expression
        self._bounds.reset()
        try:
            value = self._expression.evaluate(None, bindings)
        except _EvaluationError:
            raise
        except RecursionError:
            raise _EvaluationError("the expression recursed too deeply") from None
        except Exception as exc:  # noqa: BLE001 - JSONata errors, and Python ones from odd input
            raise _EvaluationError(_jsonata_message(exc)) from None
        if value is None:
            raise _Undefined()
        return _plain(value)


def _jsonata_message(exc: Exception) -> str:
    code = getattr(exc, "error", None)
    text = str(exc) or type(exc).__name__
    return f"{code}: {text}" if code else text


_compiled: dict[str, JsonataExpression] = {}


def compile_jsonata(source: str) -> JsonataExpression:
    """Compile ``"{% expr %}"`` (cached by text); raises :class:`JsonataSyntaxError`."""
    expression = _compiled.get(source)
    if expression is None:
        expression = _compiled[source] = JsonataExpression(source)
    return expression


_Node = Callable[[dict[str, Any], "random.Random", int], Any]


class JsonataTemplate:
    """A field's value with its ``{% %}`` strings compiled; literals stay as they are."""

    __slots__ = ("_evaluate", "field", "source", "static", "variables")

    def __init__(self, source: Any, field: str) -> None:
        self.source = source
        self.field = field
        names: set[str] = set()
        self._evaluate = self._compile(source, field, names)
        self.static = self._evaluate is None
        self.variables = tuple(sorted(names))

    def _compile(self, node: Any, location: str, names: set[str]) -> _Node | None:
        if isinstance(node, str):
            if not is_jsonata(node):
                return None
            expression = compile_jsonata(node)
            names.update(expression.variables)

            def evaluate_expression(bindings: dict[str, Any], rng: random.Random, millis: int) -> Any:
                try:
                    return expression.evaluate(bindings, rng, millis)
                except _Undefined:
                    raise _FieldFailure(
                        location, f"The JSONata expression '{expression.text}' specified for the field '{location}' returned nothing (undefined)."
                    ) from None
                except _Unsupported:
                    raise _FieldFailure(
                        location, f"The JSONata expression '{expression.text}' specified for the field '{location}' returned an unsupported result type."
                    ) from None
                except _EvaluationError as exc:
                    raise _FieldFailure(
                        location,
                        f"The JSONata expression '{expression.text}' specified for the field '{location}' threw an error during evaluation. {exc.message}",
                    ) from None

            evaluate_expression.expression = expression  # type: ignore[attr-defined]
            return evaluate_expression
        if isinstance(node, dict):
            parts = [(key, value, self._compile(value, f"{location}/{key}", names)) for key, value in node.items()]
            if all(p[2] is None for p in parts):
                return None
            frozen = tuple(parts)

            def evaluate_object(bindings: dict[str, Any], rng: random.Random, millis: int) -> Any:
                return {key: (value if sub is None else sub(bindings, rng, millis)) for key, value, sub in frozen}

            return evaluate_object
        if isinstance(node, list):
            items = [(value, self._compile(value, f"{location}/{i}", names)) for i, value in enumerate(node)]
            if all(p[1] is None for p in items):
                return None
            frozen_items = tuple(items)

            def evaluate_array(bindings: dict[str, Any], rng: random.Random, millis: int) -> Any:
                return [value if sub is None else sub(bindings, rng, millis) for value, sub in frozen_items]

            return evaluate_array
        return None

    @property
    def expression_text(self) -> str | None:
        """The expression text when the whole field is one expression."""
        expression = getattr(self._evaluate, "expression", None)
        return expression.text if expression is not None else None

    def evaluate(self, frame: Frame, states: dict[str, Any]) -> Any:
        """The field's value for this frame; a failure raises ``States.QueryEvaluationError``."""
        if self._evaluate is None:
            return self.source
        bindings = {"states": states}
        for name in self.variables:
            value = frame.lookup_variable(name, ABSENT)
            if value is not ABSENT:
                bindings[name] = Utils.NULL_VALUE if value is None else value
        try:
            return self._evaluate(bindings, frame.rng, int(frame.clock.time() * 1000))
        except _FieldFailure as failure:
            raise query_failure(frame, failure.location, failure.message) from None


class _FieldFailure(Exception):
    def __init__(self, location: str, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


class QueryEvaluationFailure(StatesError):
    """``States.QueryEvaluationError``; ``message`` is the cause without the state prefix."""

    def __init__(self, cause: str, message: str, location: str | None) -> None:
        super().__init__(QUERY_EVALUATION_ERROR, cause)
        self.message = message
        self.location = location


def query_failure(frame: Frame, location: str | None, message: str, *, after_entered: bool = False) -> StatesError:
    """Record AWS's ``EvaluationFailed`` event and return the error that fails the state.

    AWS chains the event to the event before the state's Entered event when
    the failure happens before the state did anything (expression evaluation),
    and to the last event otherwise (``after_entered``).
    """
    state_name = frame.state.name if frame.state is not None else ""
    cause = f"An error occurred while executing the state '{state_name}' (entered at the event id #{frame.entered_event}). {message}"
    details = {"cause": cause, "error": QUERY_EVALUATION_ERROR}
    if location is not None:
        details["location"] = location
    details["state"] = state_name
    history = frame.execution.history
    if after_entered or frame.last_event != frame.entered_event or frame.entered_event == 0:
        frame.event("EvaluationFailed", details)
    else:
        previous = history.events[frame.entered_event - 1].previous_event_id
        frame.last_event = history.add("EvaluationFailed", previous, details)
    return QueryEvaluationFailure(cause, message, location)


def _template(raw: dict[str, Any], key: str) -> JsonataTemplate | None:
    return JsonataTemplate(raw[key], key) if key in raw else None


#: Fields whose value may be an expression, besides Arguments/Output/Assign.
_VALUE_FIELDS = (
    "Items",
    "ItemSelector",
    "MaxConcurrency",
    "ToleratedFailureCount",
    "ToleratedFailurePercentage",
    "TimeoutSeconds",
    "HeartbeatSeconds",
    "Seconds",
    "Timestamp",
    "Error",
    "Cause",
)


class JsonataFlow(DataFlow):
    """Arguments and Output (and Assign) of a JSONata state."""

    __slots__ = ("arguments_template", "fields", "output_template")

    def __init__(self, raw: dict[str, Any], kind: str) -> None:
        self.arguments_template = _template(raw, "Arguments")
        self.output_template = _template(raw, "Output")
        self.fields = {key: JsonataTemplate(raw[key], key) for key in _VALUE_FIELDS if key in raw}

    @staticmethod
    def states(frame: Frame, raw: Any, **extra: Any) -> dict[str, Any]:
        states = {"input": raw, "context": frame.context()}
        states.update(extra)
        return states

    def field(self, frame: Frame, key: str, raw: Any, **extra: Any) -> Any:
        """Evaluate one of the state's expression fields (``Items``, ``Seconds``...)."""
        return self.fields[key].evaluate(frame, self.states(frame, raw, **extra))

    def effective_input(self, frame: Frame, raw: Any) -> Any:
        return raw

    def arguments(self, frame: Frame, effective: Any) -> Any:
        template = self.arguments_template
        if template is None:
            return effective
        return template.evaluate(frame, self.states(frame, effective))

    def output(self, frame: Frame, raw: Any, result: Any) -> Any:
        template = self.output_template
        if template is None:
            return result
        return template.evaluate(frame, self.states(frame, raw, result=result))

    def output_assigning(self, frame: Frame, raw: Any, result: Any, assign: JsonataTemplate) -> Any:
        # Assign and Output both see the variables as they were when the state was entered.
        frame.pending_assign = self.assign(frame, raw, result, assign)
        return self.output(frame, raw, result)

    def filter_output(self, frame: Frame, effective: Any) -> Any:
        """Output of a state without a result (Choice, Wait, Succeed)."""
        template = self.output_template
        if template is None:
            return effective
        return template.evaluate(frame, self.states(frame, effective))

    def compile_assign(self, source: Any) -> JsonataTemplate:
        return JsonataTemplate(source, "Assign")

    def assign(self, frame: Frame, raw: Any, result: Any, assign: JsonataTemplate) -> dict[str, Any]:
        return assign.evaluate(frame, self.states(frame, raw, result=result))

    def assign_error(self, frame: Frame, raw: Any, error_object: dict, assign: Any) -> dict[str, Any] | None:
        return assign.evaluate(frame, self.states(frame, raw, errorOutput=error_object))

    def error_output(self, frame: Frame, raw: Any, catcher: Any, error_object: dict) -> Any:
        template = catcher.output
        if template is ABSENT:
            return error_object
        return template.evaluate(frame, self.states(frame, raw, errorOutput=error_object))


def compile_jsonata_catch(raw: dict[str, Any], index: int) -> CatchClause:
    """A JSONata catcher: its ``Output`` and ``Assign`` see ``$states.errorOutput``."""
    output = JsonataTemplate(raw["Output"], "Output") if "Output" in raw else ABSENT
    assign = JsonataTemplate(raw["Assign"], "Assign") if "Assign" in raw else None
    return CatchClause(Catcher(tuple(raw["ErrorEquals"]), raw["Next"], index), ABSENT, output, assign)


def describe_type(value: Any) -> str:
    """JSONata's name for a value's type, as AWS words it in errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
