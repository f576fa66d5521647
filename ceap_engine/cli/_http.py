"""uvicorn's httptools protocol, answering each response in one write.

uvicorn writes a response's status line and headers, then its body, as two writes: two
TCP segments, and a client that wakes twice to read one answer (with TCP_NODELAY, which the
server needs, nothing merges them). On loopback that was ~100 us of every call. Here the
head is held until the body's first write and both go out together. A head that no body
follows at once - ``100 Continue`` - goes out as it is.

Example::

    uvicorn.Config(app, http=one_write_protocol())
"""

from __future__ import annotations

from typing import Any

__all__ = ["one_write_protocol"]


class _HeadHeldTransport:
    """A transport that holds a response head until the next write (everything else passes through)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._head: bytes | None = None
        # What uvicorn calls on every request, bound once (not looked up through __getattr__ each time).
        self.is_closing = transport.is_closing
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 ") and data.endswith(b"\r\n\r\n"):
            self._head = bytes(data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def one_write_protocol() -> Any:
    """The protocol class for ``uvicorn.Config(http=...)``: httptools with one write a response, else ``"h11"``."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is not installed: uvicorn's pure-Python parser
        return "h11"

    class OneWriteHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(_HeadHeldTransport(transport))

    return OneWriteHttpToolsProtocol
