from benchmarks.report import floor_pairs, markdown, ratios, realtime_high, table, targets


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
    _row("e2e-100k", 0.02, concurrency=1, records=100_000, records_per_s=2500.0, wall_s=40.0, process_wall_s=50.0,
         processes=3, driver="ceap run --local", timestamps="ms", stages={},
         counts={"candidates": 85_000, "stored": 47_000, "actions": 39_000}) | {"peak_rss_mib": 300.0},
    _row("floor-100k", 0.05, concurrency=1, records=100_000, records_per_s=5000.0, process_wall_s=20.0,
         counts={"candidates": 85_000, "stored": 47_000, "actions": 39_000}) | {"peak_rss_mib": 60.0},
    _row("e2e-1m", 0.002, concurrency=1, records=1_000_000, process_wall_s=300.0, processes=3, stages={},
         driver="ceap run --local", timestamps="ms", counts={"stored": 470_000, "actions": 390_000}) | {"peak_rss_mib": 360.0},
    _row("floor-1m", 0.005, concurrency=1, records=1_000_000, process_wall_s=200.0,
         counts={"stored": 470_000, "actions": 390_000}) | {"peak_rss_mib": 400.0},
    _row("stage-speed", 1.0, concurrency=1, records=10_000, slowest_stage="Store", min_records_per_s=4_000.0,
         driver="in process", stages={"ETL": {"records": 10_000, "seconds": 0.5, "records_per_s": 20_000.0},
                                      "Store": {"records": 5_000, "seconds": 1.25, "records_per_s": 4_000.0}}),
    _row("glue-job-cold", 0.05, concurrency=1, candidates=500, candidates_per_s=23, jvm_peak_rss_mib=683.1,
         phases_s={"spark": 14.0, "total": 14.1}),
]


def _document(results=RESULTS):
    return {"machine": {"cpu": "x"}, "versions": {"python": "3.11"}, "results": results, "ratios": ratios(results)}


def test_ratios_compare_realtime_with_the_bound_ceap_with_moto_and_ceap_with_the_floor():
    assert ratios(RESULTS) == {
        "ceap_vs_bound": 0.3, "ceap_vs_moto_5pass": 75.0,
        "ceap_vs_floor_wall_100k": 2.5, "ceap_vs_floor_rss_100k": 5.0,
        "ceap_vs_floor_wall_1m": 1.5, "ceap_vs_floor_rss_1m": 0.9,
    }
    assert realtime_high(RESULTS)["name"] == "ceap-realtime-c1000"


def test_a_pair_pairs_each_e2e_run_with_the_floor_on_its_file_and_rates_over_process_wall_time():
    [small, large] = floor_pairs(RESULTS)  # e2e-1k has no floor row and e2e-10k failed
    assert (small["size"], large["size"]) == ("100k", "1m")
    assert (small["ceap_records_per_s"], small["floor_records_per_s"]) == (2000.0, 5000.0)
    assert small["ceap_counts"]["stored"] == small["floor_counts"]["stored"] == 47_000


def test_a_missing_or_failed_side_gives_no_ratio():
    assert ratios([_row("bound", 20_000.0), _row("moto-5pass", None)]) == {
        "ceap_vs_bound": None, "ceap_vs_moto_5pass": None,
    }


def test_targets_say_which_are_met_missed_or_not_measured():
    verdicts = [(t.value, t.met) for t in targets(_document())]
    assert verdicts == [(6_000.0, True), (0.3, True), (75.0, False),
                        (1.5, True), (360.0, True), (1.2, True), (4_000.0, False)]
    assert [t.met for t in targets(_document([]))] == [None] * 7


def test_the_table_shows_every_row_the_ratios_and_failures():
    text = table(_document())
    for name in ("bound", "ceap-realtime-c1000", "moto-5pass", "e2e-10k  FAILED"):
        assert name in text
    assert "ceap_vs_moto_5pass: 75.000" in text
    assert "MISSED" in text and "e2e-10k failed: exited 1: boom" in text
    assert "e2e-1k: 1,000 records, 3,000 records/s in all; per stage: ETL 10,000" in text
    assert "target ceap / floor wall time, largest e2e run (1m in a full run): 1.50 (<= 2.00) met" in text
    assert ("100k: ceap 50.00 s, 2,000 rec/s, 300.0 MiB | floor 20.00 s, 5,000 rec/s, 60.0 MiB | "
            "ceap/floor wall 2.50x, RSS 5.00x | ceap/floor stored 47,000/47,000, actions 39,000/39,000") in text
    assert "stage-speed (one core, 10,000 order events): records/s per stage: ETL 20,000, Store 4,000; slowest Store" in text


def test_the_page_names_the_command_machine_and_every_section():
    page = markdown(_document(), command="python -m benchmarks --markdown docs/benchmarks.md", mode="full",
                    started="2025-01-01 00:00 UTC", duration_s=300)
    assert "`python -m benchmarks --markdown docs/benchmarks.md` (full run" in page
    for heading in ("## Machine", "## Versions", "## Results", "## Ratios and targets", "## Scaling",
                    "## Retry-heavy", "## End to end: ceap and the floor", "## End to end, per stage",
                    "## Each stage on one core", "## HeavyETL Glue job", "## Failed scenarios", "## What is measured"):
        assert heading in page
    assert "| e2e-1k | 1,000 | 10,000 | 3,000 |" in page
    assert "| 100,000 | 50.00 | 20.00 | 2,000 | 5,000 | 300.0 | 60.0 | 2.50 | 5.00 | 85,000 / 85,000 |" in page
    assert "up to 3 processes at once" in page
    assert "| Store | 5,000 | 1.250 | 4,000 |" in page
    assert "| ceap / floor wall time, largest e2e run (1m in a full run) | 1.50 | <= 2.00 | met |" in page
    assert "Summary Pass: 7 transitions per execution)" in page
    assert "| bound | 1,000 | 1,000 | 20,000.0 | 25,000.0 | 120,000 |" in page
    assert "| glue-job-cold | 0.00 | 500 | 23 | 683.1 | spark 14.0, total 14.1 |" in page


def test_a_failed_run_bigger_than_every_success_leaves_the_largest_run_targets_unmeasured():
    results = [r for r in RESULTS if r["name"] not in ("e2e-1m", "floor-1m")]
    document = _document([*results, _row("e2e-1m", None, error="exited 1: States.Timeout")])
    by_label = {t.label: t for t in targets(document)}
    assert by_label["ceap / floor wall time, largest e2e run (1m in a full run)"].met is None
    assert by_label["ceap peak RSS MiB, largest e2e run (400 MB)"].met is None
    assert [t.met for t in targets(_document())][3:6] == [True, True, True]  # a smaller failure does not count


def test_the_page_shows_the_serve_rows_and_their_ratios():
    serve = {"cpus": 2, "a_ceap_sync_express": {"executions": 1000, "per_second": 205.7},
             "b_ceap_capacity": {"executions": 19110, "per_second": 1911.0, "client_cpu_per_wall_second": 0.79},
             "b_ministack_capacity": {"executions": 757, "per_second": 75.7}, "b_ceap_over_ministack": 25.2}
    page = markdown({**_document(), "serve": serve}, command="c", mode="full", started="s", duration_s=1)
    assert "## ceap serve over HTTP" in page
    assert "| (b) ceap serve capacity: client processes over keep-alive connections | 19,110 | 1,911.0 | 0.79 |" in page
    assert "- ceap / MiniStack, capacity (target >= 20): 25.20" in page
    assert "- ceap / boto3's ceiling, sequential (target >= 0.80): -" in page
    failed = markdown({**_document(), "serve": {"error": "OSError: no port"}}, command="c", mode="full", started="s",
                      duration_s=1)
    assert "Not measured: OSError: no port" in failed
