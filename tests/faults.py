"""Network faults between the workers and a real server, for reliability tests."""

from __future__ import annotations

import asyncio
import http.client
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A trap's action: called with the client's (host, port) before its connection is cut.
TrapAction = Callable[[tuple[str, int]], None]


class TcpProxy:
    """Forwards <listen_host>:<port> to a target; ``stop`` cuts it as if it crashed.

    Stopping closes the listening socket and every open connection; ``start``
    listens again on the same port, so clients configured with the proxy's address
    see their server go away and come back.
    """

    def __init__(
        self, target_host: str, target_port: int, port: int, *, listen_host="127.0.0.1"
    ):
        self._target = (target_host, target_port)
        self.host, self.port = listen_host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._trap: tuple[re.Pattern[bytes], TrapAction] | None = None
        self.sprung = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._run(self._start())

    def stop(self) -> None:
        self._run(self._stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def trap(self, pattern: bytes, action: TrapAction) -> None:
        """Once: when a client sends bytes matching ``pattern``, hold them, call
        ``action`` with the client's address, then cut its connection.

        The matching bytes never reach the server: a request caught this way is cut
        in the middle, as when its sender dies.
        """
        self.sprung.clear()
        self._trap = (re.compile(pattern), action)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _start(self):
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def _stop(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        client = writer.get_extra_info("peername")[:2]
        await asyncio.gather(
            self._pipe(reader, up_writer, client), self._pipe(up_reader, writer)
        )

    async def _pipe(self, reader, writer, client=None):
        try:
            while data := await reader.read(65536):
                action = self._take_trap(data) if client is not None else None
                if action is not None:
                    await asyncio.to_thread(action, client)
                    self.sprung.set()
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    def _take_trap(self, data: bytes) -> TrapAction | None:
        """The trap's action if ``data`` springs it; a trap springs once."""
        if self._trap is None or not self._trap[0].search(data):
            return None
        _, action = self._trap
        self._trap = None
        return action


class S3Proxy:
    """An HTTP proxy in front of an S3 server, that records what passes.

    ``requests`` holds the method, path and headers of each request, as the server
    got them; the headers named in ``dropped`` (lower case) never reach it.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        dropped: frozenset[str] = frozenset(),
    ):
        target = (target_host, target_port)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self):
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    self.send_error(501, "chunked request bodies are not forwarded")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in dropped
                }
                requests.append((self.command, self.path, headers))
                upstream = http.client.HTTPConnection(*target, timeout=60)
                try:
                    upstream.putrequest(
                        self.command,
                        self.path,
                        skip_host=True,
                        skip_accept_encoding=True,
                    )
                    for name, value in headers.items():
                        upstream.putheader(name, value)
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    # A HEAD's Content-Length is the object's, not this empty body's.
                    if name.lower() not in ("transfer-encoding", "connection") and (
                        name.lower() != "content-length" or self.command == "HEAD"
                    ):
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class ConditionalWritesIgnored(S3Proxy):
    """An HTTP proxy in front of an S3 server that drops the conditions of requests.

    It strips ``If-None-Match`` and ``If-Match``: through it, the server behaves as a
    store that ignores conditional writes, as some S3-compatible servers do. (moto
    does not check request signatures, so the changed requests still pass.)
    """

    def __init__(self, target_host: str, target_port: int):
        super().__init__(
            target_host, target_port, dropped=frozenset({"if-none-match", "if-match"})
        )
