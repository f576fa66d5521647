"""The example order generator: deterministic, and the committed data file is what it produces."""

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("generate_orders", EXAMPLES / "generate_orders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_same_seed_same_lines_other_seed_other_lines(generator):
    assert generator.generate(300, seed=3) == generator.generate(300, seed=3)
    assert generator.generate(300, seed=3) != generator.generate(300, seed=4)


def test_line_count_and_share_of_malformed_lines(generator):
    lines = generator.generate(1200)
    assert len(lines) == 1200
    broken = 0
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            broken += 1
            continue
        if not isinstance(record, dict):
            broken += 1
    assert 1 <= broken <= 11  # the rest of the malformed kinds are valid JSON with bad values


def test_small_counts_work(generator):
    assert len(generator.generate(1)) == 1 and len(generator.generate(19)) == 19


def test_committed_data_is_what_the_generator_writes(generator, tmp_path):
    out = tmp_path / "orders.jsonl"
    assert generator.main(["--count", "1200", "--out", str(out)]) == 0
    assert out.read_bytes() == (EXAMPLES / "data" / "orders.jsonl").read_bytes()


def test_count_must_be_positive(generator, tmp_path):
    with pytest.raises(SystemExit):
        generator.main(["--count", "0", "--out", str(tmp_path / "x.jsonl")])
