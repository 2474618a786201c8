"""Against a real daemon and real guests: run by banger's e2e test `sdk::`
(which sets BANGER_SDK_LIVE and points BANGER_BIN at a banger whose
environment is the test's). Skipped elsewhere."""

import asyncio
import os
import statistics
import time

import pytest

import banger
from banger import AsyncClient, Client

pytestmark = pytest.mark.skipif(not os.environ.get("BANGER_SDK_LIVE"), reason="needs BANGER_SDK_LIVE (e2e sdk::)")


@pytest.fixture(scope="module")
def client():
    with Client() as c:
        yield c


@pytest.fixture(scope="module")
def vm(client):
    vm = client.create(name="sdk1", memory="512M")
    yield vm
    try:
        vm.delete()
    except banger.NotFound:
        pass


def test_create_and_list(client, vm):
    assert vm.state == "running" and vm.info.guest_ip
    assert "sdk1" in [v.name for v in client.list()]
    assert client.get("sdk1").id == vm.id


def test_exec_codes_and_streams(vm):
    r = vm.exec(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.exit_code, r.stdout, r.stderr) == (7, "out\n", "err\n")
    r = vm.exec(["sh", "-c", "cat; echo $X; pwd"], stdin="in\n", env={"X": "y"}, cwd="/tmp")
    assert r.stdout == "in\ny\n/tmp\n"
    r = vm.exec(["sleep", "30"], timeout=1)
    assert r.timed_out and r.exit_code == 124
    r = vm.exec(["no-such-program"])
    assert r.exit_code == 127 and "not found" in r.stderr


def test_streaming_exec_yields_output_as_it_comes(vm):
    seen = []
    t0 = time.monotonic()
    for kind, payload in vm.exec_stream(["sh", "-c", "echo a; sleep 1; echo b"]):
        seen.append((kind, payload, time.monotonic() - t0))
    outs = [p for k, p, _ in seen if k == "stdout"]
    assert b"".join(outs) == b"a\nb\n"
    first_at = next(t for k, p, t in seen if k == "stdout")
    assert first_at < seen[-1][2] - 0.5, "the first line came before the command ended"
    assert seen[-1][0] == "exit" and seen[-1][1].exit_code == 0


def test_cp_in_and_out_round_trip(vm, tmp_path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    os.chmod(src / "a.txt", 0o640)
    assert vm.cp_in(str(src), "/root/copied") > 0
    assert vm.exec(["cat", "/root/copied/a.txt"]).stdout == "alpha\n"
    assert vm.exec(["stat", "-c", "%a", "/root/copied/a.txt"]).stdout.strip() == "640"
    back = tmp_path / "back"
    vm.cp_out("/root/copied", str(back))
    assert (back / "a.txt").read_text() == "alpha\n"
    assert (back / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".banger-cp-")], "no staging left"
    with pytest.raises(banger.BangerError):
        vm.cp_out("/no/such/file", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_errors_are_typed(client):
    with pytest.raises(banger.NotFound) as e:
        client.get("nosuch")
    assert e.value.code == "not_found" and e.value.hint
    with pytest.raises(banger.InvalidArgument):
        client.create(name="Bad Name")
    with pytest.raises(banger.Conflict):
        client.create(name="sdk1", no_start=True)


def test_sandbox_context_manager_deletes(client):
    with client.sandbox(name="sdk2", no_start=True) as tmp:
        assert client.get("sdk2").id == tmp.id
    with pytest.raises(banger.NotFound):
        client.get("sdk2")


def test_async_client(vm):
    async def go():
        async with AsyncClient() as c:
            v = await c.get("sdk1")
            results = await asyncio.gather(*(v.exec(["echo", str(i)]) for i in range(4)))
            assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
            chunks = [p async for k, p in v.exec_stream(["sh", "-c", "echo x; echo y >&2"]) if k != "exit"]
            assert sorted(chunks) == [b"x\n", b"y\n"]
            names = [x.name for x in await c.list()]
            assert "sdk1" in names
    asyncio.run(go())


def test_bench_exec_true(vm):
    times = []
    for _ in range(20):
        t = time.perf_counter()
        assert vm.exec(["true"]).exit_code == 0
        times.append((time.perf_counter() - t) * 1000)
    print(f"\nBENCH sdk_vm_exec_true_ms {statistics.median(times):.1f}")
