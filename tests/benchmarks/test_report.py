from benchmarks.report import markdown, ratios, realtime_high, table, targets


def _row(name, eps, concurrency=1000, **details):
    return {
        "name": name, "executions": 1000, "concurrency": concurrency, "executions_per_s": eps,
        "transitions_per_s": None if eps is None else eps * 6, "p50_ms": 1.0, "p99_ms": 2.0, "peak_rss_mib": 40.0,
        "details": details,
    }


RESULTS = [
    _row("bound", 20_000.0, executions_per_cpu_s=25_000.0),
    _row("ceap-realtime-c1", 7_000.0, concurrency=1),
    _row("ceap-realtime-c1000", 6_000.0, transitions=7000),
    _row("moto-5pass", 40.0),
    _row("ceap-5pass", 3_000.0),
    _row("scaling-1k", 5_000.0, wall_s=0.2, per_execution_us=200.0, rss_before_mib=40.0, rss_after_mib=41.0,
         kept_histories=False),
    _row("retry-heavy", 2_000.0, wall_s=5.0, virtual_s=120.0, transitions=110_000),
    _row("e2e-1k", 3.0, concurrency=1, records=1000, records_per_s=3000.0, wall_s=0.33, process_wall_s=0.9,
         driver="ceap run --local", timestamps="ms",
         stages={"ETL": {"records": 1000, "seconds": 0.1, "records_per_s": 10_000.0}}),
    _row("e2e-10k", None, error="exited 1: boom"),
    _row("glue-job-cold", 0.05, concurrency=1, candidates=500, candidates_per_s=23, jvm_peak_rss_mib=683.1,
         phases_s={"spark": 14.0, "total": 14.1}),
]


def _document(results=RESULTS):
    return {"machine": {"cpu": "x"}, "versions": {"python": "3.11"}, "results": results, "ratios": ratios(results)}


def test_ratios_compare_realtime_at_high_concurrency_with_the_bound_and_ceap_with_moto():
    assert ratios(RESULTS) == {"ceap_vs_bound": 0.3, "ceap_vs_moto_5pass": 75.0}
    assert realtime_high(RESULTS)["name"] == "ceap-realtime-c1000"


def test_a_missing_or_failed_side_gives_no_ratio():
    assert ratios([_row("bound", 20_000.0), _row("moto-5pass", None)]) == {
        "ceap_vs_bound": None, "ceap_vs_moto_5pass": None,
    }


def test_targets_say_which_are_met_missed_or_not_measured():
    verdicts = [(value, met) for _, value, _, met in targets(_document())]
    assert verdicts == [(6_000.0, True), (0.3, True), (75.0, False)]
    assert [met for *_, met in targets(_document([]))] == [None, None, None]


def test_the_table_shows_every_row_the_ratios_and_failures():
    text = table(_document())
    for name in ("bound", "ceap-realtime-c1000", "moto-5pass", "e2e-10k  FAILED"):
        assert name in text
    assert "ceap_vs_moto_5pass: 75.000" in text
    assert "MISSED" in text and "e2e-10k failed: exited 1: boom" in text
    assert "e2e-1k: 1,000 records, 3,000 records/s in all; per stage: ETL 10,000" in text


def test_the_page_names_the_command_machine_and_every_section():
    page = markdown(_document(), command="python -m benchmarks --markdown docs/benchmarks.md", mode="full",
                    started="2025-01-01 00:00 UTC", duration_s=300)
    assert "`python -m benchmarks --markdown docs/benchmarks.md` (full run" in page
    for heading in ("## Machine", "## Versions", "## Results", "## Ratios and targets", "## Scaling",
                    "## Retry-heavy", "## End to end", "## HeavyETL Glue job", "## Failed scenarios",
                    "## What is measured"):
        assert heading in page
    assert "| e2e-1k | 1,000 | 10,000 | 3,000 |" in page
    assert "Summary Pass: 7 transitions per execution)" in page
    assert "| bound | 1,000 | 1,000 | 20,000.0 | 25,000.0 | 120,000 |" in page
    assert "| glue-job-cold | 0.00 | 500 | 23 | 683.1 | spark 14.0, total 14.1 |" in page
