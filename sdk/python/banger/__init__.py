"""banger: VM-isolated development sandboxes, from Python.

    from banger import Client
    with Client() as c:
        vm = c.create(name="web", memory="512M")
        print(vm.exec(["uname", "-a"]).stdout)
        vm.delete()
"""

from .aio import AsyncClient, AsyncVm
from .client import Client, Vm, find_socket, parse_size_mib
from .errors import (BangerError, Conflict, FailedPrecondition, InUse, InvalidArgument, NotFound,
                     ProtocolError, Timeout, Unavailable)
from .models import ExecResult, ExitStatus, VmInfo

__version__ = "0.1.0"
__all__ = [
    "AsyncClient", "AsyncVm", "Client", "Vm", "find_socket", "parse_size_mib", "BangerError", "Conflict",
    "FailedPrecondition", "InUse", "InvalidArgument", "NotFound", "ProtocolError", "Timeout", "Unavailable",
    "ExecResult", "ExitStatus", "VmInfo",
]
