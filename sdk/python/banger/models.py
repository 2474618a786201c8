"""Typed views of the API's answers (api/openapi.json, checked by
tests/test_models.py). Unknown fields from a newer daemon are kept in
`extra`, never an error."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional


def _build(cls, data: dict):
    names = {f.name for f in dataclasses.fields(cls)}
    known = {k: v for k, v in data.items() if k in names and k != "extra"}
    obj = cls(**known)
    obj.extra = {k: v for k, v in data.items() if k not in names}
    return obj


@dataclass
class VmInfo:
    """`Vm` in the API."""

    id: str
    name: str
    state: str
    image: str
    kernel: str
    vcpu: int
    memory_mib: int
    disk_size_mib: int
    guest_ip: str
    vm_dir: str
    created_at: str
    last_error: Optional[str] = None
    image_id: str = ""
    engine: str = ""
    engine_reason: str = ""
    nat: bool = False
    runtime: Optional[dict] = None
    workspace: Optional[dict] = None
    forwards: list = field(default_factory=list)
    exec_defaults: Optional[dict] = None
    extra: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: dict) -> "VmInfo":
        return _build(cls, data)


@dataclass
class ExitStatus:
    code: Optional[int] = None
    signal: Optional[int] = None
    timed_out: bool = False

    @property
    def exit_code(self) -> int:
        """The shell's convention: the code, 128+signal, or 124 for a timeout."""
        if self.timed_out:
            return 124
        if self.code is not None:
            return self.code
        if self.signal is not None:
            return 128 + self.signal
        return 255


@dataclass
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""


def exit_status(data: Any) -> ExitStatus:
    d = data if isinstance(data, dict) else {}
    return ExitStatus(code=d.get("code"), signal=d.get("signal"), timed_out=bool(d.get("timed_out")))
