"""The queue rows of the benchmarks: the serve row drives a real ``ceap serve`` through its SQS API."""

from benchmarks.queue import plan, run_scenario


def test_the_serve_row_sends_through_the_sqs_api_and_waits_for_every_message_to_be_deleted():
    [scenario] = [s for s in plan("smoke") if s.name == "queue-pipe-serve"]

    [row] = run_scenario(scenario, mode="smoke")

    assert (row["name"], row["executions"], row["concurrency"]) == ("queue-pipe-serve", 20, scenario.concurrency)
    assert row["details"]["messages_per_s"] == row["executions_per_s"]
    assert row["p50_ms"] <= row["p99_ms"]
