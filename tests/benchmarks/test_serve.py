"""The serve rows: boto3's ceiling measured interleaved with a real ``ceap serve``, and the capacity clients."""

from __future__ import annotations

import http.client
import json

import pytest

pytest.importorskip("boto3")

from benchmarks.serve import (  # noqa: E402
    _client, _create, capacity, captured_reply, ceap_server, noop_server, sequential_sync_beside_ceiling,
)


def test_ceiling_and_server_are_measured_in_the_same_blocks_and_capacity_counts_successes() -> None:
    with ceap_server() as url:
        server, ceiling = sequential_sync_beside_ceiling(url, 30, block=7)
        load = capacity(url, processes=1, threads=2, seconds=0.5)
    assert server["executions"] == ceiling["executions"] == 30
    assert server["per_second"] > 0 and ceiling["per_second"] > 0
    assert ceiling["interleaved_with"] == "a_ceap_sync_express"
    assert ceiling["reply_bytes"] > 400  # a whole StartSyncExecution reply, headers and all
    assert load["executions"] > 0 and load["failed"] == 0 and load["connections"] == 2


def test_the_noop_server_answers_with_ceaps_own_reply_headers_and_body() -> None:
    with ceap_server() as url:
        arn = _create(_client(url), "bench-reply", "EXPRESS")
        reply = captured_reply(url, arn)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert json.loads(body)["billingDetails"]["billedDurationInMilliseconds"] == 100
    with noop_server(reply) as noop_url:
        host, port = noop_url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        for _ in range(2):  # keep-alive: every call gets the whole reply
            connection.request("POST", "/", b"{}", {"X-Amz-Target": "AWSStepFunctions.StartSyncExecution"})
            response = connection.getresponse()
            assert response.read() == body
            assert response.getheader("x-amzn-requestid") and response.getheader("content-length") == str(len(body))
        connection.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
