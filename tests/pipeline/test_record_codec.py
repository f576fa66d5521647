"""The fast record path: msgspec Structs decode a part, the pydantic model still decides what is valid."""

import gc
import json
from datetime import UTC, datetime

import msgspec
import pytest

from ceap_engine.pipeline.record_codec import RecordCodec, RecordWire, paused_gc
from ceap_engine.pipeline.stage import PermanentError
from ceap_engine.pipeline.stage_data import parse_part_input, parse_wire_input
from ceap_engine.pipeline.stage_runtime import load_stage_function
from ceap_engine.storage.parts import split_lines
from ceap_engine.testing import StageTestEnvironment
from stages import wire
from stages.domain import Candidate, Subject

GOOD = {
    "customerId": "C1",
    "context": [{"type": "program", "id": "reviews"}, {"type": "marketplace", "id": "US"}],
    "subject": {"type": "PRODUCT", "id": "B01"},
    "attributes": {
        "eventDate": "2025-04-01T09:00:00Z", "deliveryDate": "2025-04-02T09:00:00Z",
        "timingWindow": {"start": "2025-04-05T09:00:00Z", "end": "2025-05-02T09:00:00Z"},
        "orderValue": 40.0, "currency": "USD", "channelEligibility": {"email": True},
        "customerTrustScore": 0.9,
    },
}


def line(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def with_(path: str, value: object) -> dict:
    record = json.loads(json.dumps(GOOD))
    *parents, leaf = path.split(".")
    target = record
    for p in parents:
        target = target.setdefault(p, {})
    target[leaf] = value
    return record


BAD = [
    with_("customerId", ""),
    with_("subject.id", ""),
    with_("attributes.timingWindow", {"start": "2025-05-05T00:00:00Z", "end": "2025-05-01T00:00:00Z"}),
    with_("attributes.orderValue", "forty"),
    with_("scores", {"m": {"modelId": "m", "value": 0.5, "confidence": 1.5, "timestamp": "2025-04-01T00:00:00Z"}}),
    with_("attributes.eventDate", "2025-02-30T00:00:00Z"),
    with_("features", {"x": 1e999}),
    {"subject": {"type": "PRODUCT", "id": "B01"}},
]
LAX = [  # what the model accepts although the Struct does not: the model's reading wins
    with_("attributes.orderValue", "40.5"),
    with_("attributes.eventDate", "2025-04-01T11:00:00+02:00"),
    with_("attributes.eventDate", "2025-04-01T09:00:00"),
    with_("attributes.eventDate", "2025-04-01"),
    with_("attributes.priorReviewCount", 3.0),
    # Offsets without a colon and fractions past microseconds: msgspec keeps the offset and rounds,
    # the model converts to UTC and truncates (the offset scan sends them to the model).
    with_("attributes.eventDate", "2025-04-01T11:00:00+0200"),
    with_("attributes.eventDate", "2025-04-01T04:00:00.25-0500"),
    with_("attributes.eventDate", "2025-04-01T09:00:00.1234567Z"),
]


class _Stage:
    input_model = load_stage_function("stages.filter:run").input_model


def test_a_part_is_refused_and_read_exactly_as_the_model_reads_it():
    lines = [line(r) for r in [GOOD, *BAD, *LAX, with_("extraField", {"kept": True})]]
    records, failures = wire.CANDIDATES.codec.decode(lines)
    model_input, model_errors = parse_part_input(_Stage, {}, lines, "s3://b/k")
    assert [(f.position, f.message) for f in failures] == [(e["position"], e["message"]) for e in model_errors]
    assert [f.position for f in failures] == list(range(1, 1 + len(BAD)))
    assert [wire.CANDIDATES.codec.to_model(r) for r in records] == model_input.candidates


def test_a_timestamp_in_another_offset_is_read_in_utc_and_not_passed_through_as_it_was():
    records, _ = wire.CANDIDATES.codec.decode([line(GOOD), line(LAX[1])])
    assert records[1].attributes.event_date == datetime(2025, 4, 1, 9, tzinfo=UTC)
    assert records[1].attributes.event_date.utcoffset().total_seconds() == 0
    assert records.lines[1] == b""  # encoded again in UTC, not handed on with its offset


def test_a_fraction_past_microseconds_is_truncated_as_the_model_reads_it():
    late = with_("attributes.timingWindow", {"start": "2025-04-05T09:00:00.9999999Z", "end": "2025-05-02T09:00:00Z"})
    records, failures = wire.CANDIDATES.codec.decode([line(GOOD), line(late)])
    assert failures == [] and records.lines[1] == b""  # read by the model, encoded again
    assert records[1].attributes.timing_window.start == datetime(2025, 4, 5, 9, 0, 0, 999999, tzinfo=UTC)


def test_only_lines_the_fast_path_read_are_handed_on_as_they_were():
    records, failures = wire.CANDIDATES.codec.decode([line(GOOD), line(LAX[0]), line(with_("customerId", ""))])
    assert len(failures) == 1 and records.lines[0] == line(GOOD)
    assert records[1].attributes.order_value == 40.5 and records.lines[1] == b""  # "40.5" read by the model


def test_an_order_event_with_padded_ids_is_read_by_the_model():
    from stages.etl import EVENTS

    event = {"eventId": "e1", "customerId": " C1 ", "orderId": "O1", "marketplace": "US", "productId": "B01",
             "orderDate": "2025-03-02T10:00:00Z", "orderValue": 25.5, "currency": "USD"}
    assert EVENTS.fast(line(event)) is None
    assert EVENTS.decode_line(line(event)).customer_id == "C1"
    assert EVENTS.fast(line({**event, "customerId": "C1"})).customer_id == "C1"
    assert EVENTS.fast(line({**event, "currency": "USD\n"})) is None


def test_the_id_and_currency_checks_accept_exactly_what_their_patterns_accept():
    import re
    import sys

    from stages.etl import EVENTS
    from stages.wire import _currency_code, _plain_id

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if re.fullmatch(r"\s", chr(c))]
    assert spaces == [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]  # re's \s is str.isspace
    ids = ["", "a", "B0X1", "a b", "a\nb", "a\rb", "\n", "a\n", "\u00e9", "x\u00a0y", "\U0001f600"]
    ids += [w + "a" for w in spaces] + ["a" + w for w in spaces] + ["a" + w + "b" for w in spaces] + spaces
    pattern = re.compile(r"^\S(?:.*\S)?\Z")
    assert [_plain_id(s) for s in ids] == [pattern.search(s) is not None for s in ids]
    letters = ["A", "Z", "a", "z", "0", "\u00c4", "\u0130", "\u212a", " ", "\n", "_", "@", "["]
    codes = [a + b + c for a in letters for b in letters[:4] for c in letters] + ["", "US", "USDX", "USD\n"]
    currency = re.compile(r"^[A-Z]{3}\Z")
    assert [_currency_code(s) for s in codes] == [currency.search(s) is not None for s in codes]
    event = {"eventId": "e1", "customerId": "C1", "orderId": "O1", "marketplace": "US", "productId": "B01",
             "orderDate": "2025-03-02T10:00:00Z", "orderValue": 25.5, "currency": "USD"}
    assert EVENTS.fast(line(event)) is not None
    for field, value in [("orderId", "O\n1"), ("productId", "B01\u3000"), ("marketplace", ""), ("currency", "usd")]:
        assert EVENTS.fast(line({**event, field: value})) is None, (field, value)  # the model decides


def test_an_order_event_with_a_timestamp_not_in_utc_is_read_by_the_model_in_utc():
    from stages.etl import EVENTS

    event = {"eventId": "e1", "customerId": "C1", "orderId": "O1", "marketplace": "US", "productId": "B01",
             "orderDate": "2025-03-02T10:00:00Z", "orderValue": 25.5, "currency": "USD"}
    noon_utc = datetime(2025, 3, 2, 10, tzinfo=UTC)
    for field, value in [("orderDate", "2025-03-02T12:00:00+02:00"), ("deliveryDate", "2025-03-03T01:00:00-05:00"),
                         ("orderDate", "2025-03-02T10:00:00")]:
        assert EVENTS.fast(line({**event, field: value})) is None, value  # no offset scan: the Struct refuses it
        read = EVENTS.decode_line(line({**event, field: value}))
        assert read.order_date == noon_utc and read.order_date.utcoffset().total_seconds() == 0
        if field == "deliveryDate":
            assert read.delivery_date == datetime(2025, 3, 3, 6, tzinfo=UTC)
    zero = EVENTS.fast(line({**event, "orderDate": "2025-03-02T10:00:00+00:00"}))
    assert zero.order_date == noon_utc and zero.order_date.utcoffset().total_seconds() == 0  # what the model reads


def test_a_line_that_is_not_json_fails_the_part_as_before():
    with pytest.raises(PermanentError, match="is not a valid FilterInput: .*Invalid JSON"):
        parse_part_input(_Stage, {}, [line(GOOD), b"{oops"], "s3://b/k")
    with pytest.raises(PermanentError, match="is not a valid FilterInput: .*Invalid JSON"):
        parse_wire_input(_Stage.input_model, wire.CANDIDATES.codec, {}, [line(GOOD), b"{oops"], "s3://b/k")


async def test_through_the_runtime_a_bad_record_is_an_error_with_its_position_and_unknown_fields_pass_through(
    ceap_stage_env: StageTestEnvironment,
):
    good = with_("extraField", {"kept": True})
    await ceap_stage_env.invoke("stages.filter:run", stage="Filter", previous="ETL",
                                previous_output={"candidates": [good, with_("customerId", ""), GOOD]},
                                config={"asOf": "2025-04-05T00:00:00Z"})
    manifest = await ceap_stage_env.output_of("Filter")
    assert manifest["metrics"]["passedCount"] == 2
    [errors] = manifest["parts"]["errors"]
    [error] = [json.loads(x) for x in split_lines(await ceap_stage_env.objects.get(ceap_stage_env.bucket, errors["key"]))]
    assert error == {"stage": "Filter", "part": 0, "position": 1, "reasonCode": "INVALID_RECORD", "key": "",
                     "message": "customerId: String should have at least 1 character"}
    [passed] = manifest["parts"]["candidates"]
    out = [json.loads(x) for x in split_lines(await ceap_stage_env.objects.get(ceap_stage_env.bucket, passed["key"]))]
    assert out[0]["extraField"] == {"kept": True}
    assert Candidate.model_validate(out[1]) == Candidate.model_validate(GOOD)


def test_the_structs_mirror_the_models_field_for_field():
    pairs = [(wire.Candidate, Candidate)]
    seen = set()
    while pairs:
        struct, model = pairs.pop()
        if struct in seen:
            continue
        seen.add(struct)
        fields = {f.name: f for f in msgspec.structs.fields(struct)}
        assert set(fields) == set(model.model_fields), struct
        for name, info in model.model_fields.items():
            assert fields[name].encode_name == (info.alias or name), (struct, name)
            nested = [t for t in [info.annotation, *getattr(info.annotation, "__args__", ())]
                      if isinstance(t, type) and hasattr(t, "model_fields")]
            for inner in nested:
                pairs.append((getattr(wire, inner.__name__), inner))
    assert len(seen) >= 6


def test_a_struct_and_its_model_encode_to_the_same_json():
    model = Candidate.model_validate(GOOD)
    struct = wire.CANDIDATES.codec.from_model(model)
    assert json.loads(msgspec.json.encode(struct)) == model.to_json() == wire.to_builtins(struct)


def test_the_collector_is_paused_for_a_part_and_back_after_it():
    assert gc.isenabled()
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_codec_refuses_what_its_model_refuses_line_by_line():
    codec = RecordCodec(wire.Subject, Subject)
    assert codec.decode_line(b'{"type":"PRODUCT","id":""}').message == "id: String should have at least 1 character"


def test_structs_encoded_together_are_the_lines_each_encodes_alone():
    # encode_structs splits one JSON Lines buffer: a string holding a newline, U+2028 or any
    # other character must not split a record, and each line must be encode_struct's.
    from ceap_engine.pipeline.record_codec import encode_struct, encode_structs

    tricky = ["a\nb", "\u2028\u2029", "\r\n\t\"\\", "é😀", ""]
    values = [wire.Subject(type="PRODUCT", id=text, metadata={"n": text}) for text in tricky] + [{"x": [1, 2.5]}]
    assert encode_structs(values) == [encode_struct(v) for v in values]
    assert encode_structs([]) == []


def test_an_output_list_mixing_lines_structs_and_models_is_encoded_in_its_order():
    # PartOutput encodes runs of Structs in one call: lines, models and a model that cannot be
    # JSON (NON_FINITE) must keep their places between them.
    from ceap_engine.pipeline.record_codec import encode_struct
    from ceap_engine.pipeline.stage_data import _encode_items
    from ceap_engine.storage.parts import NonFiniteNumber
    from stages.domain import ModelScore

    s1, s2, s3 = (wire.Subject(type="PRODUCT", id=f"P{i}") for i in range(3))
    good = Subject(type="PRODUCT", id="M")
    bad = ModelScore(model_id="m", value=0.5, confidence=0.5, timestamp=datetime(2025, 1, 1, tzinfo=UTC))
    bad = bad.model_copy(update={"value": float("inf")})
    out = _encode_items([b'{"line":1}', s1, s2, good, bad, s3, b'{"line":2}'])
    assert out[:4] == [b'{"line":1}', encode_struct(s1), encode_struct(s2), good.model_dump_json(by_alias=True).encode()]
    assert isinstance(out[4], NonFiniteNumber)
    assert out[5:] == [encode_struct(s3), b'{"line":2}']


# Reactive reads a projection of the candidate (wire.ActionCandidate): the fields it uses, no others.
PROJECTION = {wire.ActionCandidate: wire.Candidate, wire.ActionSubject: wire.Subject, wire.ActionScore: wire.ModelScore,
              wire.ActionAttributes: wire.CandidateAttributes, wire.ActionMetadata: wire.CandidateMetadata,
              wire.UtcTimingWindow: wire.TimingWindow}


def test_reactives_projection_is_the_candidates_fields_with_their_names_types_and_defaults():
    for projection, whole in PROJECTION.items():
        fields = {f.name: f for f in msgspec.structs.fields(whole)}
        for f in msgspec.structs.fields(projection):
            assert f.name in fields, (projection, f.name)
            same = fields[f.name]
            assert (f.encode_name, f.required) == (same.encode_name, same.required), (projection, f.name)
            if f.default is not msgspec.NODEFAULT:
                assert f.default == same.default, (projection, f.name)
            # A field's type is the whole candidate's, with each Struct in it replaced by its projection.
            typ = f.type
            for inner, outer in PROJECTION.items():
                typ = str(typ).replace(inner.__qualname__, outer.__qualname__)
            assert str(typ) == str(same.type), (projection, f.name)


def _projected(line: bytes) -> dict:
    return msgspec.json.decode(msgspec.json.encode(wire.ACTION_CANDIDATES.decode_line(line)))


def test_the_projection_reads_what_the_whole_candidate_says():
    scored = with_("scores", {"m": {"modelId": "m", "value": 0.7, "confidence": 0.5, "timestamp": "2025-04-01T00:00:00Z"}})
    for record in [GOOD, scored, *LAX, with_("metadata", {"experimentTreatment": "control", "version": 3})]:
        whole = wire.CANDIDATES.codec.decode_line(line(record))
        assert _projected(line(record)) == _projected(msgspec.json.encode(whole)), record


def test_a_timing_window_not_in_utc_is_read_in_utc_by_the_projection():
    utc = line(GOOD)
    for start, end in [("2025-04-05T11:00:00+02:00", "2025-05-02T11:00:00+02:00"),
                       ("2025-04-05T07:00:00-0200", "2025-05-02T07:00:00-0200"),  # no colon: msgspec reads it too
                       ("2025-04-05T09:00:00+00:00", "2025-05-02T09:00:00+00:00")]:
        other = line(with_("attributes.timingWindow", {"start": start, "end": end}))
        window = wire.ACTION_CANDIDATES.decode_line(other).attributes.timing_window
        assert window.start.tzinfo is UTC and window.start.isoformat() == "2025-04-05T09:00:00+00:00", start
        assert _projected(other) == _projected(utc)


def test_the_projection_refuses_what_the_model_refuses_in_the_fields_it_reads_and_reads_past_the_others():
    records, failures = wire.ACTION_CANDIDATES.decode([line(r) for r in BAD])
    model_input, model_errors = parse_part_input(_Stage, {}, [line(r) for r in BAD], "s3://b/k")
    refused = {e["position"]: e["message"] for e in model_errors}
    got = {f.position: f.message for f in failures}
    assert got == {n: refused[n] for n in got}  # each refusal is the model's, in its words
    # customerId, subject.id, the timing window and the missing customerId are read, so refused;
    # orderValue, a score's confidence and eventDate are not read, so not checked.
    assert {0, 1, 2, 7} <= set(got) and not {3, 4, 5} & set(got)
    assert len(records) == len(BAD) - len(got)


@pytest.mark.parametrize("size", [0, -1, 2.5, "10", True])
def test_a_record_wire_refuses_a_slice_size_that_is_not_a_whole_number_of_records(size):
    with pytest.raises(ValueError, match="slice_records must be a whole number >= 1"):
        RecordWire(wire.CANDIDATES.codec, lambda input, context: input, slice_records=size)
    assert RecordWire(wire.CANDIDATES.codec, lambda input, context: input, slice_records=1).slice_records == 1
