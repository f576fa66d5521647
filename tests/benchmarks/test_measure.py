import asyncio

import pytest

from benchmarks.measure import REQUIRED_KEYS, Run, drive, percentile, result_row


async def test_drive_runs_every_execution_once_and_never_more_than_the_limit_at_a_time():
    started: list[int] = []
    in_flight = 0
    most = 0

    async def one(index: int) -> None:
        nonlocal in_flight, most
        started.append(index)
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1

    run = await drive(25, 4, one)

    assert sorted(started) == list(range(25))
    assert most == 4
    assert (run.executions, run.concurrency, len(run.latencies_s)) == (25, 4, 25)
    assert all(latency > 0 for latency in run.latencies_s)
    assert run.wall_s > 0 and run.cpu_s is not None


async def test_drive_with_more_workers_than_executions_starts_each_once():
    seen: list[int] = []

    async def one(index: int) -> None:
        seen.append(index)

    await drive(3, 1000, one)
    assert sorted(seen) == [0, 1, 2]


@pytest.mark.parametrize(("executions", "concurrency"), [(0, 1), (1, 0)])
async def test_drive_refuses_nothing_to_do(executions, concurrency):
    with pytest.raises(ValueError, match="at least 1"):
        await drive(executions, concurrency, lambda i: asyncio.sleep(0))


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([5.0], 0.99, 5.0),
        ([4.0, 1.0, 3.0, 2.0], 0.5, 2.0),
        ([4.0, 1.0, 3.0, 2.0], 0.99, 4.0),
        (list(map(float, range(1, 101))), 0.5, 50.0),
        (list(map(float, range(1, 101))), 0.99, 99.0),
        (list(map(float, range(1, 1001))), 0.99, 990.0),
    ],
)
def test_percentile_is_nearest_rank(values, fraction, expected):
    assert percentile(values, fraction) == expected


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_result_row_has_the_issues_keys_and_rates_over_wall_time():
    from array import array

    run = Run(executions=200, concurrency=10, wall_s=0.5, latencies_s=array("d", [0.001] * 199 + [0.004]), cpu_s=0.4)
    row = result_row("x", run, transitions=1200, details={"note": "n"})

    assert list(row)[: len(REQUIRED_KEYS)] == list(REQUIRED_KEYS)
    assert row["executions_per_s"] == 400.0
    assert row["transitions_per_s"] == 2400.0
    assert row["p50_ms"] == 1.0 and row["p99_ms"] == 1.0
    assert row["peak_rss_mib"] > 0
    assert row["details"] == {
        "wall_s": 0.5, "cpu_s": 0.4, "executions_per_cpu_s": 500.0, "per_execution_us": 2500.0,
        "transitions": 1200, "note": "n",
    }


# A parent that starts a child holding 64 MiB; both print a line when ready and wait for stdin.
_TREE = r"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c",
    "import sys; block = bytearray(64 * 1024 * 1024); print('child ready', flush=True); sys.stdin.read()"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "child ready"
print("tree ready", flush=True)
sys.stdin.read()
child.stdin.close()
child.wait()
"""


def test_the_tree_sampler_adds_up_the_rss_of_a_process_and_its_descendants():
    import subprocess
    import sys

    from benchmarks.measure import ProcessTreeRss

    parent = subprocess.Popen([sys.executable, "-c", _TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "tree ready"
        tree = ProcessTreeRss(parent.pid)
        reading = tree.sample()
    finally:
        parent.stdin.close()
        parent.wait(timeout=60)

    assert tree.most_processes == 2  # the parent and its child
    assert reading >= 64 and tree.peak_mib == reading  # the child's block counts


def test_run_sampled_waits_for_the_command_and_reports_its_own_peak_too(tmp_path):
    import sys

    from benchmarks.measure import run_sampled

    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        done = run_sampled([sys.executable, "-c", "block = bytearray(48 * 1024 * 1024); print('done')"],
                           stdout=out, stderr=err, interval_s=0.01)
    assert (tmp_path / "out").read_text() == "done\n"
    assert done.returncode == 0 and done.wall_s > 0
    assert done.process_peak_rss_mib >= 48  # ru_maxrss of the command, from wait4
    assert done.samples >= 1 and done.peak_rss_mib > 0
