"""HTTP/1.1 to bangerd over its Unix socket, one connection per request
(as the Rust client does): JSON in and out, NDJSON progress streams, and
the upgrade to a raw stream to a guest agent. Every read is bounded."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Callable, Iterator, Optional
from urllib.parse import quote

from .errors import BangerError, ProtocolError, Unavailable, from_api

MAX_HEADER = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
TIMEOUT = 600.0


def seg(s: str) -> str:
    """Percent-encodes one path segment, so no name reaches another endpoint."""
    return quote(s, safe="-._~")


class _Reader:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(256 * 1024)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def line(self, limit: int = MAX_HEADER) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit or not self._fill():
                raise ProtocolError("bangerd closed the connection or sent an overlong line")
        i = self.buf.index(b"\r\n")
        out, self.buf = self.buf[:i], self.buf[i + 2:]
        return out

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ProtocolError("bangerd closed the connection mid-answer")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def some(self) -> bytes:
        if not self.buf and not self._fill():
            return b""
        out, self.buf = self.buf, b""
        return out


class Response:
    def __init__(self, status: int, headers: dict, reader: _Reader, sock: socket.socket):
        self.status = status
        self.headers = headers
        self._r = reader
        self.sock = sock

    def chunks(self) -> Iterator[bytes]:
        """The body, as it arrives (chunked or by length)."""
        te = self.headers.get("transfer-encoding", "")
        if "chunked" in te:
            while True:
                size = int(self._r.line().split(b";")[0], 16)
                if size == 0:
                    self._r.line()
                    return
                yield self._r.exact(size)
                self._r.line()
        n = self.headers.get("content-length")
        if n is not None:
            n = int(n)
            if n > MAX_BODY:
                raise ProtocolError(f"an answer of {n} bytes is too large")
            if n:
                yield self._r.exact(n)
            return
        while True:
            c = self._r.some()
            if not c:
                return
            yield c

    def body(self) -> bytes:
        out = b""
        for c in self.chunks():
            out += c
            if len(out) > MAX_BODY:
                raise ProtocolError("an answer larger than 64 MiB")
        return out

    def close(self) -> None:
        self.sock.close()


class Transport:
    def __init__(self, socket_path: str, timeout: float = TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.socket_path)
        except OSError as e:
            s.close()
            raise Unavailable("unavailable", f"Cannot reach bangerd at {self.socket_path}: {e}",
                              "start it with `banger daemon start`") from e
        return s

    def send(self, method: str, path: str, body: Optional[bytes] = None,
             accept: str = "application/json", headers: Optional[dict] = None) -> Response:
        s = self._connect()
        h = {"Host": "bangerd", "Accept": accept, "Content-Length": str(len(body or b""))}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        s.sendall(head.encode() + (body or b""))
        r = _Reader(s)
        status_line = r.line().decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            s.close()
            raise ProtocolError(f"not an HTTP answer: {status_line!r}")
        headers_out = {}
        while True:
            line = r.line()
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers_out[k.strip().lower()] = v.strip()
            if len(headers_out) > 100:
                raise ProtocolError("too many headers")
        return Response(int(parts[1]), headers_out, r, s)

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        resp = self.send(method, path, body)
        try:
            data = resp.body()
        finally:
            resp.close()
        return _decode(resp.status, data)

    def stream(self, path: str, payload: Any, on_event: Optional[Callable[[dict], None]] = None) -> Any:
        """A long operation: progress events go to on_event; returns the result."""
        resp = self.send("POST", path, json.dumps(payload).encode(), accept="application/x-ndjson")
        try:
            if resp.status != 200:
                return _decode(resp.status, resp.body())
            buf = b""
            for chunk in resp.chunks():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    kind = ev.get("event")
                    if kind == "done":
                        return ev.get("result")
                    if kind == "failed":
                        raise from_api(ev.get("error") or {})
                    if on_event:
                        on_event(ev)
                if len(buf) > MAX_HEADER:
                    raise ProtocolError("an overlong progress line")
            raise BangerError("internal", "the daemon closed the connection before the operation finished",
                              "see `banger daemon status` for its log")
        finally:
            resp.close()

    def upgrade(self, path: str) -> "AgentConn":
        resp = self.send("POST", path, b"", headers={"Connection": "upgrade", "Upgrade": "banger-agent"})
        if resp.status != 101:
            try:
                _decode(resp.status, resp.body())
            finally:
                resp.close()
            raise ProtocolError("the daemon did not open the agent stream")
        return AgentConn(resp.sock, resp._r)


def _decode(status: int, data: bytes) -> Any:
    if status >= 400:
        try:
            err = json.loads(data)
        except ValueError:
            raise ProtocolError(f"{status}: {data[:200]!r}") from None
        raise from_api(err)
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError as e:
        raise ProtocolError(f"bangerd sent an unexpected answer: {e}") from None


# --- the guest agent's frames (docs/agent-protocol.md) ---------------------

MAX_PAYLOAD = 1 << 20
KINDS = {1: "request", 2: "response", 3: "stdin", 4: "stdout", 5: "stderr", 6: "stdin_eof",
         7: "exit", 8: "resize", 9: "signal", 10: "data", 11: "data_end"}
CODES = {v: k for k, v in KINDS.items()}
PROTOCOL_VERSION = 1


class AgentConn:
    """A raw stream to a guest agent: length-prefixed frames."""

    def __init__(self, sock: socket.socket, reader: _Reader):
        self.sock = sock
        self._r = reader

    def write(self, kind: str, payload: bytes = b"") -> None:
        if len(payload) > MAX_PAYLOAD:
            for i in range(0, len(payload), MAX_PAYLOAD):
                self.write(kind, payload[i:i + MAX_PAYLOAD])
            return
        self.sock.sendall(struct.pack(">IB", len(payload) + 1, CODES[kind]) + payload)

    def write_json(self, kind: str, value: Any) -> None:
        self.write(kind, json.dumps(value).encode())

    def read(self) -> Optional[tuple]:
        try:
            head = self._r.exact(4)
        except ProtocolError:
            return None
        (n,) = struct.unpack(">I", head)
        if n == 0 or n > MAX_PAYLOAD + 1:
            raise ProtocolError(f"agent frame length {n} is out of range")
        frame = self._r.exact(n)
        kind = KINDS.get(frame[0])
        if kind is None:
            raise ProtocolError(f"unknown agent frame kind {frame[0]}")
        return kind, frame[1:]

    def response(self) -> Any:
        f = self.read()
        if f is None or f[0] != "response":
            raise ProtocolError("the guest agent did not answer")
        r = json.loads(f[1])
        if r.get("status") == "error":
            raise BangerError("failed_precondition", r.get("message", "the guest agent refused"))
        return r.get("data")

    def close(self) -> None:
        self.sock.close()
