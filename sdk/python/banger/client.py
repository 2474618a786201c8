"""The synchronous client: `Client` (the daemon) and `Vm` (one sandbox)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ._transport import AgentConn, PROTOCOL_VERSION, Transport, seg
from .errors import BangerError, InvalidArgument, ProtocolError
from .models import ExecResult, ExitStatus, VmInfo, exit_status

Event = dict
OnEvent = Optional[Callable[[Event], None]]
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)


def parse_size_mib(size: Union[str, int, None]) -> Optional[int]:
    """'512M', '2G', '2GiB' or a number of MiB -> MiB (as the CLI reads sizes)."""
    if size is None:
        return None
    if isinstance(size, int):
        return size
    m = _SIZE.match(size)
    if not m:
        raise InvalidArgument("invalid_argument", f"size {size!r} is not like 512M or 2G",
                              "write a size like 512, 512M, 2G or 2GiB (a bare number means MiB)")
    n, unit = int(m.group(1)), m.group(2).upper()
    if unit == "K":
        if n % 1024:
            raise InvalidArgument("invalid_argument", f"size {size!r} is not a whole number of MiB")
        return n // 1024
    return n * {"": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]


def find_socket(banger: Optional[str] = None) -> str:
    """The daemon's socket, found (and the daemon started or replaced) the
    way the CLI does: by asking it. `BANGER_SOCKET` overrides."""
    explicit = os.environ.get("BANGER_SOCKET")
    if explicit:
        return explicit
    exe = banger or os.environ.get("BANGER_BIN") or shutil.which("banger")
    if not exe:
        raise BangerError("unavailable", "cannot find the banger CLI",
                          "install banger (its README), put it on PATH or set BANGER_BIN")
    p = subprocess.run([exe, "daemon", "start", "--json"], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise BangerError("unavailable", f"`banger daemon start` failed: {p.stderr.strip()}",
                          "see `banger daemon status` and `banger doctor`")
    try:
        return json.loads(p.stdout)["daemon"]["socket"]
    except (ValueError, KeyError) as e:
        raise ProtocolError(f"`banger daemon start --json` printed something unexpected: {e}") from None


class Client:
    """A client of the local banger daemon.

    >>> with Client() as c:
    ...     vm = c.create(name="web", memory="512M")
    """

    def __init__(self, socket: Optional[str] = None, *, banger: Optional[str] = None, timeout: float = 600.0):
        self.socket = socket or find_socket(banger)
        self._t = Transport(self.socket, timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between calls; here for symmetry."""

    # --- the daemon ---------------------------------------------------------

    def version(self) -> dict:
        return self._t.call("GET", "/v1/version")

    # --- VMs ------------------------------------------------------------------

    def list(self) -> List["Vm"]:
        return [Vm(self, VmInfo.from_api(v)) for v in self._t.call("GET", "/v1/vms")]

    def get(self, ref: str) -> "Vm":
        """A VM by name, id or unique id prefix."""
        return Vm(self, self._info(ref))

    def _info(self, ref: str) -> VmInfo:
        return VmInfo.from_api(self._t.call("GET", f"/v1/vms/{seg(ref)}"))

    def create(self, name: Optional[str] = None, image: Optional[str] = None, *, vcpu: Optional[int] = None,
               memory: Union[str, int, None] = None, disk_size: Union[str, int, None] = None, nat: bool = False,
               no_start: bool = False, engine: Optional[str] = None, on_event: OnEvent = None) -> "Vm":
        """Creates a VM and (unless no_start) boots it until its agent answers."""
        req = {"name": name, "image": image, "vcpu": vcpu, "memory_mib": parse_size_mib(memory),
               "disk_size_mib": parse_size_mib(disk_size), "no_start": no_start, "engine": engine, "nat": nat}
        req = {k: v for k, v in req.items() if v is not None}
        return Vm(self, VmInfo.from_api(self._t.stream("/v1/vms", req, on_event)))

    @contextlib.contextmanager
    def sandbox(self, **create_args) -> Iterator["Vm"]:
        """A VM that is deleted when the block ends, however it ends."""
        vm = self.create(**create_args)
        try:
            yield vm
        finally:
            try:
                vm.delete()
            except BangerError:
                pass

    def agent(self, ref: str) -> AgentConn:
        return self._t.upgrade(f"/v1/vms/{seg(ref)}/agent")


class Vm:
    """One VM. `info` is as of the last call that returned it (`refresh()`)."""

    def __init__(self, client: Client, info: VmInfo):
        self._c = client
        self.info = info

    def __repr__(self) -> str:
        return f"Vm(name={self.name!r}, state={self.info.state!r}, ip={self.info.guest_ip!r})"

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def state(self) -> str:
        return self.info.state

    def refresh(self) -> "Vm":
        self.info = self._c._info(self.id)
        return self

    def start(self, on_event: OnEvent = None) -> "Vm":
        self.info = VmInfo.from_api(self._c._t.stream(f"/v1/vms/{seg(self.id)}/start", {}, on_event))
        return self

    def stop(self, timeout_secs: Optional[int] = None) -> "Vm":
        body = {} if timeout_secs is None else {"timeout_secs": timeout_secs}
        self.info = VmInfo.from_api(self._c._t.call("POST", f"/v1/vms/{seg(self.id)}/stop", body))
        return self

    def delete(self) -> None:
        self._c._t.call("DELETE", f"/v1/vms/{seg(self.id)}")

    # --- commands ---------------------------------------------------------------

    def _exec_request(self, argv: Sequence[str], cwd: Optional[str], env: Optional[Dict[str, str]],
                      timeout: Optional[float], user: Optional[str]) -> dict:
        if isinstance(argv, str) or not argv:
            raise InvalidArgument("invalid_argument", "argv must be a non-empty list of strings",
                                  'e.g. vm.exec(["make", "test"]) or vm.exec(["sh", "-c", "..."])')
        d = self.info.exec_defaults or {}
        pairs = [kv.split("=", 1) for kv in d.get("env", []) if "=" in kv]
        pairs += [[k, v] for k, v in (env or {}).items()]
        ws = (self.info.workspace or {}).get("guest_path")
        req = {"v": PROTOCOL_VERSION, "op": "exec", "argv": list(argv), "env": pairs,
               "cwd": cwd or ws or d.get("workdir"), "tty": False, "user": user or d.get("user")}
        if timeout is not None:
            req["timeout_ms"] = int(timeout * 1000)
        return req

    def exec_stream(self, argv: Sequence[str], *, cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                    stdin: Union[bytes, str, None] = None, timeout: Optional[float] = None,
                    user: Optional[str] = None) -> Iterator[Tuple[str, Union[bytes, ExitStatus]]]:
        """Runs a command, yielding ("stdout"|"stderr", bytes) as output comes,
        then ("exit", ExitStatus)."""
        req = self._exec_request(argv, cwd, env, timeout, user)
        conn = self._c.agent(self.id)
        try:
            conn.write_json("request", req)
            try:
                conn.response()
            except BangerError as e:
                # The command never started: the shell's codes, as the CLI gives them.
                msg = e.message
                code = 127 if "not found" in msg else 126 if "permission denied" in msg else 125
                yield "stderr", (msg + "\n").encode()
                yield "exit", ExitStatus(code=code)
                return
            data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")

            def feed() -> None:
                try:
                    if data:
                        conn.write("stdin", data)
                    conn.write("stdin_eof")
                except OSError:
                    pass

            threading.Thread(target=feed, daemon=True).start()
            while True:
                f = conn.read()
                if f is None:
                    raise ProtocolError("the guest agent closed the connection before the command ended")
                kind, payload = f
                if kind in ("stdout", "stderr"):
                    yield kind, payload
                elif kind == "exit":
                    yield "exit", exit_status(json.loads(payload))
                    return
        finally:
            conn.close()

    def exec(self, argv: Sequence[str], *, cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
             stdin: Union[bytes, str, None] = None, timeout: Optional[float] = None,
             user: Optional[str] = None) -> ExecResult:
        """Runs a command to its end; a non-zero exit code is a result, not an error."""
        out, err, status = bytearray(), bytearray(), ExitStatus()
        for kind, payload in self.exec_stream(argv, cwd=cwd, env=env, stdin=stdin, timeout=timeout, user=user):
            if kind == "stdout":
                out += payload
            elif kind == "stderr":
                err += payload
            else:
                status = payload
        return ExecResult(exit_code=status.exit_code, stdout=out.decode(errors="replace"),
                          stderr=err.decode(errors="replace"), timed_out=status.timed_out,
                          stdout_bytes=bytes(out), stderr_bytes=bytes(err))

    # --- files ------------------------------------------------------------------

    def cp_in(self, src: str, dst: str) -> int:
        """Copies a host file or directory to `dst` in the guest (its new
        name there). Returns the bytes sent."""
        if not dst.startswith("/") or ".." in dst.split("/"):
            raise InvalidArgument("invalid_argument", f"guest path {dst!r} must be absolute, without '..'")
        src = os.path.abspath(src)
        parent, name = os.path.split(dst.rstrip("/")) if dst != "/" else ("/", "")
        with tempfile.TemporaryFile() as tmp:
            with tarfile.open(fileobj=tmp, mode="w", format=tarfile.PAX_FORMAT) as tf:
                tf.add(src, arcname=os.path.basename(src))
            tmp.seek(0)
            conn = self._c.agent(self.id)
            try:
                conn.write_json("request", {"v": PROTOCOL_VERSION, "op": "put_files", "dest": parent or "/",
                                            "rename": name or None})
                sent = 0
                while True:
                    chunk = tmp.read(256 * 1024)
                    if not chunk:
                        break
                    conn.write("data", chunk)
                    sent += len(chunk)
                conn.write("data_end")
                conn.response()
                return sent
            finally:
                conn.close()

    def cp_out(self, src: str, dst: str) -> None:
        """Copies a guest file or directory to `dst` on the host. The archive
        is unpacked into a private directory first, refusing links and paths
        that leave it; `dst` appears only when the copy is complete."""
        if not src.startswith("/"):
            raise InvalidArgument("invalid_argument", f"guest path {src!r} is not absolute")
        dst = os.path.abspath(dst)
        parent = os.path.dirname(dst)
        with tempfile.TemporaryFile() as tmp:
            conn = self._c.agent(self.id)
            try:
                conn.write_json("request", {"v": PROTOCOL_VERSION, "op": "get_files", "path": src})
                conn.response()
                while True:
                    f = conn.read()
                    if f is None:
                        raise ProtocolError("the guest agent closed the connection mid-copy")
                    if f[0] == "data":
                        tmp.write(f[1])
                    elif f[0] == "data_end":
                        break
                    else:
                        raise ProtocolError(f"unexpected {f[0]} frame in a copy")
                conn.response()
            finally:
                conn.close()
            tmp.seek(0)
            stage = tempfile.mkdtemp(prefix=".banger-cp-", dir=parent)
            try:
                with tarfile.open(fileobj=tmp, mode="r:") as tf:
                    members = tf.getmembers()
                    tops = {m.name.split("/", 1)[0] for m in members}
                    if len(tops) != 1:
                        raise ProtocolError("the guest sent an archive without exactly one top entry")
                    _safe_extract(tf, members, stage)
                os.replace(os.path.join(stage, tops.pop()), dst)
            finally:
                shutil.rmtree(stage, ignore_errors=True)


def _safe_extract(tf: tarfile.TarFile, members, into: str) -> None:
    """Unpacks with tarfile's `data` filter where Python has it; otherwise
    refuses absolute paths, '..', devices and links leaving `into`."""
    if hasattr(tarfile, "data_filter"):
        tf.extractall(into, members=members, filter="data")
        return
    root = os.path.realpath(into)
    for m in members:
        target = os.path.realpath(os.path.join(root, m.name))
        if m.name.startswith("/") or ".." in m.name.split("/") or not target.startswith(root + os.sep):
            raise ProtocolError(f"the archive entry {m.name!r} leaves the destination")
        if m.isdev() or ((m.issym() or m.islnk()) and (m.linkname.startswith("/") or ".." in m.linkname.split("/"))):
            raise ProtocolError(f"the archive entry {m.name!r} is a device or a link out of the destination")
    tf.extractall(into, members=members)
