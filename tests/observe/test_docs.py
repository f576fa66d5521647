"""docs/observability.md stays true: its pictures exist, its commands and options are the CLI's."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "observability.md").read_text()


def test_every_picture_of_the_doc_is_committed():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", DOC)
    assert {"images/report-example.png", "images/report-failed.png"} <= set(images)
    for image in images:
        data = (ROOT / "docs" / image).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", image


@pytest.mark.parametrize("command, options", [
    (("graph",), ["--workflow", "-o"]),
    (("run",), ["--report"]),
    (("asl", "run"), ["--report"]),
    (("executions", "list"), ["--store", "--status", "--format"]),
    (("executions", "history"), ["--store", "--format", "--report"]),
    (("cost",), ["--workflow", "--executions-per-day", "--records", "--region", "--prices", "--lambda-speed",
                 "--glue-run-seconds", "--payload", "--format"]),
])
def test_documented_options_exist(run_ceap, command, options):
    proc = run_ceap(*command, "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0
    for option in options:
        assert option in DOC, option
        assert option in proc.stdout, (command, option)
