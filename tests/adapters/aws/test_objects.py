"""S3ObjectStore: error mapping at the boundary (the contract suite covers the semantics)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from adapters.aws.errors import AwsStorageError
from adapters.aws.objects import S3ObjectStore
from adapters.aws.session import AwsClients, AwsSettings
from ceap_engine.errors import StorageError

pytestmark = pytest.mark.moto


async def test_a_missing_bucket_is_a_storage_error_naming_it_not_a_missing_object(moto_endpoint: str) -> None:
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        store = S3ObjectStore(await aws.client("s3"))

        with pytest.raises(StorageError) as caught:
            await store.get("ceap-no-such-bucket", "executions/e-1/ETL/output.json")

    assert not isinstance(caught.value, KeyError)
    assert isinstance(caught.value, AwsStorageError) and caught.value.code == "NoSuchBucket"
    assert "s3://ceap-no-such-bucket/executions/e-1/ETL/output.json" in str(caught.value)
    assert isinstance(caught.value.__cause__, ClientError)


async def test_an_unreachable_endpoint_says_which_endpoint_and_what_to_check(moto_endpoint: str) -> None:
    # moto_endpoint only for the session's fake credentials: this client talks to a closed port.
    async with AwsClients(AwsSettings(endpoint_url="http://127.0.0.1:9", region="us-east-1"), max_attempts=1) as aws:
        store = S3ObjectStore(await aws.client("s3"))

        with pytest.raises(StorageError, match="cannot reach http://127.0.0.1:9.*--endpoint-url"):
            await store.list("ceap-any-bucket")
