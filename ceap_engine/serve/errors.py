"""API errors as AWS JSON 1.0 returns them: ``{"__type": code, "message": ...}`` and a status.

A :class:`ServiceError` is what a handler raises for anything the caller did wrong; the
endpoint turns it into the response boto3 and the AWS CLI parse into their own
``ClientError`` (``error.response["Error"]["Code"]``).
"""

from __future__ import annotations

from ceap_engine.errors import CeapError

__all__ = ["ServiceError"]


class ServiceError(CeapError):
    """An AWS API error: ``code`` (``InvalidArn``, ``ValidationException``...), message, HTTP status.

    Example::

        raise ServiceError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        return {"__type": self.code, "message": self.message}
