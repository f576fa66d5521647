"""The storage backends under contract: every test in this folder runs once per backend.

``object_store`` and ``candidate_store`` are parametrised over the names of
backend fixtures (apscheduler style); a test asks for the port and pytest runs
it against each backend, with the backend's id in the test name
(``test_get_of_absent_key[file]``).

Adding a backend (for example S3 and DynamoDB against a moto server):

1. write a fixture below that yields a ready, empty store - for S3 with the
   buckets in :data:`BUCKETS` created, for DynamoDB with the table created -
   and cleans up after itself (session-scoped server fixtures can live in
   ``tests/conftest.py``);
2. add its name to :data:`OBJECT_STORE_BACKENDS` or
   :data:`CANDIDATE_STORE_BACKENDS` as ``pytest.param("s3_object_store",
   id="s3", marks=pytest.mark.moto)``. The ``moto`` mark is declared in
   ``pyproject.toml``, so ``-m "not moto"`` runs the embedded backends only.

Backend fixtures may be sync or async (pytest-asyncio runs the async ones).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.local import FileObjectStore, SQLiteCandidateStore
from ceap_engine.ports import CandidateStore, ObjectStore
from ceap_engine.storage.memory import MemoryCandidateStore, MemoryObjectStore

BUCKET = "ceap-contract"
OTHER_BUCKET = "ceap-contract-other"
BUCKETS = (BUCKET, OTHER_BUCKET)
"""Every bucket the object store suite writes to; a backend that needs buckets made first makes these."""


# -- object stores ------------------------------------------------------------


@pytest.fixture
def memory_object_store() -> ObjectStore:
    return MemoryObjectStore()


@pytest.fixture
def file_object_store(tmp_path: Path) -> ObjectStore:
    return FileObjectStore(tmp_path / "objects")


@pytest.fixture
async def s3_object_store(moto_endpoint: str) -> AsyncIterator[ObjectStore]:
    """S3 on the session's moto server, with :data:`BUCKETS` made empty for this test."""
    from adapters.aws.objects import S3ObjectStore
    from adapters.aws.session import AwsClients, AwsSettings

    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        client = await aws.client("s3")
        for bucket in BUCKETS:
            await client.create_bucket(Bucket=bucket)
        try:
            yield S3ObjectStore(client)
        finally:
            for bucket in BUCKETS:
                paginator = client.get_paginator("list_objects_v2")
                async for page in paginator.paginate(Bucket=bucket):
                    for item in page.get("Contents", ()):
                        await client.delete_object(Bucket=bucket, Key=item["Key"])
                await client.delete_bucket(Bucket=bucket)

OBJECT_STORE_BACKENDS = [
    pytest.param("memory_object_store", id="memory"),
    pytest.param("file_object_store", id="file"),
    pytest.param("s3_object_store", id="s3", marks=pytest.mark.moto),
]


@pytest.fixture(params=OBJECT_STORE_BACKENDS)
def object_store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(request.param)


# -- candidate stores ---------------------------------------------------------


@pytest.fixture
def memory_candidate_store() -> CandidateStore:
    return MemoryCandidateStore()


@pytest.fixture
def sqlite_candidate_store(tmp_path: Path) -> Iterator[CandidateStore]:
    with SQLiteCandidateStore(tmp_path / "candidates.sqlite3") as store:
        yield store


@pytest.fixture
async def dynamodb_candidate_store(moto_endpoint: str) -> AsyncIterator[CandidateStore]:
    """DynamoDB on the session's moto server: a fresh table (the stack's schema) per test."""
    from adapters.aws.candidates import DynamoDBCandidateStore, candidate_table_schema
    from adapters.aws.session import AwsClients, AwsSettings

    table = f"ceap-contract-{uuid.uuid4().hex[:12]}"
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        client = await aws.client("dynamodb")
        await client.create_table(TableName=table, **candidate_table_schema())
        try:
            yield DynamoDBCandidateStore(client, table)
        finally:
            await client.delete_table(TableName=table)

CANDIDATE_STORE_BACKENDS = [
    pytest.param("memory_candidate_store", id="memory"),
    pytest.param("sqlite_candidate_store", id="sqlite"),
    pytest.param("dynamodb_candidate_store", id="dynamodb", marks=pytest.mark.moto),
]


@pytest.fixture(params=CANDIDATE_STORE_BACKENDS)
def candidate_store(request: pytest.FixtureRequest) -> CandidateStore:
    return request.getfixturevalue(request.param)
