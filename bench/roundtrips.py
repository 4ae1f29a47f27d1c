"""A TCP proxy between a client and PostgreSQL that counts round trips.

A round trip is a burst of bytes from the client that follows bytes from the server
(or opens the conversation): the client sent something and had to wait for the
answer before it could go on. Pipelined or multi-statement messages sent in one
write count once, as they cost one wait. Used by bench/profile_drain.py.
"""

from __future__ import annotations

import selectors
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit


@dataclass
class Counts:
    """Round trips and bytes of one proxied connection."""

    round_trips: int = 0
    sent: int = 0
    received: int = 0
    _last: str = field(default="server", repr=False)


class RoundTripProxy(threading.Thread):
    """Listens on 127.0.0.1; forwards each connection to the server of ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__(name="roundtrip-proxy", daemon=True)
        parts = urlsplit(url)
        host = unquote(parts.hostname or "localhost")
        self._upstream: tuple[int, object]
        if host.startswith("/"):
            self._upstream = (socket.AF_UNIX, f"{host}/.s.PGSQL.{parts.port or 5432}")
        else:
            self._upstream = (socket.AF_INET, (host, parts.port or 5432))
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        user = parts.username or "postgres"
        auth = f"{user}:{parts.password}@" if parts.password else f"{user}@"
        self.url = urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}"))
        self.connections: list[Counts] = []
        self._stop = threading.Event()

    def run(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return  # stop() closed the socket under accept()
                raise
            counts = Counts()
            self.connections.append(counts)
            threading.Thread(target=self._pump, args=(client, counts), daemon=True).start()

    def _pump(self, client: socket.socket, counts: Counts) -> None:
        family, address = self._upstream
        upstream = socket.socket(family, socket.SOCK_STREAM)
        upstream.connect(address)  # type: ignore[arg-type]
        with selectors.DefaultSelector() as selector, client, upstream:
            selector.register(client, selectors.EVENT_READ, "client")
            selector.register(upstream, selectors.EVENT_READ, "server")
            while True:
                for key, _ in selector.select():
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if key.data == "client":
                        if counts._last == "server":
                            counts.round_trips += 1
                        counts._last = "client"
                        counts.sent += len(data)
                        upstream.sendall(data)
                    else:
                        counts._last = "server"
                        counts.received += len(data)
                        client.sendall(data)

    def total(self) -> int:
        return sum(c.round_trips for c in self.connections)

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
