"""S3 as an :class:`~ceap_engine.ports.ObjectStore`.

Keys and bucket names are checked like on every backend before any call, so
a key the file store would refuse is refused here too. S3's own semantics are
the contract's: last write wins, an object is whole or absent, ``list`` is in
UTF-8 byte order.

Example::

    async with AwsClients(settings) as aws:
        store = S3ObjectStore(await aws.client("s3"))
        await store.put("ceap-workflow-demo-123456789012", "executions/e-1/ETL/output.json", b"{}")
"""

from __future__ import annotations

from typing import Any

from ceap_engine.errors import ObjectNotFound
from ceap_engine.storage.objects import check_range, validate_bucket, validate_key

from .errors import aws_errors, error_code

__all__ = ["S3ObjectStore"]

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}


def _as_bytes(data: Any) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(
            f"object data must be bytes, got {type(data).__name__}; "
            "encode text first, or use ceap_engine.ports.write_json for JSON values"
        )
    # A copy now, so a caller changing its buffer while the upload runs cannot change what is stored.
    return bytes(data)


class S3ObjectStore:
    """An :class:`~ceap_engine.ports.ObjectStore` over an aiobotocore S3 client.

    The buckets must exist (the stack creates the workflow bucket); a missing
    bucket is a :class:`~ceap_engine.errors.StorageError` that names it. A
    missing key is :class:`~ceap_engine.errors.ObjectNotFound` - which needs
    ``s3:ListBucket`` on the bucket: without it S3 answers AccessDenied for an
    absent key, and this store reports that as a permission problem.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    async def get(self, bucket: str, key: str) -> bytes:
        return await self._object("GetObject", "get_object", bucket, key, read_body=True)

    async def size(self, bucket: str, key: str) -> int:
        response = await self._object("HeadObject", "head_object", bucket, key, read_body=False)
        return int(response["ContentLength"])

    async def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        check_range(start, end)
        if end == start:
            await self.size(bucket, key)  # S3 has no empty Range: only say whether the object is there
            return b""
        data = await self._object("GetObject", "get_object", bucket, key, read_body=True,
                                  Range=f"bytes={start}-{end - 1}")
        return b"" if data is None else data  # None: S3's InvalidRange, a start at or past the end

    async def _object(self, operation: str, method: str, bucket: str, key: str, *, read_body: bool,
                      **params: Any) -> Any:
        """One S3 call on one object: names checked first, a missing object raised as ObjectNotFound,
        botocore's other errors as ceap's; the body's bytes (``read_body``) or the response.

        With a ``Range``, S3's InvalidRange (the range starts at or past the end) gives ``None``.
        """
        validate_bucket(bucket)
        validate_key(key)
        # ObjectNotFound passes through aws_errors, which only converts botocore's errors.
        with aws_errors(f"S3 {operation}", f"s3://{bucket}/{key}", storage=True):
            try:
                response = await getattr(self.client, method)(Bucket=bucket, Key=key, **params)
            except Exception as exc:
                code = error_code(exc)
                if code in _NOT_FOUND_CODES:
                    raise ObjectNotFound(bucket, key) from None
                if code == "InvalidRange" and "Range" in params:
                    return None
                raise
            if not read_body:
                return response
            async with response["Body"] as body:
                return await body.read()

    async def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        validate_bucket(bucket)
        validate_key(key)
        payload = _as_bytes(data)
        with aws_errors("S3 PutObject", f"s3://{bucket}/{key}", storage=True):
            await self.client.put_object(Bucket=bucket, Key=key, Body=payload, ContentType=content_type)

    async def list(self, bucket: str, prefix: str = "") -> list[str]:
        validate_bucket(bucket)
        keys: list[str] = []
        with aws_errors("S3 ListObjectsV2", f"s3://{bucket}/{prefix}", storage=True):
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", ()))
        # S3 lists in UTF-8 byte order already; sorting again costs little and makes it the contract, not luck.
        return sorted(keys, key=lambda k: k.encode("utf-8"))

    async def delete(self, bucket: str, key: str) -> None:
        validate_bucket(bucket)
        validate_key(key)
        with aws_errors("S3 DeleteObject", f"s3://{bucket}/{key}", storage=True):
            await self.client.delete_object(Bucket=bucket, Key=key)
