"""Offline tests: the models against api/openapi.json, sizes, errors, and
the transport against a fake daemon on a Unix socket."""

import dataclasses
import json
import os
import socket
import threading

import pytest

import banger
from banger import _transport
from banger.client import Client, parse_size_mib
from banger.models import VmInfo

OPENAPI = os.path.join(os.path.dirname(__file__), "..", "..", "..", "api", "openapi.json")


def schemas():
    with open(OPENAPI) as f:
        return json.load(f)["components"]["schemas"]


def test_vm_model_matches_openapi():
    vm = schemas()["Vm"]
    fields = {f.name: f for f in dataclasses.fields(VmInfo)}
    assert set(vm["properties"]) <= set(fields), set(vm["properties"]) - set(fields)
    no_default = {n for n, f in fields.items()
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    # Everything the model insists on, the API promises.
    assert no_default <= set(vm["required"]), no_default - set(vm["required"])


def test_error_codes_match_openapi():
    codes = set(schemas()["Error"]["properties"]["code"]["enum"])
    assert set(banger.errors.BY_CODE) | {"internal"} == codes


def test_unknown_fields_are_kept_not_fatal():
    data = {"id": "1", "name": "a", "state": "running", "image": "i", "kernel": "k", "vcpu": 1,
            "memory_mib": 512, "disk_size_mib": 1024, "guest_ip": "10.0.0.2", "vm_dir": "/x",
            "created_at": "now", "last_error": None, "brand_new": 7}
    vm = VmInfo.from_api(data)
    assert vm.name == "a" and vm.extra == {"brand_new": 7}


@pytest.mark.parametrize("text,mib", [("512M", 512), ("2G", 2048), ("2GiB", 2048), ("1024", 1024),
                                      (256, 256), ("1T", 1 << 20), ("2048K", 2)])
def test_sizes(text, mib):
    assert parse_size_mib(text) == mib


@pytest.mark.parametrize("bad", ["lots", "1.5G", "-1G", "12Q", "1000K"])
def test_bad_sizes(bad):
    with pytest.raises(banger.InvalidArgument):
        parse_size_mib(bad)


def test_exit_codes():
    assert banger.ExitStatus(code=3).exit_code == 3
    assert banger.ExitStatus(signal=9).exit_code == 137
    assert banger.ExitStatus(code=None, timed_out=True).exit_code == 124


class FakeDaemon:
    """Answers each connection with the next canned reply."""

    def __init__(self, tmp_path, replies):
        self.path = str(tmp_path / "d.sock")
        self.requests = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(8)
        self.replies = list(replies)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while self.replies:
            conn, _ = self.srv.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
            while len(body) < n:
                body += conn.recv(65536)
            self.requests.append((head.split(b"\r\n")[0].decode(), body))
            conn.sendall(self.replies.pop(0))
            conn.close()


def chunked(parts):
    out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/x-ndjson\r\n\r\n"
    for p in parts:
        out += b"%x\r\n%s\r\n" % (len(p), p)
    return out + b"0\r\n\r\n"


VM = {"id": "abc", "name": "web", "state": "running", "image": "i", "kernel": "k", "vcpu": 2,
      "memory_mib": 512, "disk_size_mib": 8192, "guest_ip": "172.30.213.2", "vm_dir": "/x",
      "created_at": "now", "last_error": None}


def test_create_streams_progress_and_returns_the_vm(tmp_path):
    events = [json.dumps({"event": "phase", "phase": "boot", "message": "booting"}).encode() + b"\n",
              json.dumps({"event": "done", "result": VM}).encode()[:20],
              json.dumps({"event": "done", "result": VM}).encode()[20:] + b"\n"]
    d = FakeDaemon(tmp_path, [chunked(events)])
    seen = []
    vm = Client(d.path).create(name="web", memory="512M", on_event=seen.append)
    assert vm.name == "web" and vm.info.guest_ip == "172.30.213.2"
    assert seen == [{"event": "phase", "phase": "boot", "message": "booting"}]
    line, body = d.requests[0]
    assert line == "POST /v1/vms HTTP/1.1"
    assert json.loads(body) == {"name": "web", "memory_mib": 512, "no_start": False, "nat": False}


def test_errors_are_typed_with_code_message_and_hint(tmp_path):
    err = json.dumps({"code": "not_found", "message": "VM \"x\" not found", "hint": "list VMs"}).encode()
    reply = b"HTTP/1.1 404 Not Found\r\ncontent-length: %d\r\n\r\n%s" % (len(err), err)
    failed = json.dumps({"event": "failed", "error": {"code": "conflict", "message": "taken"}}).encode() + b"\n"
    d = FakeDaemon(tmp_path, [reply, chunked([failed])])
    c = Client(d.path)
    with pytest.raises(banger.NotFound) as e:
        c.get("x/../../v1/version")
    assert e.value.code == "not_found" and e.value.hint == "list VMs"
    assert d.requests[0][0] == "GET /v1/vms/x%2F..%2F..%2Fv1%2Fversion HTTP/1.1", "names cannot reach other endpoints"
    with pytest.raises(banger.Conflict):
        c.create(name="web")


def test_an_unreachable_daemon_says_so(tmp_path):
    with pytest.raises(banger.Unavailable) as e:
        Client(str(tmp_path / "nothing.sock")).list()
    assert "Cannot reach bangerd" in e.value.message and e.value.hint


def test_agent_frames_round_trip_and_bounds():
    a, b = socket.socketpair()
    conn = _transport.AgentConn(a, _transport._Reader(a))
    peer = _transport.AgentConn(b, _transport._Reader(b))
    conn.write("stdin", b"hello")
    conn.write_json("request", {"op": "health"})
    assert peer.read() == ("stdin", b"hello")
    assert peer.read() == ("request", b'{"op": "health"}')
    b.sendall((2 ** 31).to_bytes(4, "big"))
    with pytest.raises(banger.ProtocolError):
        conn.read()
