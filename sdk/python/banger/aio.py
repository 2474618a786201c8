"""The asynchronous client: the same operations as coroutines. Each call
runs the synchronous client's blocking socket I/O on a worker thread
(`asyncio.to_thread`), so an event loop never blocks on the daemon or a
guest; `exec_stream` is an async iterator fed from that thread."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, List, Optional, Tuple, Union

from .client import Client, Vm
from .models import ExecResult, ExitStatus, VmInfo


class AsyncVm:
    def __init__(self, vm: Vm):
        self._vm = vm

    def __repr__(self) -> str:
        return f"Async{self._vm!r}"

    @property
    def info(self) -> VmInfo:
        return self._vm.info

    @property
    def name(self) -> str:
        return self._vm.name

    @property
    def id(self) -> str:
        return self._vm.id

    async def refresh(self) -> "AsyncVm":
        await asyncio.to_thread(self._vm.refresh)
        return self

    async def start(self) -> "AsyncVm":
        await asyncio.to_thread(self._vm.start)
        return self

    async def stop(self, timeout_secs: Optional[int] = None) -> "AsyncVm":
        await asyncio.to_thread(self._vm.stop, timeout_secs)
        return self

    async def delete(self) -> None:
        await asyncio.to_thread(self._vm.delete)

    async def exec(self, argv, **kw) -> ExecResult:
        return await asyncio.to_thread(self._vm.exec, argv, **kw)

    async def exec_stream(self, argv, **kw) -> AsyncIterator[Tuple[str, Union[bytes, ExitStatus]]]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(maxsize=64)
        done = object()

        def pump() -> None:
            try:
                for item in self._vm.exec_stream(argv, **kw):
                    asyncio.run_coroutine_threadsafe(q.put(item), loop).result()
                asyncio.run_coroutine_threadsafe(q.put(done), loop).result()
            except BaseException as e:  # handed to the awaiting side
                asyncio.run_coroutine_threadsafe(q.put(e), loop).result()

        worker = loop.run_in_executor(None, pump)
        while True:
            item = await q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        await worker

    async def cp_in(self, src: str, dst: str) -> int:
        return await asyncio.to_thread(self._vm.cp_in, src, dst)

    async def cp_out(self, src: str, dst: str) -> None:
        await asyncio.to_thread(self._vm.cp_out, src, dst)


class AsyncClient:
    """`async with AsyncClient() as c: vm = await c.create(...)`."""

    def __init__(self, socket: Optional[str] = None, **kw):
        self._socket = socket
        self._kw = kw
        self._c: Optional[Client] = None

    async def _client(self) -> Client:
        if self._c is None:
            self._c = await asyncio.to_thread(Client, self._socket, **self._kw)
        return self._c

    async def __aenter__(self) -> "AsyncClient":
        await self._client()
        return self

    async def __aexit__(self, *exc) -> None:
        pass

    async def version(self) -> dict:
        return await asyncio.to_thread((await self._client()).version)

    async def list(self) -> List[AsyncVm]:
        return [AsyncVm(v) for v in await asyncio.to_thread((await self._client()).list)]

    async def get(self, ref: str) -> AsyncVm:
        return AsyncVm(await asyncio.to_thread((await self._client()).get, ref))

    async def create(self, name: Optional[str] = None, image: Optional[str] = None, **kw) -> AsyncVm:
        c = await self._client()
        return AsyncVm(await asyncio.to_thread(lambda: c.create(name, image, **kw)))

    @contextlib.asynccontextmanager
    async def sandbox(self, **create_args) -> AsyncIterator[AsyncVm]:
        vm = await self.create(**create_args)
        try:
            yield vm
        finally:
            with contextlib.suppress(Exception):
                await vm.delete()
