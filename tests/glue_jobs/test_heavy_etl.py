"""The HeavyETL Glue job on a tiny dataset with hand-computed aggregates (see ``orders.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ceap_engine.pipeline.stage import StageContext
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.memory import MemoryObjectStore
from glue_jobs import heavy_etl
from glue_jobs.heavy_etl import (
    HeavyEtlInputError,
    JobArguments,
    candidate_customers_key,
    resolve_arguments,
)
from stages import score

from . import orders

BUCKET = "ceap-test"
EXECUTION_ID = "exec-1"
INPUT_KEY = f"executions/{EXECUTION_ID}/Filter/output.json"
OUTPUT_KEY = f"executions/{EXECUTION_ID}/HeavyETL/output.json"


class DictStorage:
    """The job's storage over a dict of objects; Spark reads objects from files written on demand."""

    def __init__(self, folder: Path) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.folder = folder

    def read(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise FileNotFoundError(f"no object at s3://{bucket}/{key}") from None

    def write(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = bytes(data)

    def spark_path(self, uri: str) -> str:
        if uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            path = self.folder / key.replace("/", "_")
            path.write_bytes(self.read(bucket, key))
            return str(path)
        if not Path(uri).exists():
            raise FileNotFoundError(uri)
        return uri


class PassThroughStorage(DictStorage):
    """Like S3JobStorage: hands Spark the URI as it is and lets Spark find out whether it exists."""

    def spark_path(self, uri: str) -> str:
        return uri if not uri.startswith("s3://") else super().spark_path(uri)


def _argv(source_uri: str, *, date_end: str = orders.DATE_END) -> list[str]:
    argv = ["heavy_etl.py", "--JOB_NAME", "ceap-batch-heavy-etl"]
    for name, value in orders.job_arguments(EXECUTION_ID, BUCKET, source_uri, date_end=date_end).items():
        argv += [name, value]
    # Arguments Glue adds on its own are ignored.
    return argv + ["--TempDir", "s3://aws-glue-temp/", "--enable-metrics", "true", "--job-bookmark-option", "job-bookmark-disable"]


def _storage_with_input(folder: Path, storage_type: type[DictStorage] = DictStorage) -> DictStorage:
    storage = storage_type(folder)
    storage.write(BUCKET, INPUT_KEY, json.dumps(orders.filter_output()).encode(), "application/json")
    return storage


def _run(spark: Any, folder: Path, source: bytes, suffix: str, **kwargs: Any) -> tuple[DictStorage, dict, dict]:
    source_path = folder / f"orders{suffix}"
    source_path.write_bytes(source)
    storage = _storage_with_input(folder)
    summary = heavy_etl.main(_argv(str(source_path), **kwargs), spark=spark, storage=storage)
    return storage, summary, _output(storage)


def _output(storage: DictStorage) -> dict:
    """The job's manifest, with the candidates of its parts read back in part order."""
    manifest = json.loads(storage.read(BUCKET, OUTPUT_KEY))
    assert manifest["kind"] == "ceap.stage-output" and manifest["schemaVersion"] == 1
    candidates = [json.loads(line) for part in manifest["parts"]["candidates"]
                  for line in storage.read(BUCKET, part["key"]).splitlines() if line.strip()]
    assert manifest["counts"]["candidates"] == len(candidates) and manifest["reconciliation"]["balanced"]
    listed = [json.loads(line) for line in storage.read(BUCKET, manifest["partList"]).splitlines()]
    assert [item["key"] for item in listed] == [p["key"] for p in manifest["parts"]["candidates"]]
    return {**manifest, "candidates": candidates}


def _features_by_candidate(output: dict) -> dict[tuple[str, str], dict]:
    return {(c["customerId"], c["subject"]["id"]): c["features"] for c in output["candidates"]}


@pytest.fixture(scope="module")
def jsonl_run(spark, tmp_path_factory) -> tuple[DictStorage, dict, dict]:
    return _run(spark, tmp_path_factory.mktemp("jsonl"), orders.jsonl_source(), ".jsonl")


# -- arguments (no Spark) ---------------------------------------------------------


def test_arguments_resolve_like_glue_and_extra_ones_are_ignored():
    resolved = resolve_arguments(_argv("/data/orders.jsonl"))

    assert resolved["JOB_NAME"] == "ceap-batch-heavy-etl"
    assert resolved["execution_id"] == EXECUTION_ID
    assert resolved["output_key"] == OUTPUT_KEY
    assert "TempDir" not in resolved and "enable_metrics" not in resolved


def test_a_missing_argument_is_named():
    argv = [a for a in _argv("/data/orders.jsonl")]
    position = argv.index("--source-uri")
    del argv[position : position + 2]

    with pytest.raises(HeavyEtlInputError, match="--source-uri"):
        resolve_arguments(argv)


def test_a_date_end_covers_its_whole_day_and_a_date_time_end_is_inclusive():
    options = resolve_arguments(_argv("/data/orders.jsonl"))
    by_date = JobArguments.from_resolved(options)
    by_instant = JobArguments.from_resolved(options | {"date_end": "2025-03-31T12:00:00+02:00"})

    assert by_date.range_start == datetime(2025, 3, 1, tzinfo=UTC)
    assert (by_date.range_end, by_date.end_inclusive) == (datetime(2025, 4, 1, tzinfo=UTC), False)
    assert by_date.reference_time == datetime(2025, 4, 1, tzinfo=UTC)
    assert (by_instant.range_end, by_instant.end_inclusive) == (datetime(2025, 3, 31, 10, tzinfo=UTC), True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"date_start": "March 1st"}, "--date-start 'March 1st' is not an ISO 8601 date"),
        ({"date_end": "2025-02-01"}, "--date-end '2025-02-01' is before --date-start"),
    ],
)
def test_bad_dates_fail_with_the_argument_named(change, message):
    options = resolve_arguments(_argv("/data/orders.jsonl")) | change

    with pytest.raises(HeavyEtlInputError, match=message):
        JobArguments.from_resolved(options)


def test_the_candidate_customers_object_sits_beside_the_output():
    assert candidate_customers_key(OUTPUT_KEY) == f"executions/{EXECUTION_ID}/HeavyETL/candidate-customers.jsonl"


# -- the job on the tiny dataset -------------------------------------------------------


@pytest.mark.spark
def test_aggregates_are_the_hand_computed_ones(jsonl_run):
    _, _, output = jsonl_run
    features = _features_by_candidate(output)

    assert features[("C1", "P1")] == orders.EXPECTED_FEATURES["C1"] | {"legacyScore": 0.3}
    assert features[("C1", "P2")] == orders.EXPECTED_FEATURES["C1"]
    assert features[("C2", "P5")] == orders.EXPECTED_FEATURES["C2"]
    assert features[("C3", "P9")] == {}


@pytest.mark.spark
def test_every_candidate_is_kept_in_order_with_only_features_changed(jsonl_run):
    _, _, output = jsonl_run
    given = orders.filter_output()["candidates"]

    assert [(c["customerId"], c["subject"]["id"]) for c in output["candidates"]] == [
        (c["customerId"], c["subject"]["id"]) for c in given
    ]
    for before, after in zip(given, output["candidates"], strict=True):
        assert {k: v for k, v in after.items() if k != "features"} == {k: v for k, v in before.items() if k != "features"}
    assert output["notEnriched"] == [
        {"customerId": "C3", "subject": given[3]["subject"], "reasonCode": "NO_SOURCE_EVENTS"}
    ]


@pytest.mark.spark
def test_metrics_count_every_candidate_and_every_source_record(jsonl_run):
    _, summary, output = jsonl_run
    metrics = output["metrics"]

    assert metrics == {
        "inputCount": 4,
        "outputCount": 4,
        "enrichedCount": 3,
        "notEnrichedCount": 1,
        "notEnrichedReasons": {"NO_SOURCE_EVENTS": 1},
        "customerCount": 3,
        "enrichedCustomerCount": 2,
        **orders.EXPECTED_SOURCE_METRICS,
    }
    assert summary["metrics"] == metrics
    assert metrics["sourceRecordCount"] == (
        metrics["sourceEventCount"] + metrics["sourceMalformedCount"] + metrics["sourceSkippedCount"]
        + metrics["duplicateEventCount"]
    )


@pytest.mark.spark
def test_a_manifest_at_the_output_key_beside_its_parts_and_the_candidate_customers(jsonl_run):
    storage, summary, output = jsonl_run
    written = sorted(key for bucket, key in storage.objects if bucket == BUCKET and key.startswith(f"executions/{EXECUTION_ID}/HeavyETL/"))
    folder = f"executions/{EXECUTION_ID}/HeavyETL"
    assert written == [candidate_customers_key(OUTPUT_KEY), OUTPUT_KEY, f"{folder}/part-00000.jsonl", f"{folder}/parts.jsonl"]
    assert summary["outputBytes"] == len(storage.read(BUCKET, OUTPUT_KEY))
    assert output["programId"] == orders.PROGRAM and output["marketplace"] == orders.MARKETPLACE
    assert output["dateRange"] == {"start": orders.DATE_START, "end": orders.DATE_END}
    assert output["referenceTime"] == "2025-04-01T00:00:00Z"
    assert "rejected" not in output  # rejected candidates stay in the Filter output


@pytest.mark.spark
def test_score_reads_the_output_and_uses_the_features(jsonl_run):
    _, _, output = jsonl_run
    context = StageContext(
        execution_id=EXECUTION_ID, stage="Score", bucket=BUCKET, objects=MemoryObjectStore(),
        clock=VirtualClock(datetime(2025, 4, 2, tzinfo=UTC)),
    )

    scored = score.run(score.ScoreInput.model_validate(output), context)

    variants = {
        (c.customer_id, c.subject.id): c.scores["review-propensity-v1"].metadata["variant"] for c in scored.candidates
    }
    assert variants == {("C1", "P1"): "enriched", ("C1", "P2"): "enriched", ("C2", "P5"): "enriched", ("C3", "P9"): "base"}


@pytest.mark.spark
@pytest.mark.parametrize(("source", "suffix"), [(orders.json_array_source, ".json"), (orders.csv_source, ".csv")], ids=["json-array", "csv"])
def test_a_json_array_or_csv_source_gives_the_same_result(spark, tmp_path, source, suffix):
    _, _, output = _run(spark, tmp_path, source(), suffix)

    assert _features_by_candidate(output)[("C1", "P2")] == orders.EXPECTED_FEATURES["C1"]
    assert _features_by_candidate(output)[("C2", "P5")] == orders.EXPECTED_FEATURES["C2"]
    assert {k: output["metrics"][k] for k in orders.EXPECTED_SOURCE_METRICS} == orders.EXPECTED_SOURCE_METRICS


@pytest.mark.spark
def test_a_date_time_end_is_inclusive_to_the_instant(spark, tmp_path):
    _, _, output = _run(spark, tmp_path, orders.jsonl_source(), ".jsonl", date_end="2025-03-31T12:00:00Z")
    features = _features_by_candidate(output)

    # C2's order at exactly 12:00:00 is in; the reference time is now 12:00, not the next midnight.
    assert features[("C2", "P5")]["daysSinceLastOrder"] == 0.0
    assert features[("C1", "P1")]["daysSinceLastOrder"] == 11.0
    assert output["metrics"]["sourceEventCount"] == 5


@pytest.mark.spark
def test_no_candidates_still_counts_the_source(spark, tmp_path):
    source = tmp_path / "orders.jsonl"
    source.write_bytes(orders.jsonl_source())
    storage = DictStorage(tmp_path)
    storage.write(BUCKET, INPUT_KEY, json.dumps(orders.filter_output() | {"candidates": []}).encode(), "application/json")

    heavy_etl.main(_argv(str(source)), spark=spark, storage=storage)

    output = _output(storage)
    assert (output["candidates"], output["notEnriched"]) == ([], [])
    assert output["metrics"]["inputCount"] == output["metrics"]["enrichedCount"] == 0
    assert output["metrics"]["sourceEventCount"] == orders.EXPECTED_SOURCE_METRICS["sourceEventCount"]


# -- bad input fails the job with a clear message ---------------------------------------


@pytest.mark.spark
def test_a_missing_filter_output_fails_naming_it(spark, tmp_path):
    storage = DictStorage(tmp_path)

    with pytest.raises(HeavyEtlInputError, match=rf"input s3://{BUCKET}/{INPUT_KEY} does not exist: the Filter stage"):
        heavy_etl.main(_argv(str(tmp_path / "orders.jsonl")), spark=spark, storage=storage)
    assert storage.objects == {}


@pytest.mark.spark
@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"{not json", "is not JSON"),
        (b'{"candidates": {"a": 1}}', "is not a Filter output: expected a stage manifest or a JSON object with a 'candidates' list"),
        (b'{"candidates": [{"customerId": "C1"}, {"subject": {}}]}', r"candidates\[1\] of the document is not a candidate with a customerId"),
    ],
    ids=["not-json", "no-candidate-list", "candidate-without-customer"],
)
def test_a_damaged_filter_output_fails_naming_it(spark, tmp_path, document, message):
    storage = DictStorage(tmp_path)
    storage.write(BUCKET, INPUT_KEY, document, "application/json")
    # A real source, so that the job gets as far as the candidates (it reads them part by part, after the source).
    (tmp_path / "orders.jsonl").write_bytes(orders.jsonl_source())

    with pytest.raises(HeavyEtlInputError, match=message):
        heavy_etl.main(_argv(str(tmp_path / "orders.jsonl")), spark=spark, storage=storage)
    assert not any(key.endswith(".jsonl") and "/HeavyETL/" in key for _, key in storage.objects), "no part written"


@pytest.mark.spark
def test_a_missing_source_fails_naming_it(spark, tmp_path):
    storage = _storage_with_input(tmp_path)
    missing = str(tmp_path / "nowhere.jsonl")

    with pytest.raises(HeavyEtlInputError, match=rf"source '{missing}' does not exist"):
        heavy_etl.main(_argv(missing), spark=spark, storage=storage)
    assert (BUCKET, OUTPUT_KEY) not in storage.objects


@pytest.mark.spark
def test_a_source_spark_cannot_find_fails_naming_it(spark, tmp_path):
    # As on Glue: the storage hands Spark the URI and Spark reports the missing path.
    storage = _storage_with_input(tmp_path, PassThroughStorage)
    missing = str(tmp_path / "nowhere.jsonl")

    with pytest.raises(HeavyEtlInputError, match=rf"source '{missing}' does not exist"):
        heavy_etl.main(_argv(missing), spark=spark, storage=storage)


@pytest.mark.spark
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("orders.txt", b"{}", r"cannot tell the format of source .*orders.txt.* name the file .jsonl"),
        ("orders.json", b'[{"eventId": "e1"}, {"eventId": ', "starts like a JSON array but is not valid JSON"),
    ],
    ids=["unknown-extension", "broken-array"],
)
def test_an_unreadable_source_fails_naming_it(spark, tmp_path, name, content, message):
    storage = _storage_with_input(tmp_path)
    (tmp_path / name).write_bytes(content)

    with pytest.raises(HeavyEtlInputError, match=message):
        heavy_etl.main(_argv(str(tmp_path / name)), spark=spark, storage=storage)


# -- S3 on Glue ----------------------------------------------------------------


def test_s3_storage_reads_writes_and_reports_a_missing_object():
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        storage = heavy_etl.S3JobStorage(client)

        storage.write(BUCKET, OUTPUT_KEY, b'{"candidates":[]}', "application/json")

        assert storage.read(BUCKET, OUTPUT_KEY) == b'{"candidates":[]}'
        assert client.head_object(Bucket=BUCKET, Key=OUTPUT_KEY)["ContentType"] == "application/json"
        with pytest.raises(FileNotFoundError, match=f"s3://{BUCKET}/{INPUT_KEY}"):
            storage.read(BUCKET, INPUT_KEY)
        assert storage.spark_path("s3://orders/2025/03.jsonl") == "s3://orders/2025/03.jsonl"
