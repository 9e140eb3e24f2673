"""A loopback TCP listener that counts the connections made to it: "nothing was sent" proofs.

Point a run's ``--directory`` at :attr:`CountingListener.url`: any request the run
makes (plain HTTP or TLS) is first a connection here, counted and then closed.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class CountingListener:
    """Accepts and counts connections on ``127.0.0.1``, answering none of them."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        """A directory URL that leads here."""
        return f"https://127.0.0.1:{self.port}/directory"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def __enter__(self) -> CountingListener:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
