"""The one-write httptools protocol of ``ceap serve``: a response's head goes out with its body."""

from __future__ import annotations

from ceap_engine.cli._http import _HeadHeldTransport, one_write_protocol


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.writes.append(b"<paused>")

    def resume_reading(self) -> None:
        self.writes.append(b"<resumed>")


def test_head_and_body_leave_in_one_write() -> None:
    inner = Recorder()
    transport = _HeadHeldTransport(inner)
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert inner.writes == []
    transport.write(b"{}")
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert transport.get_extra_info("peername") == "info:peername"


def test_what_uvicorn_calls_on_every_request_reaches_the_transport() -> None:
    inner = Recorder()
    transport = _HeadHeldTransport(inner)
    transport.pause_reading()
    transport.resume_reading()
    assert inner.writes == [b"<paused>", b"<resumed>"] and not transport.is_closing()
    transport.close()
    assert transport.is_closing()


def test_100_continue_and_body_chunks_are_not_held() -> None:
    inner = Recorder()
    transport = _HeadHeldTransport(inner)
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    transport.write(b"5\r\nhello\r\n")
    assert inner.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", b"5\r\nhello\r\n"]


def test_a_held_head_is_sent_before_close() -> None:
    inner = Recorder()
    transport = _HeadHeldTransport(inner)
    transport.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    transport.close()
    assert inner.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"] and inner.closed


def test_the_protocol_is_uvicorns_httptools_one() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(one_write_protocol(), HttpToolsProtocol)
