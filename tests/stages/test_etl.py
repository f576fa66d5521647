import inspect
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from ceap_engine.pipeline.stage import PermanentError
from stages import etl
from stages.etl import EtlInput, EtlOutput

from .conftest import BUCKET, EXECUTION_ID, NOW, order_event, run_etl, through_json

DATE_RANGE = {"start": "2025-03-01", "end": "2025-04-04"}


def payload(source: Path | str, **overrides) -> EtlInput:
    return EtlInput.model_validate(
        {"programId": "reviews", "marketplace": "US", "dateRange": DATE_RANGE, "source": str(source), **overrides}
    )


def write_jsonl(path: Path, *lines) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines), encoding="utf-8")
    return path


def assert_reconciles(out: EtlOutput) -> None:
    m = out.metrics
    assert m.processed_count == m.transformed_count + m.error_count
    assert out.records_read == m.processed_count + out.skipped.other_marketplace + out.skipped.outside_date_range


def test_run_is_a_coroutine_function_taking_input_and_context():
    assert inspect.iscoroutinefunction(etl.run)
    assert list(inspect.signature(etl.run).parameters) == ["input", "context"]


async def test_one_event_becomes_one_candidate(tmp_path, make_context):
    source = write_jsonl(tmp_path / "orders.jsonl", order_event())
    out = await run_etl(payload(source), make_context("ETL"))

    assert out.metrics.model_dump() == {"processed_count": 1, "transformed_count": 1, "error_count": 0}
    [c] = out.candidates
    assert c.customer_id == "C1" and c.program_id == "reviews" and c.marketplace == "US"
    assert (c.subject.type, c.subject.id, c.subject.metadata) == ("PRODUCT", "B01", {"category": "Books"})
    a = c.attributes
    assert a.event_date == datetime(2025, 3, 20, 10, tzinfo=UTC)
    assert a.delivery_date == datetime(2025, 3, 22, 15, tzinfo=UTC)
    assert a.timing_window.start == a.delivery_date + timedelta(days=3)
    assert a.timing_window.end == a.delivery_date + timedelta(days=30)
    assert (a.order_value, a.currency, a.order_count, a.order_ids, a.source_event_ids) == (20.0, "USD", 1, ["O1"], ["e1"])
    assert a.channel_eligibility == {"email": True, "push": False}
    assert (a.customer_trust_score, a.review_quality_score, a.prior_review_count) == (0.8, 0.7, 2)
    assert not a.fraud_suspected and not a.consumed
    assert c.metadata.created_at == NOW and c.metadata.updated_at == NOW
    assert c.metadata.expires_at == NOW + timedelta(days=30)
    assert c.metadata.workflow_execution_id == EXECUTION_ID
    assert c.metadata.source_connector_id == "order-events"
    assert c.metadata.experiment_treatment in ("treatment", "control")
    assert c.scores == {} and c.rejection_history == [] and c.features == {}


async def test_a_one_event_candidate_reads_its_values_as_a_merge_of_many_would(tmp_path, make_context):
    # A merge sums the order values (sum() starts at 0, so -0.0 becomes 0.0) and keeps the event's
    # spacing-free line as it was read; one event takes a shorter path that must agree.
    spaced = json.dumps(order_event(eventId="e9", orderId="O9", productId="B09", orderValue=-0.0), indent=None,
                        separators=(", ", ": "))
    source = write_jsonl(tmp_path / "orders.jsonl", spaced, order_event(customerTrustScore=None, category=None))
    out = await run_etl(payload(source), make_context("ETL"))
    zero, plain = sorted(out.candidates, key=lambda c: c.subject.id, reverse=True)
    assert json.dumps(zero.attributes.order_value) == "0.0"
    assert (zero.attributes.order_ids, zero.attributes.source_event_ids) == (["O9"], ["e9"])
    assert plain.attributes.customer_trust_score is None and plain.subject.metadata == {}


async def test_output_json_is_camel_case_and_round_trips(tmp_path, make_context):
    source = write_jsonl(tmp_path / "orders.jsonl", order_event(), "{broken")
    out = await run_etl(payload(source), make_context("ETL"))
    data = out.to_json()
    assert data["metrics"] == {"processedCount": 2, "transformedCount": 1, "errorCount": 1}
    assert data["programId"] == "reviews" and data["dateRange"] == DATE_RANGE
    assert data["errors"][0]["line"] == 2
    assert through_json(EtlOutput, out.output) == out.output


async def test_events_of_one_customer_and_product_merge_into_one_candidate(tmp_path, make_context):
    source = write_jsonl(
        tmp_path / "orders.jsonl",
        order_event(eventId="e2", orderId="O2", orderDate="2025-03-25T10:00:00Z", deliveryDate=None,
                    orderValue=5.0, channelOptIns={"push": True}, customerTrustScore=None, reviewQualityScore=None,
                    priorReviewCount=1, fraudFlag=True, category="Used books"),
        order_event(eventId="e1", orderId="O1", orderDate="2025-03-20T10:00:00Z", orderValue=20.0,
                    mediaEligible=True, priorReviewCount=4),
        order_event(eventId="e3", orderId="O3", orderDate="2025-03-21T10:00:00Z",
                    deliveryDate="2025-03-23T10:00:00Z", orderValue=7.5, currency="CAD"),
        order_event(eventId="e4", productId="B02"),
        order_event(eventId="e5", customerId="C2"),
    )
    out = await run_etl(payload(source), make_context("ETL"))

    assert out.metrics.transformed_count == 5
    assert [(c.customer_id, c.subject.id) for c in out.candidates] == [("C1", "B01"), ("C1", "B02"), ("C2", "B01")]
    a = out.candidates[0].attributes
    # Ordered by order date: e1 (03-20), e3 (03-21), e2 (03-25, latest, not delivered).
    assert a.event_date == datetime(2025, 3, 25, 10, tzinfo=UTC)
    assert a.delivery_date == datetime(2025, 3, 23, 10, tzinfo=UTC)  # latest delivery of any event
    assert a.timing_window is not None
    assert a.currency == "USD" and a.order_value == 25.0  # the CAD event is not added to a USD sum
    assert a.order_ids == ["O1", "O3", "O2"] and a.order_count == 3
    assert a.source_event_ids == ["e1", "e3", "e2"]
    assert a.channel_eligibility == {"push": True}  # the newest preference
    assert a.customer_trust_score == 0.8 and a.review_quality_score == 0.7  # latest *known* values
    assert a.fraud_suspected and a.media_eligible and a.prior_review_count == 4
    assert out.candidates[0].subject.metadata == {"category": "Used books"}


async def test_a_redelivered_event_is_transformed_but_adds_nothing(tmp_path, make_context):
    first = order_event(eventId="e1", orderValue=20.0)
    source = write_jsonl(tmp_path / "orders.jsonl", first, order_event(eventId="e1", orderValue=99.0), first)
    out = await run_etl(payload(source), make_context("ETL"))
    assert out.metrics.transformed_count == 3 and out.duplicate_event_count == 2
    [c] = out.candidates
    assert c.attributes.order_value == 20.0 and c.attributes.source_event_ids == ["e1"]


MALFORMED = [
    pytest.param('{"eventId": "e9", "customerId": ', "not valid JSON", id="truncated-json"),
    pytest.param("-- export interrupted --", "not valid JSON", id="not-json"),
    pytest.param('["e9", "C1"]', "expected a JSON object, got list", id="array"),
    pytest.param('"just a string"', "expected a JSON object, got str", id="string"),
    pytest.param(json.dumps({k: v for k, v in order_event().items() if k != "customerId"}), "customerId: Field required", id="missing-field"),
    pytest.param(json.dumps(order_event(orderValue=-3)), "orderValue: Input should be greater than or equal to 0", id="negative-value"),
    pytest.param(json.dumps(order_event(orderValue="twelve")), "orderValue: Input should be a valid number", id="value-not-a-number"),
    pytest.param(json.dumps(order_event(orderDate="2025-02-30T10:00:00Z")), "orderDate: Input should be a valid datetime", id="impossible-date"),
    pytest.param(json.dumps(order_event(orderDate="last tuesday")), "orderDate: Input should be a valid datetime", id="not-a-date"),
    pytest.param(json.dumps(order_event(deliveryDate="2025-03-01T00:00:00Z")), "is before orderDate", id="delivered-before-ordered"),
    pytest.param(json.dumps(order_event(eventId="  ")), "eventId: must not be blank", id="blank-id"),
    pytest.param(json.dumps(order_event(currency="usd$")), "currency: String should match pattern", id="bad-currency"),
    pytest.param(json.dumps(order_event(customerTrustScore=1.7)), "customerTrustScore: Input should be less than or equal to 1", id="trust-out-of-range"),
    pytest.param(json.dumps(order_event(quantity=0)), "quantity: Input should be greater than or equal to 1", id="zero-quantity"),
]


@pytest.mark.parametrize(("line", "reason"), MALFORMED)
async def test_a_malformed_record_is_counted_and_listed_with_its_line(tmp_path, make_context, line, reason):
    source = write_jsonl(tmp_path / "orders.jsonl", order_event(eventId="ok-1"), line, order_event(eventId="ok-2", customerId="C2"))
    out = await run_etl(payload(source), make_context("ETL"))
    assert out.metrics.model_dump() == {"processed_count": 3, "transformed_count": 2, "error_count": 1}
    [error] = out.errors
    assert error.line == 2
    assert reason in error.reason
    assert len(out.candidates) == 2


async def test_an_error_names_the_event_id_when_the_record_has_one(tmp_path, make_context):
    source = write_jsonl(tmp_path / "orders.jsonl", order_event(eventId="e-neg", orderValue=-1))
    out = await run_etl(payload(source), make_context("ETL"))
    assert out.errors[0].event_id == "e-neg"


async def test_records_of_other_marketplaces_and_dates_are_skipped_not_processed(tmp_path, make_context):
    source = write_jsonl(
        tmp_path / "orders.jsonl",
        order_event(eventId="in"),
        order_event(eventId="uk", marketplace="UK"),
        order_event(eventId="early", orderDate="2025-02-28T23:59:59Z", deliveryDate=None),
        order_event(eventId="last-day", customerId="C2", orderDate="2025-04-04T23:59:59Z", deliveryDate=None),
        order_event(eventId="late", orderDate="2025-04-05T00:00:00Z", deliveryDate=None),
        "{bad",
    )
    out = await run_etl(payload(source), make_context("ETL"))
    assert out.metrics.model_dump() == {"processed_count": 3, "transformed_count": 2, "error_count": 1}
    assert out.skipped.model_dump() == {"other_marketplace": 1, "outside_date_range": 2}
    assert out.records_read == 6
    assert sorted(c.attributes.source_event_ids[0] for c in out.candidates) == ["in", "last-day"]
    assert_reconciles(out)


async def test_blank_lines_are_not_records_and_line_numbers_stay_physical(tmp_path, make_context):
    source = tmp_path / "orders.jsonl"
    source.write_text("\n" + json.dumps(order_event()) + "\n\n   \n{bad\r\n", encoding="utf-8")
    out = await run_etl(payload(source), make_context("ETL"))
    assert out.records_read == 2 and out.errors[0].line == 5


async def test_an_empty_source_gives_no_candidates(tmp_path, make_context):
    source = tmp_path / "orders.jsonl"
    source.write_bytes(b"")
    out = await run_etl(payload(source), make_context("ETL"))
    assert out.candidates == [] and out.metrics.processed_count == 0


async def test_every_error_is_listed_in_the_errors_parts(tmp_path, make_context):
    source = write_jsonl(tmp_path / "orders.jsonl", *["{bad"] * 5, order_event())
    out = await run_etl(payload(source), make_context("ETL"))
    assert out.metrics.error_count == 5 and [e.line for e in out.errors] == [1, 2, 3, 4, 5]
    assert {e.reason_code for e in out.errors} == {"INVALID_JSON"}


async def test_a_bom_and_crlf_line_ends_are_accepted(tmp_path, make_context):
    source = tmp_path / "orders.jsonl"
    source.write_bytes(("\ufeff" + json.dumps(order_event()) + "\r\n").encode("utf-8"))
    out = await run_etl(payload(source), make_context("ETL"))
    assert out.metrics.transformed_count == 1


class TestCsv:
    HEADER = "eventId,customerId,orderId,marketplace,productId,category,orderDate,deliveryDate,orderValue,currency,channelOptIns.email,channelOptIns.push,customerTrustScore,fraudFlag,reviewQualityScore\n"

    async def test_dotted_columns_nest_and_empty_cells_are_absent(self, tmp_path, make_context):
        source = tmp_path / "orders.csv"
        source.write_text(
            self.HEADER
            + "e1,C1,O1,US,B01,Books,2025-03-20T10:00:00Z,2025-03-22T10:00:00Z,19.99,USD,true,false,0.9,false,\n"
            + "e2,C2,O2,US,B02,,2025-03-21T10:00:00Z,,5,USD,false,true,,,0.5\n",
            encoding="utf-8",
        )
        out = await run_etl(payload(source), make_context("ETL"))
        assert out.metrics.model_dump() == {"processed_count": 2, "transformed_count": 2, "error_count": 0}
        first, second = out.candidates
        assert first.attributes.channel_eligibility == {"email": True, "push": False}
        assert first.attributes.review_quality_score is None and first.attributes.order_value == 19.99
        assert second.attributes.delivery_date is None and second.attributes.customer_trust_score is None
        assert second.subject.metadata == {}

    async def test_bad_rows_are_errors_with_their_line(self, tmp_path, make_context):
        source = tmp_path / "orders.csv"
        source.write_text(
            self.HEADER
            + "e1,C1,O1,US,B01,Books,2025-03-20T10:00:00Z,,-1,USD,true,false,0.9,false,\n"
            + "e2,C2,O2,US,B02,Books,2025-03-20T10:00:00Z,,1,USD,true,false,0.9,false,,surplus\n"
            + ",,,,,,,,,,,,,,\n"
            + "e3,,O3,US,B03,Books,2025-03-20T10:00:00Z,,1,USD,true,false,0.9,false,\n",
            encoding="utf-8",
        )
        out = await run_etl(payload(source), make_context("ETL"))
        assert [(e.line, e.reason.split(":")[0]) for e in out.errors] == [
            (2, "orderValue"), (3, "row has 16 cells but the header has 15 columns"), (5, "customerId")
        ]
        assert out.metrics.error_count == 3 and out.records_read == 3

    async def test_a_quoted_multi_line_cell_keeps_line_numbers_right(self, tmp_path, make_context):
        source = tmp_path / "orders.csv"
        source.write_text(
            self.HEADER
            + 'e1,C1,O1,US,B01,"Books\nand more",2025-03-20T10:00:00Z,,10,USD,true,false,0.9,false,\n'
            + "e2,C2,O2,US,B02,Books,2025-03-20T10:00:00Z,,-5,USD,true,false,0.9,false,\n",
            encoding="utf-8",
        )
        out = await run_etl(payload(source), make_context("ETL"))
        assert out.candidates[0].subject.metadata == {"category": "Books\nand more"}
        assert out.errors[0].line == 4


async def test_json_extension_reads_json_lines(tmp_path, make_context):
    source = write_jsonl(tmp_path / "orders.json", order_event(), order_event(eventId="e2", customerId="C2"))
    out = await run_etl(payload(source), make_context("ETL"))
    assert len(out.candidates) == 2


async def test_json_extension_reads_one_array_with_positions_as_lines(tmp_path, make_context):
    source = tmp_path / "orders.json"
    source.write_text(json.dumps([order_event(), 7, order_event(eventId="e2", customerId="C2")], indent=2))
    out = await run_etl(payload(source), make_context("ETL"))
    assert len(out.candidates) == 2 and out.errors[0].line == 2


async def test_a_broken_json_array_is_a_permanent_error(tmp_path, make_context):
    source = tmp_path / "orders.json"
    source.write_text("[" + json.dumps(order_event()) + ",")
    with pytest.raises(PermanentError, match="not valid JSON"):
        await run_etl(payload(source), make_context("ETL"))


async def test_a_source_in_the_object_store_is_read_by_s3_uri(objects, make_context):
    await objects.put("ceap-input", "incoming/2025/orders.jsonl", (json.dumps(order_event()) + "\n").encode())
    out = await run_etl(payload("s3://ceap-input/incoming/2025/orders.jsonl"), make_context("ETL"))
    assert out.metrics.transformed_count == 1


class TestUnreadableSource:
    async def test_missing_file(self, tmp_path, make_context):
        with pytest.raises(PermanentError, match="does not exist"):
            await run_etl(payload(tmp_path / "nope.jsonl"), make_context("ETL"))

    async def test_missing_object(self, make_context):
        with pytest.raises(PermanentError, match="does not exist"):
            await run_etl(payload("s3://ceap-input/nope.jsonl"), make_context("ETL"))

    async def test_bucket_without_key(self, make_context):
        with pytest.raises(PermanentError, match="no object key"):
            await run_etl(payload("s3://ceap-input/"), make_context("ETL"))

    async def test_a_directory(self, tmp_path, make_context):
        (tmp_path / "dir.jsonl").mkdir()
        with pytest.raises(PermanentError, match="cannot be read"):
            await run_etl(payload(tmp_path / "dir.jsonl"), make_context("ETL"))

    async def test_unknown_extension(self, tmp_path, make_context):
        (tmp_path / "orders.xlsx").write_bytes(b"PK")
        with pytest.raises(PermanentError, match=r"\.jsonl.*\.json.*\.csv"):
            await run_etl(payload(tmp_path / "orders.xlsx"), make_context("ETL"))

    async def test_a_line_that_is_not_utf8_is_that_lines_error(self, tmp_path, make_context):
        # The source is streamed: one badly encoded line is rejected, the others go on.
        (tmp_path / "orders.jsonl").write_bytes(b'{"eventId": "\xff\xfe"}\n' + json.dumps(order_event()).encode() + b"\n")
        out = await run_etl(payload(tmp_path / "orders.jsonl"), make_context("ETL"))
        [error] = out.errors
        assert (error.line, error.reason_code) == (1, "INVALID_ENCODING") and "not UTF-8" in error.reason
        assert len(out.candidates) == 1

    async def test_csv_with_an_unterminated_quote(self, tmp_path, make_context):
        (tmp_path / "orders.csv").write_text('eventId,customerId\ne1,"C1\ne2,C2\n')
        with pytest.raises(PermanentError, match="not readable as CSV"):
            await run_etl(payload(tmp_path / "orders.csv"), make_context("ETL"))


class TestConfig:
    async def test_timing_window_and_ttl_come_from_config(self, tmp_path, make_context):
        source = write_jsonl(tmp_path / "orders.jsonl", order_event())
        config = {"timingWindowStartDays": 1, "timingWindowEndDays": 7, "candidateTtlDays": 2, "sourceConnectorId": "s"}
        [c] = (await run_etl(payload(source), make_context("ETL", config))).candidates
        assert c.attributes.timing_window.end - c.attributes.timing_window.start == timedelta(days=6)
        assert c.metadata.expires_at == NOW + timedelta(days=2) and c.metadata.source_connector_id == "s"

    async def test_treatment_share_from_config(self, tmp_path, make_context):
        source = write_jsonl(tmp_path / "orders.jsonl", *[order_event(eventId=f"e{i}", customerId=f"C{i}") for i in range(20)])
        out = await run_etl(payload(source), make_context("ETL", {"treatmentPercent": 0}))
        assert {c.metadata.experiment_treatment for c in out.candidates} == {"control"}

    async def test_window_closing_before_it_opens_is_refused(self, tmp_path, make_context):
        source = write_jsonl(tmp_path / "orders.jsonl", order_event())
        with pytest.raises(PermanentError, match="timingWindowEndDays"):
            await run_etl(payload(source), make_context("ETL", {"timingWindowStartDays": 9, "timingWindowEndDays": 2}))


@pytest.mark.parametrize(
    "bad",
    [
        {"programId": ""},
        {"dateRange": {"start": "2025-04-04", "end": "2025-03-01"}},
        {"dateRange": {"start": "2025-03-01"}},
        {"source": ""},
    ],
)
def test_invalid_payloads_are_refused_by_the_input_model(bad):
    with pytest.raises(ValidationError):
        EtlInput.model_validate({"programId": "reviews", "marketplace": "US", "dateRange": DATE_RANGE, "source": "a.jsonl", **bad})


def test_payload_may_carry_fields_etl_does_not_use():
    p = EtlInput.model_validate({"programId": "p", "marketplace": "US", "dateRange": DATE_RANGE, "source": "a.jsonl", "workflow": "batch"})
    assert p.program_id == "p"


async def test_candidates_are_stamped_by_the_context_clock(tmp_path, make_context, clock):
    clock.advance(3600)
    source = write_jsonl(tmp_path / "orders.jsonl", order_event())
    [c] = (await run_etl(payload(source), make_context("ETL"))).candidates
    assert c.metadata.created_at == NOW + timedelta(hours=1)


async def test_etl_writes_only_its_parts_and_removes_its_scratch(tmp_path, make_context, objects):
    # The runtime writes the manifest; a stage that wrote output.json too would race it.
    source = write_jsonl(tmp_path / "orders.jsonl", order_event())
    await run_etl(payload(source), make_context("ETL"))
    assert await objects.list(BUCKET) == [f"executions/{EXECUTION_ID}/ETL/part-00000.jsonl"]
