"""The HTTP server of `torchwork serve`: waitress, with limits so slow or many clients cannot
lock others out, and SIGTERM stopping it cleanly."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torchwork.errors import ConfigError
from torchwork.serve.app import (
    MAX_HEADER_BYTES,
    MAX_IMAGE_PIXELS,
    PredictionApp,
    body_limit,
    body_too_large,
    json_body,
    make_app,
)

THREADS = 4  # waitress worker threads answering requests
CONNECTIONS = 1000  # open connections at most; fewer where the open-file limit is lower
REQUEST_SECONDS = 10  # time to send a request whole from its first byte, or to start one
INBUF_BYTES = 64 << 10  # a request body past this waits in a temporary file, not in memory
FILES_KEPT = 64  # open files left for the model, the libraries and the listening sockets


def _connection_limit() -> int:
    """CONNECTIONS, or as many as the open-file limit (ulimit -n) allows: each connection may
    hold its socket and a temporary file (a body past INBUF_BYTES). The soft limit is raised
    towards the hard one first, as Go's runtime does for every program."""
    try:
        import resource
    except ImportError:  # Windows: no such limit, but select() there watches 512 sockets
        return min(CONNECTIONS, 500)
    need = 2 * CONNECTIONS + FILES_KEPT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY:
        return CONNECTIONS
    return max(1, min(CONNECTIONS, (soft - FILES_KEPT) // 2))


@functools.cache
def _channel_class(request_seconds: int, images: bool = False) -> type:
    """waitress' connection, with a deadline on each request and its own refusals in JSON.

    waitress closes a connection only after channel_timeout seconds without a byte, so a
    client sending one header line a second holds it forever; this one closes a connection
    whose request has not arrived whole `request_seconds` after its first byte."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser
    from waitress.task import ErrorTask

    class TimedParser(HTTPRequestParser):
        def __init__(self, adj: Any) -> None:
            super().__init__(adj)
            self.started = time.monotonic()

    class JSONErrorTask(ErrorTask):
        """The requests waitress refuses before the app sees them (a body or headers too
        large, a malformed request), answered as the app answers."""

        def execute(self) -> None:
            error = self.request.error
            if error.code == 413:
                message = body_too_large(self.request.content_length, images)
            elif error.code == 431:
                message = (
                    f"the request's headers have more than the {MAX_HEADER_BYTES} bytes "
                    "allowed: send fewer or shorter headers"
                )
            else:
                what = "the request is not valid HTTP" if error.code == 400 else error.reason
                detail = " ".join(str(error.body).split())[:200].rstrip(".")
                message = f"{what}: {detail}"
            payload = json_body({"error": message})
            self.status = f"{error.code} {error.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(payload)
            self.write(payload)

    class Channel(HTTPChannel):
        parser_class = TimedParser
        error_task_class = JSONErrorTask

        def readable(self) -> bool:
            # The event loop asks every connection at least once a second (its timeout).
            # A request is only closed while none is being answered on this connection.
            request = self.request
            if (
                request is not None
                and not self.requests
                and time.monotonic() - request.started > request_seconds
            ):
                self.will_close = True  # writable() now says so; handle_write closes
            return super().readable()

    return Channel


class Server:
    """The app on waitress, bound to its address: `run()` serves until `stop()`.

    Slow clients hold no worker thread (waitress reads requests in its event loop and hands
    on only whole ones), but each holds a connection: `connection_limit` of them at most, and
    none longer than `request_seconds` silent or `request_seconds` sending one request."""

    def __init__(
        self,
        app: PredictionApp,
        host: str = "127.0.0.1",
        port: int = 8000,
        threads: int = THREADS,
        request_seconds: int = REQUEST_SECONDS,
    ) -> None:
        try:
            from waitress import wasyncore
            from waitress.server import BaseWSGIServer, create_server
            from waitress.trigger import trigger
        except ImportError:
            raise ConfigError(
                "torchwork serve needs the waitress server: pip install 'torchwork[serve]'"
            ) from None
        if not host:
            raise ConfigError("--host is empty: give an address such as 127.0.0.1")
        if not 0 <= port <= 65535:
            raise ConfigError(
                f"--port {port} is not a port number: use 1 to 65535, or 0 for any free port"
            )
        self.app = app
        self.request_seconds = request_seconds
        self.connection_limit = _connection_limit()
        self._map: dict[int, Any] = {}
        self._close_all = lambda: wasyncore.close_all(self._map)
        try:
            self._server = create_server(
                app,
                map=self._map,
                host=host,
                port=port,
                threads=threads,
                # waitress refuses larger bodies before reading them (>= this size).
                max_request_body_size=body_limit(app.images) + 1,
                max_request_header_size=MAX_HEADER_BYTES + 1,
                inbuf_overflow=INBUF_BYTES,
                # waitress counts its own few sockets among these.
                connection_limit=self.connection_limit,
                channel_timeout=request_seconds,  # closes a connection silent for this long
                cleanup_interval=1,  # looks for such connections every second
                asyncore_use_poll=True,  # select() stops at file number 1023
                ident="torchwork",
            )
        except (OSError, ValueError, OverflowError) as e:
            reason = (getattr(e, "strerror", None) or str(e)).rstrip(".")
            raise ConfigError(
                f"cannot listen on {host} port {port}: {reason}; choose another --port or --host"
            ) from None
        channel = _channel_class(request_seconds, app.images)
        for dispatcher in list(self._map.values()):  # one per address `host` stands for
            if isinstance(dispatcher, BaseWSGIServer):
                dispatcher.channel_class = channel
        self._wake = trigger(self._map)  # runs stop() inside the server's own thread
        listening = getattr(self._server, "effective_listen", None) or [
            (self._server.effective_host, self._server.effective_port)
        ]
        self.host, self.port = listening[0][0], int(listening[0][1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        """Answer requests until `stop()`, Ctrl-C or (in `serve`) SIGTERM."""
        try:
            self._server.run()  # waitress returns after Ctrl-C, having stopped its threads
        finally:
            self._close_all()
            self._server.task_dispatcher.shutdown()

    def stop(self) -> None:
        """Close the server's sockets; safe to call from any thread."""
        self._wake.pull_trigger(self._close_all)


def make_server(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = THREADS,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Server:
    """The model loaded and the server bound to host:port (0: a free port), not yet running;
    pictures sent to it of at most `max_pixels` pixels."""
    return Server(make_app(model_path, max_pixels), host, port, threads)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    log: Callable[[str], None] = print,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> None:
    """Answer prediction requests with the model in `model_path` until Ctrl-C or SIGTERM.

    The model file is read and checked before the server starts; port 0 picks a free port.
    A picture sent of more than `max_pixels` pixels is refused (each of the server's threads
    holds a picture's pixels while it decodes it).

    >>> serve("runs/example/model.safetensors", port=8000)  # doctest: +SKIP
    """
    server = make_server(model_path, host, port, max_pixels=max_pixels)
    app = server.app
    if not is_loopback(host):
        limit, seconds = server.connection_limit, server.request_seconds
        log(
            f"warning: listening on {host} lets other machines reach this model; the endpoint has "
            f"no authentication or TLS, and holds at most {limit} connections, closing one silent "
            f"for {seconds} s or still sending a request {seconds} s after its first byte, so a "
            f"client opening over {max(1, limit // (2 * seconds))} connections a second still "
            "locks others out: keep it on a trusted network or behind a proxy that adds "
            "authentication, TLS and per-client limits"
        )
    log(
        f"Serving {app.predictor.path} ({app.health['task']}; {app.takes}) "
        f"at {server.url}: POST /predict, GET /health; Ctrl-C to stop"
    )
    with _sigterm_stops():
        server.run()
    log("Stopped")


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM (a service manager's stop) ends serving as cleanly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
