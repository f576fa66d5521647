"""The progress lines and summary pieces of ``ceap run`` (pure rendering: no process needed)."""

from ceap_engine.cli.run import _last_job_metrics
from ceap_engine.cli.run_report import RunProgress, reconciliation, stopped_reason
from ceap_engine.pipeline.local import StageProgress


def test_progress_shows_wall_time_and_the_workflow_clock_only_when_it_is_ahead():
    progress = RunProgress(clock_start=1000.0, enabled=False)
    assert progress.line(StageProgress("ETL", "started", 1, 1000.0), wall=0.4) == "   0.4s  > ETL"
    # A 2 s retry wait skipped by the virtual clock: the workflow clock is ahead of the wall clock.
    line = progress.line(StageProgress("Score", "started", 2, 1002.6), wall=0.6)
    assert line == "   0.6s (workflow clock t+2.6s)  > Score (attempt 2)"
    assert progress.line(StageProgress("Score", "succeeded", 1, 1000.0, counts={"scoredCount": 3, "byModel": {}}),
                         wall=0.7) == "   0.7s  ok Score  scoredCount=3"


def test_a_glue_stage_gets_its_counts_from_the_job_summary():
    class Runner:  # the two attributes of LocalGlueRunner the progress reads
        runs = [{"Id": "jr_1", "JobRunState": "SUCCEEDED"}]
        summaries = {"jr_1": {"metrics": {"inputCount": 581, "enrichedCount": 581}, "timings": {"total": 19.5}}}

    progress = RunProgress(0.0, enabled=False, counts_of=lambda stage: _last_job_metrics(Runner()))
    line = progress.line(StageProgress("HeavyETL", "succeeded", 1, 20.0), wall=21.0)
    assert line == "  21.0s  ok HeavyETL  inputCount=581, enrichedCount=581"
    Runner.runs = []
    assert _last_job_metrics(Runner()) is None


def test_an_aborted_execution_says_it_was_stopped():
    assert stopped_reason(None, None, "ABORTED")[0] == "aborted"
    assert stopped_reason("States.TaskFailed", "boom", "FAILED") == ("States.TaskFailed", "boom")


def test_reconciliation_flags_a_mismatch():
    checks = reconciliation({"Filter": {"inputCount": 10, "passedCount": 6, "rejectedCount": 3}})
    assert checks == [("Filter input = passed + rejected: 10 = 6 + 3", False)]


def test_a_stage_over_parts_shows_parts_done_of_total_and_records_per_second():
    progress = RunProgress(clock_start=0.0, enabled=False, every=1.0)
    assert progress.line(StageProgress("ETL", "started", 1, 0.0), wall=0.0) == "   0.0s  > ETL"
    etl = progress.line(StageProgress("ETL", "succeeded", 1, 0.0, counts={"processedCount": 30_000}, part_count=3),
                        wall=2.0)
    assert etl == "   2.0s  ok ETL  processedCount=30000  (3 parts, 15,000 records/s)"
    lines = [progress.line(StageProgress("Filter.Part", "started", 1, 0.0, part=i), wall=2.0) for i in range(3)]
    assert lines == ["   2.0s  > Filter  (3 parts)", None, None]  # one line for the stage, not one per part
    done = [progress.line(StageProgress("Filter.Part", "succeeded", 1, 0.0, counts={"inputCount": 10_000}, part=i),
                          wall=w) for i, w in ((0, 4.0), (1, 4.5), (2, 6.0))]
    # At most one line a second, and always the last part's.
    assert done == ["   4.0s  .. Filter  part 1/3 done, 10,000 records, 5,000 records/s", None,
                    "   6.0s  .. Filter  part 3/3 done, 30,000 records, 7,500 records/s"]
    assert progress.line(StageProgress("Filter.Manifest", "started", 1, 0.0), wall=6.0) is None
    ok = progress.line(StageProgress("Filter.Manifest", "succeeded", 1, 0.0, counts={"inputCount": 30_000},
                                     part_count=2), wall=6.5)
    assert ok == "   6.5s  ok Filter  inputCount=30000  (2 parts, 6,667 records/s)"
    failed = progress.line(StageProgress("Score.Part", "failed", 1, 0.0, error="boom", part=1), wall=7.0)
    assert failed == "   7.0s  failed Score part 2: boom"


def test_a_realtime_stage_out_of_time_gets_a_hint_naming_its_budget_and_the_batch_workflow():
    from types import SimpleNamespace

    from ceap_engine.cli.run_report import timeout_hint

    def result(workflow, error, stage):
        return SimpleNamespace(workflow=workflow, failure={"Error": error, "Cause": "", "stage": stage})

    hint = timeout_hint(result("realtime", "States.Timeout", "Reactive"))
    assert "gives Reactive 10 s for each part call" in hint and "--workflow batch" in hint
    assert "gives ETL 25 s for each range call (15 s for each merge call)" in timeout_hint(
        result("realtime", "States.Timeout", "ETL"))
    assert timeout_hint(result("realtime", "TimeoutError", "Store")) is None  # the stage's own error
    assert timeout_hint(result("batch", "States.Timeout", "Store")) is None  # Standard keeps the full timeouts


def test_parts_of_an_unknown_total_still_show_how_many_are_done():
    # After a step that does not say how many parts it wrote (a Glue job's summary), the Map still reports.
    progress = RunProgress(clock_start=0.0, enabled=False)
    assert progress.line(StageProgress("Score.Part", "started", 1, 0.0, part=0), wall=1.0) == "   1.0s  > Score"
    line = progress.line(StageProgress("Score.Part", "succeeded", 1, 0.0, counts={"inputCount": 100}, part=0),
                         wall=3.0)
    assert line == "   3.0s  .. Score  part 1 done, 100 records, 50 records/s"
