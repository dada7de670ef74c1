"""A TCP proxy the test owns, between ecopy and a database server, to make outages without
touching the machine's own server: cut every connection, refuse new ones for a while, or
blackhole them (a network partition: connections stay open, nothing gets through).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from typing import Literal

Mode = Literal["forward", "refuse", "blackhole"]


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; use as a context manager."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode: Mode = "forward"
        self.connections_made = 0
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._peers: dict[socket.socket, socket.socket] = {}
        self._running = False
        self._thread: threading.Thread | None = None
        self._wake_read, self._wake_write = socket.socketpair()

    def __enter__(self) -> TcpProxy:
        self._listen()
        self._running = True
        self._selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._close_listener()
            for sock in list(self._peers):
                self._close_pair(sock)
        self._wake_read.close()
        self._wake_write.close()

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        import sqlalchemy as sa

        parsed = sa.make_url(url)
        return parsed.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    # -- faults ------------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection (as a server restart or a failover does)."""
        with self._lock:
            for sock in list(self._peers):
                self._close_pair(sock, reset=True)

    def refuse(self) -> None:
        """Cut every connection and refuse new ones until ``restore()``: the server is down."""
        with self._lock:
            self.mode = "refuse"
            self._close_listener()
        self.cut()

    def blackhole(self) -> None:
        """Keep connections open but let nothing through, either way: a network partition."""
        with self._lock:
            self.mode = "blackhole"

    def restore(self) -> None:
        with self._lock:
            if self.mode == "refuse":
                self._listen()
            self.mode = "forward"
        self._wake()

    # -- machinery ---------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._wake()

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def _serve(self) -> None:
        while self._running:
            for key, _ in self._selector.select(timeout=0.5):
                with self._lock:
                    if key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_read.recv(1024)
                    elif key.data == "accept":
                        self._accept(key.fileobj)  # type: ignore[arg-type]
                    else:
                        self._forward(key.fileobj)  # type: ignore[arg-type]

    def _accept(self, listener: socket.socket) -> None:
        if listener is not self._listener:
            return
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self.connections_made += 1
        for sock in (client, server):
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._peers[client] = server
        self._peers[server] = client
        self._selector.register(client, selectors.EVENT_READ, "data")
        self._selector.register(server, selectors.EVENT_READ, "data")

    def _forward(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close_pair(sock)
            return
        if self.mode == "blackhole":
            return  # dropped, as a partition drops packets
        try:
            peer.sendall(data)
        except OSError:
            self._close_pair(sock)

    def _close_pair(self, sock: socket.socket, *, reset: bool = False) -> None:
        peer = self._peers.pop(sock, None)
        for each in (sock, peer):
            if each is None:
                continue
            self._peers.pop(each, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            if reset:
                # SO_LINGER 0: close with a reset, as a dropped connection looks to its peer.
                with contextlib.suppress(OSError):
                    each.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            each.close()
