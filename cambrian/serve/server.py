"""Running the app: a listening socket bound before the model loads, uvicorn with bounded connections and a graceful
shutdown, and :class:`ServerThread` (the server in a background thread, for tests and benchmarks)."""

from __future__ import annotations

import socket
import threading
import time

from fastapi import FastAPI

from ..errors import UserError
from .app import create_app
from .connections import protocol_class
from .settings import ServeSettings


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for uvicorn (bound here, not by uvicorn, so a busy port is an exception rather than
    uvicorn's ``sys.exit`` and ``port=0`` yields the real port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on connections accepted from such a socket, and without it
    # every response on a kept-alive connection stalls ~40 ms (Nagle against the client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def make_server(
    app: FastAPI,
    host: str,
    port: int,
    settings: ServeSettings,
    log_level: str = "warning",
    sock: socket.socket | None = None,
):
    """(uvicorn.Server, bound socket); ``sock``: one bound already (``bind_socket``)."""
    import uvicorn

    # idle and slow connections are closed, and their number capped, by the protocol (.connections); requests over
    # the limit get a 429 from the app (.admission), so an idle socket never takes an authorised client's place
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        http=protocol_class(settings.max_connections, settings.header_timeout_s),
    )
    return uvicorn.Server(config), (sock if sock is not None else bind_socket(host, port))


def socket_url(sock: socket.socket) -> str:
    h, p = sock.getsockname()[:2]
    return f"http://{f'[{h}]' if ':' in h else h}:{p}"


def run_server(
    model,
    settings: ServeSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
    sock: socket.socket | None = None,
    on_ready=None,
) -> None:
    """Serve until Ctrl-C / SIGTERM (in-flight requests finish first). ``sock``: a socket from ``bind_socket`` (bind
    before loading the model to fail fast on a busy port); ``on_ready(url)`` is called once the app has started."""
    server, sock = make_server(create_app(model, settings), host, port, settings, log_level, sock)
    if on_ready is not None:

        def announce():
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                on_ready(socket_url(sock))

        threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])


class ServerThread:
    """The server in a background thread (tests, benchmarks): ``with ServerThread(model, settings) as srv:`` then
    ``srv.base_url`` (".../v1"). Leaving the block shuts down gracefully."""

    def __init__(
        self, model, settings: ServeSettings, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ):
        self.app = create_app(model, settings)
        self.server, self._sock = make_server(self.app, host, port, settings, log_level)
        self.url = socket_url(self._sock)
        self.base_url = self.url + "/v1"
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() - t0 > timeout:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
