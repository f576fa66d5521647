"""Choice rules (JSONPath mode): every comparison operator, And/Or/Not, Is* tests.

A rule compiles to a predicate ``(doc, frame) -> bool``. As in AWS, comparing
values of the wrong type is simply false (``NumericEquals`` on a string), a
``Variable`` that is not there is a ``States.Runtime`` failure except for
``IsPresent``, and timestamps are compared as instants.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .frame import Frame
from .jsonpath import PathNotFound
from .payload import RuntimeFailure, ValuePath, to_json

__all__ = ["COMPARISONS", "Predicate", "compile_rule", "parse_timestamp"]

Predicate = Callable[[Any, "Frame"], bool]

_TYPE_TESTS = ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")
_BASE_OPS = (
    "StringEquals",
    "StringLessThan",
    "StringGreaterThan",
    "StringLessThanEquals",
    "StringGreaterThanEquals",
    "NumericEquals",
    "NumericLessThan",
    "NumericGreaterThan",
    "NumericLessThanEquals",
    "NumericGreaterThanEquals",
    "BooleanEquals",
    "TimestampEquals",
    "TimestampLessThan",
    "TimestampGreaterThan",
    "TimestampLessThanEquals",
    "TimestampGreaterThanEquals",
)
#: Every comparison operator name a rule may use.
COMPARISONS = frozenset(_BASE_OPS + tuple(op + "Path" for op in _BASE_OPS) + ("StringMatches",) + _TYPE_TESTS)

_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (with a time zone) as an aware datetime, else None.

    >>> parse_timestamp("2016-03-14T01:59:00Z").year
    2016
    """
    if not isinstance(value, str):
        return None
    m = _TS_RE.match(value)
    if not m:
        return None
    frac = m.group(7) or ""
    if frac:
        frac = (frac + "000000")[:7]  # microseconds; finer digits are dropped
    tz = m.group(8)
    tz = "+00:00" if tz in ("Z", "z") else tz
    try:
        return datetime.fromisoformat(f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}:{m.group(5)}:{m.group(6)}{frac}{tz}")
    except ValueError:
        return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _string_matcher(pattern: str) -> Callable[[str], bool]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if ch == "*" else re.escape(ch))
        i += 1
    rx = re.compile("".join(parts), re.DOTALL)
    return lambda s: rx.fullmatch(s) is not None


def _compare(kind: str, relation: str) -> Callable[[Any, Any], bool]:
    def check_kind(a: Any, b: Any) -> tuple[Any, Any] | None:
        if kind == "String":
            return (a, b) if isinstance(a, str) and isinstance(b, str) else None
        if kind == "Numeric":
            return (a, b) if _is_number(a) and _is_number(b) else None
        if kind == "Boolean":
            return (a, b) if isinstance(a, bool) and isinstance(b, bool) else None
        ta, tb = parse_timestamp(a), parse_timestamp(b)
        return (ta, tb) if ta is not None and tb is not None else None

    ops: dict[str, Callable[[Any, Any], bool]] = {
        "Equals": lambda x, y: x == y,
        "LessThan": lambda x, y: x < y,
        "GreaterThan": lambda x, y: x > y,
        "LessThanEquals": lambda x, y: x <= y,
        "GreaterThanEquals": lambda x, y: x >= y,
    }
    op = ops[relation]

    def compare(a: Any, b: Any) -> bool:
        pair = check_kind(a, b)
        return pair is not None and op(*pair)

    return compare


def _split_operator(name: str) -> tuple[str, str]:
    for kind in ("String", "Numeric", "Boolean", "Timestamp"):
        if name.startswith(kind):
            return kind, name[len(kind):]
    raise ValueError(name)


def _missing_variable(path: str, doc: Any) -> RuntimeFailure:
    return RuntimeFailure(f"Invalid path '{path}': The choice state's condition path references an invalid value.")


def compile_rule(rule: dict[str, Any]) -> Predicate:
    """Compile one choice rule (already validated by the definition checker)."""
    if "And" in rule:
        subs = [compile_rule(r) for r in rule["And"]]
        return lambda doc, frame: all(s(doc, frame) for s in subs)
    if "Or" in rule:
        subs = [compile_rule(r) for r in rule["Or"]]
        return lambda doc, frame: any(s(doc, frame) for s in subs)
    if "Not" in rule:
        sub = compile_rule(rule["Not"])
        return lambda doc, frame: not sub(doc, frame)

    variable_text = rule["Variable"]
    variable = ValuePath(variable_text)
    op_name = next(k for k in rule if k in COMPARISONS)
    operand = rule[op_name]

    if op_name in _TYPE_TESTS:
        expected = bool(operand)

        def test(value: Any) -> bool:
            if op_name == "IsNull":
                return value is None
            if op_name == "IsNumeric":
                return _is_number(value)
            if op_name == "IsString":
                return isinstance(value, str)
            if op_name == "IsBoolean":
                return isinstance(value, bool)
            return parse_timestamp(value) is not None  # IsTimestamp

        if op_name == "IsPresent":

            def is_present(doc: Any, frame: Frame) -> bool:
                try:
                    variable.resolve(doc, frame)
                    found = True
                except PathNotFound:
                    found = False
                return found == expected

            return is_present

        def type_test(doc: Any, frame: Frame) -> bool:
            try:
                value = variable.resolve(doc, frame)
            except PathNotFound:
                raise _missing_variable(variable_text, doc) from None
            return test(value) == expected

        return type_test

    if op_name == "StringMatches":
        matcher = _string_matcher(operand)

        def string_matches(doc: Any, frame: Frame) -> bool:
            try:
                value = variable.resolve(doc, frame)
            except PathNotFound:
                raise _missing_variable(variable_text, doc) from None
            return isinstance(value, str) and matcher(value)

        return string_matches

    by_path = op_name.endswith("Path")
    kind, relation = _split_operator(op_name[:-4] if by_path else op_name)
    compare = _compare(kind, relation)
    if by_path:
        other = ValuePath(operand)

        def compare_paths(doc: Any, frame: Frame) -> bool:
            try:
                value = variable.resolve(doc, frame)
            except PathNotFound:
                raise _missing_variable(variable_text, doc) from None
            try:
                expected_value = other.resolve(doc, frame)
            except PathNotFound:
                raise RuntimeFailure(
                    f"Invalid path '{operand}': The choice state's condition path references an invalid value."
                ) from None
            return compare(value, expected_value)

        return compare_paths

    def compare_literal(doc: Any, frame: Frame) -> bool:
        try:
            value = variable.resolve(doc, frame)
        except PathNotFound:
            raise _missing_variable(variable_text, doc) from None
        return compare(value, operand)

    return compare_literal


def rule_problems(rule: Any, pointer: str, top_level: bool) -> list[tuple[str, str]]:
    """Every structural problem of a choice rule, as (json pointer, message)."""
    out: list[tuple[str, str]] = []
    if not isinstance(rule, dict):
        return [(pointer, "A choice rule must be an object")]
    allowed = {"Comment"}
    if top_level:
        allowed |= {"Next", "Assign", "Output"}
        if not isinstance(rule.get("Next"), str):
            out.append((pointer, "The field 'Next' is required in a top-level choice rule"))
    boolean = [k for k in ("And", "Or", "Not") if k in rule]
    ops = [k for k in rule if k in COMPARISONS]
    if "Condition" in rule:
        allowed.add("Condition")
        if boolean or ops or "Variable" in rule:
            out.append((pointer, "A JSONata choice rule has only 'Condition' (and 'Next', 'Assign', 'Output')"))
    elif boolean:
        if len(boolean) > 1 or ops or "Variable" in rule:
            out.append((pointer, "A choice rule has exactly one of 'And', 'Or', 'Not' or one comparison"))
        key = boolean[0]
        allowed.add(key)
        sub = rule[key]
        if key == "Not":
            out += rule_problems(sub, f"{pointer}/Not", False)
        elif not isinstance(sub, list) or not sub:
            out.append((f"{pointer}/{key}", f"'{key}' must be a non-empty array of choice rules"))
        else:
            for i, r in enumerate(sub):
                out += rule_problems(r, f"{pointer}/{key}/{i}", False)
    else:
        allowed.add("Variable")
        allowed.update(ops)
        if len(ops) != 1:
            out.append((pointer, "A choice rule must have exactly one comparison operator, or And/Or/Not"
                        + (f" (found {', '.join(ops)})" if ops else "")))
        if not isinstance(rule.get("Variable"), str) or not rule.get("Variable", "").startswith("$"):
            out.append((f"{pointer}/Variable", "The field 'Variable' must be a JSONPath starting with '$'"))
        else:
            try:
                ValuePath(rule["Variable"])
            except Exception as exc:  # noqa: BLE001 - report any path compile error
                out.append((f"{pointer}/Variable", f"Invalid JSONPath: {exc}"))
        for op in ops:
            v = rule[op]
            where = f"{pointer}/{op}"
            if op in _TYPE_TESTS:
                if not isinstance(v, bool):
                    out.append((where, f"The value of '{op}' must be a boolean"))
            elif op.endswith("Path"):
                if not isinstance(v, str) or not v.startswith("$"):
                    out.append((where, f"The value of '{op}' must be a JSONPath"))
                else:
                    try:
                        ValuePath(v)
                    except Exception as exc:  # noqa: BLE001
                        out.append((where, f"Invalid JSONPath: {exc}"))
            elif op.startswith("String") or op.startswith("Timestamp"):
                if not isinstance(v, str):
                    out.append((where, f"The value of '{op}' must be a string"))
                elif op.startswith("Timestamp") and parse_timestamp(v) is None:
                    out.append((where, f"The value of '{op}' must be an RFC 3339 timestamp, got {to_json(v)}"))
            elif op.startswith("Numeric"):
                if not _is_number(v):
                    out.append((where, f"The value of '{op}' must be a number"))
            elif op == "BooleanEquals" and not isinstance(v, bool):
                out.append((where, "The value of 'BooleanEquals' must be a boolean"))
    for key in rule:
        if key not in allowed and key not in COMPARISONS:
            out.append((f"{pointer}/{key}", f"The field '{key}' is not supported by Step Functions"))
    return out
