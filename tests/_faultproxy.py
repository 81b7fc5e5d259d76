"""A small HTTP proxy on 127.0.0.1 that injects object-store faults.

It sits between the S3 clients and a real server (moto's, on loopback) and forwards every
HTTP/1.1 request unchanged. While faults are enabled, a seeded share of requests gets one
of:

``503``          an S3 ``ServiceUnavailable`` error response (request not forwarded);
``500``          an S3 ``InternalError`` response (request not forwarded);
``reset``        the connection is reset before the request is forwarded;
``reset_after``  the request is forwarded, then the connection is reset instead of
                 answering (the server applied it; the client must retry an idempotent
                 request whose answer it lost);
``delay``        the answer comes ``delay_s`` seconds late (a slow store, not an error).

It is bounded: at most ``max_faults`` faults, and the server stops by itself after
``lifetime_s`` seconds. ``stats()`` counts requests, faults by kind and retries (a
request seen again after its earlier copy got an error fault).
"""

from __future__ import annotations

import http.client
import random
import socket
import socketserver
import struct
import threading
import time
import urllib.parse
from collections import Counter

FAULT_KINDS = ("503", "500", "reset", "reset_after", "delay")

_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>"
)
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "expect", "te", "upgrade"}


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultProxy:
    """Forward HTTP requests to ``upstream`` (``http://127.0.0.1:PORT``), injecting faults.

    >>> proxy = FaultProxy("http://127.0.0.1:5000").start()    # doctest: +SKIP
    >>> proxy.enable(rate=0.1, seed=7, max_faults=50)          # doctest: +SKIP
    """

    def __init__(self, upstream: str, *, lifetime_s: float = 900.0, delay_s: float = 0.3):
        u = urllib.parse.urlsplit(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.lifetime_s = lifetime_s
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._rng = random.Random(0)
        self._rate = 0.0
        self._kinds: tuple[str, ...] = FAULT_KINDS
        self._faults_left = 0
        self._pending: Counter = Counter()  # (method, target) of requests that got an error fault
        self.requests = 0
        self.faults: Counter = Counter()
        self.retries = 0
        self._server: _Server | None = None
        self._timer: threading.Timer | None = None

    # -- control ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True).start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def enable(self, *, rate: float, seed: int, max_faults: int = 100, kinds: tuple[str, ...] = FAULT_KINDS) -> None:
        """Inject faults into a ``rate`` share of requests (seeded), ``max_faults`` at most."""
        with self._lock:
            self._rng = random.Random(seed)
            self._rate, self._kinds, self._faults_left = float(rate), tuple(kinds), int(max_faults)

    def disable(self) -> None:
        with self._lock:
            self._rate, self._faults_left = 0.0, 0

    def reset_stats(self) -> None:
        with self._lock:
            self.requests, self.retries = 0, 0
            self.faults.clear()
            self._pending.clear()

    def stats(self) -> dict:
        with self._lock:
            return {"requests": self.requests, "faults": dict(self.faults),
                    "faults_total": sum(self.faults.values()), "retries": self.retries}

    # -- serving ---------------------------------------------------------------------
    def _decide(self, method: str, target: str) -> str | None:
        with self._lock:
            self.requests += 1
            sig = (method, target)
            if self._pending[sig]:
                self._pending[sig] -= 1
                self.retries += 1
            if self._faults_left <= 0 or self._rng.random() >= self._rate:
                return None
            kind = self._rng.choice(self._kinds)
            self._faults_left -= 1
            self.faults[kind] += 1
            if kind != "delay":
                self._pending[sig] += 1
            return kind

    def _serve(self, sock: socket.socket) -> None:
        rfile = sock.makefile("rb")
        upstream: http.client.HTTPConnection | None = None
        try:
            while True:
                line = rfile.readline(65537)
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    continue
                method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
                headers: list[tuple[str, str]] = []
                while True:
                    h = rfile.readline(65537)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers.append((name.strip(), value.strip()))
                low = {k.lower(): v for k, v in headers}
                if "100-continue" in low.get("expect", "").lower():
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = _read_body(rfile, low)
                kind = self._decide(method, target)
                if kind == "reset":
                    _reset(sock)
                    return
                if kind in ("503", "500"):
                    code = "ServiceUnavailable" if kind == "503" else "InternalError"
                    reason = "Service Unavailable" if kind == "503" else "Internal Server Error"
                    payload = _ERROR_BODY.format(code=code).encode()
                    sock.sendall(f"HTTP/1.1 {kind} {reason}\r\nContent-Type: application/xml\r\n"
                                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
                    continue
                if kind == "delay":
                    time.sleep(self.delay_s)
                status, reason, rheaders, rbody, upstream = self._forward(upstream, method, target, headers, body)
                if kind == "reset_after":
                    _reset(sock)
                    return
                out = [f"HTTP/1.1 {status} {reason}\r\n"]
                has_len = False
                for k, v in rheaders:
                    if k.lower() in _HOP:
                        continue
                    if k.lower() == "content-length":
                        if method == "HEAD" or status in (204, 304):
                            has_len = True
                            out.append(f"{k}: {v}\r\n")
                        continue
                    out.append(f"{k}: {v}\r\n")
                if not has_len and not (method == "HEAD" or status in (204, 304)):
                    out.append(f"Content-Length: {len(rbody)}\r\n")
                out.append("\r\n")
                sock.sendall("".join(out).encode("latin-1") + rbody)
                if low.get("connection", "").lower() == "close":
                    return
        except (OSError, ValueError, http.client.HTTPException):
            return
        finally:
            if upstream is not None:
                upstream.close()
            try:
                rfile.close()
            except OSError:
                pass

    def _forward(self, conn, method, target, headers, body):
        for attempt in range(2):  # a kept-alive upstream connection may have been closed
            if conn is None:
                conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    if k.lower() in _HOP or k.lower() == "content-length":
                        continue
                    conn.putheader(k, v)
                if body or method in ("PUT", "POST"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.reason, resp.getheaders(), data, conn
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _read_body(rfile, low: dict[str, str]) -> bytes:
    if "chunked" in low.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(parts)
            parts.append(rfile.read(size))
            rfile.readline()
    n = int(low.get("content-length", "0") or 0)
    return rfile.read(n) if n else b""


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
