"""Payload templates: the size bound the payload limit relies on instead of serialising."""

import pytest

from ceap_engine.asl.payload import compile_template, payload_size

RESULT = {"Payload": {"outputKey": "k/é\"x", "counts": {"in": 3, "out": [1, 2, 3]}, "parts": []}, "StatusCode": 200}


@pytest.mark.parametrize("source", [
    {"outputKey.$": "$.Payload.outputKey", "counts.$": "$.Payload.counts"},
    {"all.$": "$", "again.$": "$", "literal": "ünïcode", "nested": [{"s.$": "$.StatusCode"}, 1, None]},
    {"counts.$": "$.Payload.counts", "counts": "the literal key of the same name is overwritten"},
])
def test_a_template_of_document_paths_stays_within_its_size_bound(source):
    template = compile_template(source, "ResultSelector")
    value = template.evaluate(RESULT, None)
    assert template.picks is not None
    assert payload_size(value) <= template.size_bound(payload_size(RESULT))


@pytest.mark.parametrize("source", [
    {"range.$": "States.ArrayRange(1, 100000, 1)"},  # an intrinsic can be larger than the document
    {"id.$": "$$.Execution.Id"},
    {"many.$": "$..counts"},
    {"v.$": "$variable"},
])
def test_a_template_with_anything_but_definite_document_paths_has_no_bound(source):
    assert compile_template(source, "ResultSelector").size_bound(1000) == -1
