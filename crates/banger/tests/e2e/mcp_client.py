"""Drives `banger mcp` with the official MCP Python client (PyPI `mcp`),
as an agent would: initialize, list tools, create a sandbox, write a file,
run it (a non-zero exit code), read a file back, hit an unknown sandbox,
truncate a long output, run a repository, delete. Run by the e2e test
`mcp::`; the server command comes in BANGER_MCP_COMMAND (a JSON argv).

Prints `BENCH name value` lines for BENCHMARKS.md.
"""

import asyncio
import json
import os
import statistics
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

TOOLS = {
    "sandbox_create", "sandbox_list", "sandbox_delete", "sandbox_exec",
    "sandbox_read_file", "sandbox_write_file", "sandbox_run_repo",
}


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


async def call(s, tool, **args):
    r = await s.call_tool(tool, args)
    return r, r.structuredContent


async def main():
    argv = json.loads(os.environ["BANGER_MCP_COMMAND"])
    repo = os.environ["BANGER_MCP_REPO"]
    bench_vm = os.environ.get("BANGER_MCP_BENCH_VM")
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
    async with stdio_client(params) as (rd, wr):
        async with ClientSession(rd, wr) as s:
            init = await s.initialize()
            check(init.serverInfo.name == "banger", f"server name {init.serverInfo}")
            tools = await s.list_tools()
            names = {t.name for t in tools.tools}
            check(names == TOOLS, f"tools {names}")

            r, sc = await call(s, "sandbox_create", name="mcp1")
            check(not r.isError, f"create: {r.content}")
            check(sc["name"] == "mcp1" and sc["state"] == "running" and sc["ip"], f"create: {sc}")
            check(sc["nat"] is False, "no NAT unless asked")

            script = "#!/bin/sh\necho out-$1\necho err >&2\nexit 3\n"
            r, sc = await call(s, "sandbox_write_file", sandbox="mcp1", path="/root/bin/hello.sh",
                               content=script, mode="0755")
            check(not r.isError and sc["bytes"] == len(script), f"write: {r.content}")

            r, sc = await call(s, "sandbox_exec", sandbox="mcp1", command=["/root/bin/hello.sh", "x"])
            check(not r.isError, f"a non-zero exit is a result, not an error: {r.content}")
            check(sc["exit_code"] == 3 and sc["stdout"] == "out-x\n" and sc["stderr"] == "err\n", f"exec: {sc}")
            check(not sc["stdout_truncated"], "short output is whole")

            r, sc = await call(s, "sandbox_exec", sandbox="mcp1", command=["sh", "-c", "cat; pwd; echo $GREETING"],
                               stdin="piped\n", env={"GREETING": "hi"}, cwd="/tmp")
            check(sc["stdout"] == "piped\n/tmp\nhi\n", f"stdin/cwd/env: {sc}")

            r, sc = await call(s, "sandbox_read_file", sandbox="mcp1", path="/root/bin/hello.sh")
            check(not r.isError and sc["content"] == script, f"read: {r.content}")
            r, _ = await call(s, "sandbox_read_file", sandbox="mcp1", path="/root/bin")
            check(r.isError and "directory" in r.content[0].text, f"read of a directory: {r.content}")
            r, _ = await call(s, "sandbox_read_file", sandbox="mcp1", path="/usr/bin/sh")
            check(r.isError, f"read of a binary: {r.content}")

            # Output past the cap ([mcp] max_output_kib = 16 here) is cut, and says so.
            r, sc = await call(s, "sandbox_exec", sandbox="mcp1",
                               command=["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"])
            check(sc["stdout_truncated"] and sc["stdout_bytes"] == 100000, f"truncation: {sc['stdout_bytes']}")
            check("output truncated" in sc["stdout"] and len(sc["stdout"]) < 17000, "truncation is stated")

            r, sc = await call(s, "sandbox_exec", sandbox="mcp1", command=["sleep", "30"], timeout_secs=1)
            check(sc["timed_out"] and sc["exit_code"] == 124, f"timeout: {sc}")

            r, _ = await call(s, "sandbox_exec", sandbox="nosuch", command=["true"])
            check(r.isError and "not found" in r.content[0].text, f"unknown sandbox: {r.content}")

            r, sc = await call(s, "sandbox_run_repo", path=repo, command=["sh", "-c", "cat marker.txt; exit 5"])
            check(not r.isError, f"run_repo: {r.content}")
            check(sc["exit_code"] == 5 and sc["stdout"] == "from-the-repo\n" and not sc["kept"], f"run_repo: {sc}")

            if bench_vm:
                times = []
                for _ in range(20):
                    t = time.perf_counter()
                    r, sc = await call(s, "sandbox_exec", sandbox=bench_vm, command=["true"])
                    times.append((time.perf_counter() - t) * 1000)
                    check(sc["exit_code"] == 0, f"bench exec: {sc}")
                print(f"BENCH mcp_sandbox_exec_true_ms {statistics.median(times):.1f}")

            r, sc = await call(s, "sandbox_delete", sandbox="mcp1")
            check(not r.isError and sc["deleted"] == "mcp1", f"delete: {r.content}")
            r, sc = await call(s, "sandbox_list")
            names = [x["name"] for x in sc["sandboxes"]]
            check(set(names) <= {bench_vm}, f"after delete (run_repo's sandbox gone too): {names}")
    print("MCP-CLIENT-OK")


asyncio.run(main())
