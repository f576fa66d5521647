"""botocore errors turned into the engine's errors, at the adapter boundary (httpx style).

Nothing above :mod:`adapters.aws` sees a ``botocore`` exception: every AWS call
runs inside :func:`aws_errors`, which turns ``ClientError`` and botocore's
connection and credential errors into :mod:`ceap_engine.errors` types whose
message says which call failed on what, and what to do about it.

Example::

    with aws_errors("S3 GetObject", f"s3://{bucket}/{key}"):
        response = await client.get_object(Bucket=bucket, Key=key)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ceap_engine.errors import CeapError, StorageError

__all__ = ["AwsError", "AwsNotFound", "aws_errors", "error_code"]

# Codes that mean "you may not do this" on every service.
_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
}
_NOT_FOUND = {
    "NoSuchBucket",
    "NoSuchKey",
    "NotFound",
    "404",
    "ResourceNotFoundException",
    "StateMachineDoesNotExist",
    "ExecutionDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NoSuchEntity",
}


class AwsError(CeapError):
    """An AWS call failed; ``code`` is the AWS error code (``ThrottlingException``), ``operation`` the call."""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class AwsNotFound(AwsError, LookupError):
    """The resource the call names does not exist (a stack, a state machine, an execution, a queue)."""


class AwsStorageError(StorageError, AwsError):
    """An S3 or DynamoDB call failed (a :class:`~ceap_engine.errors.StorageError`, so stages treat it as storage)."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


def describe(exc: BaseException, operation: str, target: str) -> tuple[str, str]:
    """(code, message that says what failed and what to do) for a botocore error."""
    where = f"{operation} on {target}" if target else operation
    if isinstance(exc, ClientError):
        code = error_code(exc)
        text = _message(exc)
        if code in _ACCESS_DENIED:
            return code, (
                f"{where} was refused ({code}: {text}); the credentials in use lack this permission - "
                "check the IAM policy of the role or user, or pick another --profile"
            )
        if code in _BAD_CREDENTIALS:
            return code, (
                f"{where} failed: AWS did not accept the credentials ({code}: {text}); "
                "refresh them (aws sso login, new keys) or pick another --profile"
            )
        if code in {"ThrottlingException", "Throttling", "SlowDown", "RequestLimitExceeded",
                    "ProvisionedThroughputExceededException", "TooManyRequestsException"}:
            return code, f"{where} was throttled by AWS ({code}: {text}); retry later or lower the request rate"
        return code, f"{where} failed ({code}: {text})"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "NoCredentials", (
            f"{where} failed: no AWS credentials found; set AWS_PROFILE or --profile, or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (for moto or LocalStack any value works)"
        )
    if isinstance(exc, NoRegionError):
        return "NoRegion", f"{where} failed: no AWS region configured; pass --region or set AWS_REGION"
    if isinstance(exc, ProfileNotFound):
        return "ProfileNotFound", f"{where} failed: {exc}; list profiles with `aws configure list-profiles`"
    if isinstance(exc, EndpointConnectionError):
        return "EndpointConnectionError", (
            f"{where} failed: cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}; check the network, "
            "--region, or --endpoint-url / AWS_ENDPOINT_URL (is the moto or LocalStack server running?)"
        )
    return type(exc).__name__, f"{where} failed: {exc}"


@contextmanager
def aws_errors(operation: str, target: str = "", *, storage: bool = False) -> Iterator[None]:
    """Run an AWS call and turn botocore errors into :class:`AwsError` (or a StorageError if ``storage``).

    A "does not exist" error becomes :class:`AwsNotFound` unless ``storage``;
    the storage adapters handle their own not-found cases (absent object or
    record) before that, so what reaches here is a missing bucket or table.
    """
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        code, message = describe(exc, operation, target)
        if storage:
            raise AwsStorageError(message, code=code, operation=operation) from exc
        if code in _NOT_FOUND or code.endswith(("NotFoundException", "DoesNotExist")):
            raise AwsNotFound(message, code=code, operation=operation) from exc
        raise AwsError(message, code=code, operation=operation) from exc
