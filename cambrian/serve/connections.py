"""Connections: what an idle or slow socket may hold. uvicorn's own ``limit_concurrency`` counts open connections, so
140 sockets that never send a byte made every authorised client get 503 for as long as they stayed open. Here:

- a connection must deliver a request's complete headers within ``header_timeout_s`` of connecting (or of its
  previous response) or it is closed, however slowly it trickles bytes (slowloris);
- at most ``max_connections`` connections are open at once (far above the request limit: an idle connection costs a
  file descriptor and a few KB); one over it is answered 503 in the OpenAI error shape and closed before anything of
  it is read;
- the request limit itself (``max_concurrency``, :mod:`.admission`) answers 429 in the OpenAI shape, after the API key
  and before the body is read; the body must arrive within ``body_timeout_s`` (``app.read_body``).

uvicorn's keep-alive timeout (5 s) still closes a connection idle between requests.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import APIError


def _canned(status: int, reason: str, error: APIError) -> bytes:
    body = json.dumps(error.body()).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def protocol_class(max_connections: int, header_timeout_s: float) -> type:
    """uvicorn's h11 protocol with the header timeout and the connection cap (pass as ``uvicorn.Config(http=...)``)."""
    too_many = _canned(
        503,
        "Service Unavailable",
        APIError(
            503,
            f"Server busy: {max_connections} connections are open; retry later.",
            type="server_error",
            code="too_many_connections",
        ),
    )

    class GuardedH11Protocol(H11Protocol):
        _header_timer = None
        _request_cycle = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(too_many)
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is None or self.cycle.response_complete:  # no request in progress: nothing to answer
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and self.cycle is not self._request_cycle:  # a request's headers arrived
                self._request_cycle = self.cycle
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers are due in time too

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol
