"""The one exception hierarchy of the engine.

Everything a user can cause ends in a :class:`CeapError` subclass whose message
says what was wrong and what to do. Backend errors (botocore, sqlite3, OS
errors) are converted to these at the adapter boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class CeapError(Exception):
    """Base of every error the engine and its adapters raise on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition, an input or an argument.

    ``path`` is a JSON pointer into the document (``/States/Score/Retry/0``),
    ``message`` says what is wrong and, where it helps, what to do.
    """

    path: str
    message: str
    code: str = "SCHEMA_VALIDATION_FAILED"

    def __str__(self) -> str:
        where = self.path or "/"
        return f"{self.code}: {self.message} at {where}"

    def as_dict(self) -> dict[str, str]:
        """The problem as a ``details`` entry of the ``--format json`` envelope.

        >>> Problem("", "missing", "X").as_dict()
        {'path': '/', 'message': 'missing', 'code': 'X'}
        """
        return {"path": self.path or "/", "message": self.message, "code": self.code}


class ValidationFailed(CeapError):
    """A document (definition, input, spec, payload) has one or more problems.

    All problems are collected before raising, so a user fixes them in one go.
    """

    def __init__(self, problems: list[Problem], what: str = "definition") -> None:
        self.problems = list(problems)
        self.what = what
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {what}: {len(self.problems)} problem(s)\n{lines}")


class DefinitionError(ValidationFailed):
    """An ASL definition that AWS would reject at CreateStateMachine."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems, "state machine definition")


class InputError(ValidationFailed):
    """Bad execution input, payload or argument: nothing was started."""

    def __init__(self, problems: list[Problem], what: str = "input") -> None:
        super().__init__(problems, what)


class StatesError(CeapError):
    """An error raised while a state runs, named as Step Functions names it.

    ``error`` is the name matched by Retry/Catch ``ErrorEquals`` (for example
    ``States.Timeout`` or ``Lambda.ServiceException``), ``cause`` the text that
    lands in the error output's ``Cause``.
    """

    def __init__(self, error: str, cause: str | None = "") -> None:
        self.error = error
        self.cause = cause
        super().__init__(f"{error}: {cause}" if cause else error)


class StorageError(CeapError):
    """A storage backend failed; the message names the backend and the key."""


class ObjectNotFound(StorageError, KeyError):
    """No object at this bucket and key."""

    def __init__(self, bucket: str, key: str) -> None:
        self.bucket = bucket
        self.key = key
        StorageError.__init__(self, f"no object at s3://{bucket}/{key}")

    def __str__(self) -> str:  # KeyError would quote the message
        return f"no object at s3://{self.bucket}/{self.key}"


class InvalidKey(StorageError, ValueError):
    """A key that could escape its bucket or is not a valid object key."""


class TestStateRejected(CeapError):
    """A request AWS's TestState API refuses (``ValidationException`` or ``InvalidDefinition``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, code: str = "ValidationException") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"exception": {"code": self.code, "message": self.message}}


class QueueError(StorageError):
    """A queue refused a request; ``code`` is SQS's error code (``InvalidParameterValue``, ``OverLimit`` ...).

    Every queue backend raises the same codes for the same mistakes, so the SQS API
    endpoint answers with the shape AWS would (``sender_fault``: the caller's mistake).
    """

    def __init__(self, code: str, message: str, *, sender_fault: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.sender_fault = sender_fault


class QueueNotFound(QueueError, LookupError):
    """No queue of this name (SQS: ``QueueDoesNotExist``)."""

    def __init__(self, name: str) -> None:
        super().__init__("QueueDoesNotExist", f"the queue {name!r} does not exist: create it first "
                         "(ceap creates a workflow's queue and DLQ when it first uses them)")
        self.name = name

    def __str__(self) -> str:  # KeyError-style quoting off
        return self.message
class ConditionFailed(StorageError):
    """A conditional write found another version than expected: someone else wrote first.

    ``key`` is the record's ``(pk, sk)``, ``expected`` the version the writer read
    (``None``: no record), ``found`` the version stored now. Re-read and decide again;
    :func:`ceap_engine.storage.candidates.write_candidates` does that a few times
    before it raises this.
    """

    def __init__(self, key: tuple[str, str], expected: int | None, found: int | None, attempts: int = 1) -> None:
        self.key = key
        self.expected = expected
        self.found = found
        self.attempts = attempts
        want = "no record" if expected is None else f"version {expected}"
        got = "no record" if found is None else f"version {found}"
        super().__init__(
            f"candidate {key[0]} / {key[1]} changed under this write {attempts} time(s) in a row "
            f"(expected {want}, found {got}): other writers keep updating it; retry later"
        )


class ExecutionAlreadyExists(InputError):
    """An execution name already used with another input (Step Functions' ExecutionAlreadyExists).

    ``earlier`` is the record of the run that holds the name (its status, start
    time, input digest). Nothing was started or written.
    """

    def __init__(self, message: str, earlier: dict[str, object]) -> None:
        self.earlier = earlier
        super().__init__([Problem("/executionName", message, "ExecutionAlreadyExists")], "execution name")
