"""The serve rows: boto3's ceiling measured interleaved with a real ``ceap serve``, and the capacity clients."""

from __future__ import annotations

import pytest

pytest.importorskip("boto3")

from benchmarks.serve import capacity, ceap_server, noop_server, sequential_sync_beside_ceiling  # noqa: E402


def test_ceiling_and_server_are_measured_in_the_same_blocks_and_capacity_counts_successes() -> None:
    with noop_server() as noop_url, ceap_server() as url:
        server, ceiling = sequential_sync_beside_ceiling(url, noop_url, 30, block=7)
        load = capacity(url, processes=1, threads=2, seconds=0.5)
    assert server["executions"] == ceiling["executions"] == 30
    assert server["per_second"] > 0 and ceiling["per_second"] > 0
    assert ceiling["interleaved_with"] == "a_ceap_sync_express"
    assert load["executions"] > 0 and load["failed"] == 0 and load["connections"] == 2
