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
