"""An HTTP/1.1 proxy of our own in front of the S3 port, to inject faults.

``FaultProxy`` listens on a free port of 127.0.0.1 and forwards each client
connection to the upstream S3 gateway over a connection of its own, request by
request (keep-alive, Content-Length and chunked bodies, ``Expect:
100-continue``). The bytes pass unchanged, so SigV4 signatures (which cover
the Host header the client sent) still verify, aws-chunked streaming bodies
included. On demand it answers or breaks a matching request instead:

- ``"503"``: an S3 ``SlowDown`` error with status 503 (the store is throttling)
- ``"500"``: an S3 ``InternalError`` with status 500
- ``"cut"``: half the request body goes upstream, then both connections are
  reset: a connection cut mid-upload
- ``"stall"``: the request is held ``seconds`` before it goes on

``down()`` closes the port and every open connection (clients get "connection
refused", as from an endpoint that is not there); ``up()`` opens it again.
Standard library only: the faults are ours, the store is real.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

Reader = io.BufferedReader  # a socket's buffered input (makefile("rb"))
KINDS = ("503", "500", "cut", "stall")
MAX_HEAD = 64 * 1024
COPY = 64 * 1024
ERRORS = {
    "503": (503, "Service Unavailable", "SlowDown", "Please reduce your request rate."),
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
}


class Sink(Protocol):
    """Where bytes go: a socket, or nowhere."""

    def sendall(self, data: bytes, /) -> None: ...


class Discard:
    """A sink for a body that is read and dropped."""

    def sendall(self, data: bytes, /) -> None:
        del data


class Cut(Exception):
    """The connection is to be reset now (a ``cut`` fault, or ``down()``)."""


@dataclass
class Fault:
    kind: str
    times: int
    method: str | None
    path_re: re.Pattern[str] | None
    seconds: float

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_re is None or self.path_re.search(path) is not None


@dataclass
class Request:
    """A request's head as read from the client, bytes kept for forwarding."""

    method: str
    path: str
    head: bytes
    headers: dict[str, str]

    @property
    def expects_continue(self) -> bool:
        return self.headers.get("expect", "").lower() == "100-continue"

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


def read_head(stream: Reader) -> tuple[bytes, list[str]] | None:
    """The head of a message (up to the blank line) and its lines; None at EOF."""
    lines: list[bytes] = []
    size = 0
    while True:
        line = stream.readline(MAX_HEAD)
        if not line:
            if lines:
                raise Cut("connection closed inside a message head")
            return None
        size += len(line)
        if size > MAX_HEAD:
            raise Cut("message head too large")
        if not lines and line in (b"\r\n", b"\n"):
            continue  # tolerated blank lines between messages
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            text = [raw.decode("latin-1").rstrip("\r\n") for raw in lines[:-1]]
            return b"".join(lines), text


def parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def read_request(stream: Reader) -> Request | None:
    got = read_head(stream)
    if got is None:
        return None
    head, lines = got
    method, path, _version = lines[0].split(" ", 2)
    return Request(method, path, head, parse_headers(lines[1:]))


def copy_exact(src: Reader, dst: Sink, length: int) -> None:
    while length > 0:
        data = src.read(min(COPY, length))
        if not data:
            raise Cut("connection closed inside a body")
        dst.sendall(data)
        length -= len(data)


def copy_chunked(src: Reader, dst: Sink) -> None:
    """A chunked body, chunk by chunk, through its last chunk and trailers."""
    while True:
        line = src.readline(MAX_HEAD)
        if not line:
            raise Cut("connection closed inside a chunked body")
        dst.sendall(line)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            break
        copy_exact(src, dst, size + 2)  # the chunk and its CRLF
    while True:  # trailers, up to the blank line
        line = src.readline(MAX_HEAD)
        if not line:
            raise Cut("connection closed inside the trailers")
        dst.sendall(line)
        if line in (b"\r\n", b"\n"):
            return


def copy_body(src: Reader, dst: Sink, headers: dict[str, str]) -> None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        copy_chunked(src, dst)
    else:
        copy_exact(src, dst, int(headers.get("content-length", "0")))


def error_response(kind: str, path: str) -> bytes:
    status, reason, code, message = ERRORS[kind]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{path}</Resource><RequestId>faultproxy</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN: the peer sees a cut, not an end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """A proxy in front of ``upstream`` (``http://host:port``) that can break things."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname, f"upstream needs a host: {upstream}"
        assert parts.port, f"upstream needs a port: {upstream}"
        self.upstream = (parts.hostname, parts.port)
        self.port = 0
        self.requests: list[tuple[str, str]] = []
        self.injected: Counter[str] = Counter()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control -------------------------------------------------------------

    def inject(
        self,
        kind: str,
        times: int = 1,
        method: str | None = None,
        path_re: str | None = None,
        seconds: float = 5.0,
    ) -> None:
        """The next ``times`` requests matching ``method`` and ``path_re``
        (re.search on the request target, e.g. ``/bucket/key?uploadId=..``)
        get fault ``kind`` instead of (or, for ``stall``, before) the store."""
        assert kind in KINDS, f"unknown fault {kind!r}: one of {KINDS}"
        pattern = None if path_re is None else re.compile(path_re)
        with self._lock:
            self._faults.append(Fault(kind, times, method, pattern, seconds))

    def clear(self) -> None:
        """Forget faults not yet injected."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> int:
        with self._lock:
            return sum(fault.times for fault in self._faults)

    def up(self) -> FaultProxy:
        """Listen (again, on the same port once it has one)."""
        assert self._listener is None, "the proxy is already up"
        self._stopping.clear()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept_loop, listener)
        return self

    def down(self) -> None:
        """Refuse connections and reset the open ones."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.up()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    # -- threads -------------------------------------------------------------

    def _spawn(self, target: Callable[[socket.socket], None], sock: socket.socket) -> None:
        thread = threading.Thread(target=target, args=(sock,), daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._spawn(self._serve, client)

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._open.add if add else self._open.discard)(sock)

    def _serve(self, client: socket.socket) -> None:
        """One client connection, over one upstream connection of its own."""
        upstream: socket.socket | None = None
        self._track(client, add=True)
        try:
            upstream = socket.create_connection(self.upstream, timeout=60)
            self._track(upstream, add=True)
            with client.makefile("rb") as cin, upstream.makefile("rb") as uin:
                while self._exchange(client, cin, upstream, uin):
                    pass
            client.close()
        except (Cut, OSError, ValueError):
            reset(client)
        finally:
            self._track(client, add=False)
            if upstream is not None:
                self._track(upstream, add=False)
                reset(upstream)

    def _next_fault(self, request: Request) -> Fault | None:
        with self._lock:
            self.requests.append((request.method, request.path))
            for fault in self._faults:
                if fault.matches(request.method, request.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    self.injected[fault.kind] += 1
                    return fault
        return None

    def _exchange(
        self, client: socket.socket, cin: Reader, upstream: socket.socket, uin: Reader
    ) -> bool:
        """One request and its response; whether the connection goes on."""
        request = read_request(cin)
        if request is None:
            return False
        fault = self._next_fault(request)
        if fault is not None and fault.kind in ERRORS:
            self._answer_error(client, cin, request, fault.kind)
            return False
        if fault is not None and fault.kind == "stall" and self._stopping.wait(fault.seconds):
            raise Cut("proxy going down")
        upstream.sendall(request.head)
        if request.expects_continue and not self._relay_continue(client, uin):
            return False  # the store answered before the body: it is not coming
        if fault is not None and fault.kind == "cut":
            self._cut(cin, upstream, request)
        copy_body(cin, upstream, request.headers)
        return self._relay_response(client, uin, request) and not request.closes

    def _answer_error(
        self, client: socket.socket, cin: Reader, request: Request, kind: str
    ) -> None:
        """An S3 error from the proxy; the body (unless the client waits for
        100 Continue) is read first, so the client sees the answer, not a reset."""
        if not request.expects_continue:
            copy_body(cin, Discard(), request.headers)
        client.sendall(error_response(kind, request.path))

    def _cut(self, cin: Reader, upstream: socket.socket, request: Request) -> None:
        length = int(request.headers.get("content-length", "0") or "0")
        part = length // 2 if length > 1 else 0
        if part:
            copy_exact(cin, upstream, part)
        elif "chunked" in request.headers.get("transfer-encoding", "").lower():
            upstream.sendall(cin.readline(MAX_HEAD))  # the first chunk's size line only
        raise Cut("fault: connection cut mid-upload")

    def _relay_continue(self, client: socket.socket, uin: Reader) -> bool:
        """Pass the store's answer to ``Expect: 100-continue``; True when it was 100."""
        got = read_head(uin)
        if got is None:
            raise Cut("upstream closed before answering")
        head, lines = got
        if lines[0].split(" ", 2)[1] == "100":
            client.sendall(head)
            return True
        client.sendall(head)
        self._relay_body(client, uin, lines, "PUT")
        return False

    def _relay_response(self, client: socket.socket, uin: Reader, request: Request) -> bool:
        """Relay the final response (after any interim 1xx); whether to keep going."""
        while True:
            got = read_head(uin)
            if got is None:
                raise Cut("upstream closed before answering")
            head, lines = got
            client.sendall(head)
            if not lines[0].split(" ", 2)[1].startswith("1"):
                return self._relay_body(client, uin, lines, request.method)

    @staticmethod
    def _relay_body(client: socket.socket, uin: Reader, lines: list[str], method: str) -> bool:
        status = lines[0].split(" ", 2)[1]
        headers = parse_headers(lines[1:])
        if method == "HEAD" or status in ("204", "304"):
            pass
        elif "content-length" in headers or "chunked" in headers.get("transfer-encoding", ""):
            copy_body(uin, client, headers)
        else:  # delimited by the end of the connection
            while data := uin.read1(COPY):
                client.sendall(data)
            return False
        return "close" not in headers.get("connection", "").lower()
