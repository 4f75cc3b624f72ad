"""Hostile files in the workspace against the fs/* tools: a fifo, a socket, a device, a huge file.

Anything that can make files in the workspace (a ``shell/run`` command, a container, an MCP
server, the user) can leave a file that is no text file. A tool call on it must end with a
clear refusal: not hang its worker thread on a fifo that nobody opens, not read a device or a
sparse 10 GB file into memory. Each attempt runs through every file tool, directly and
through a real run whose model (a real HTTP server on 127.0.0.1) makes the calls.

A call that does hang would hang the test with it (a worker thread cannot be cancelled), so
a watchdog opens every fifo after a while to let it go, and the test then fails on that.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import of, run_model_plan
from llm_servers import Behaviour, running_server

from agentctl.errors import ToolError
from agentctl.services.tools import ToolContext, default_registry
from agentctl.services.tools.nofollow import MAX_FILE_BYTES

pytestmark = pytest.mark.anyio

REG = default_registry()
FIFOS = ("fifo", "sub/fifo")


@contextmanager
def _watchdog(ws: Path, after: float = 20.0) -> Iterator[list[str]]:
    """Open every fifo of the workspace for reading and writing after ``after`` seconds (and
    again until the block ends), which frees any call blocked on one; the list it yields
    names the fifos it had to free."""
    freed: list[str] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(after):
            for name in FIFOS:
                fd = os.open(ws / name, os.O_RDWR | os.O_NONBLOCK)
                freed.append(name)
                os.close(fd)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield freed
    finally:
        stop.set()
        thread.join()


def _hostile_workspace(ws: Path) -> socket.socket:
    """A fifo at the top and one below, a listening unix socket, a 10 GB sparse file and one a
    byte over the limit, a device where we may make one; returns the socket to close."""
    (ws / "sub").mkdir(parents=True)
    for name in FIFOS:
        os.mkfifo(ws / name)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ws / "sock"))
    sock.listen()
    with open(ws / "sparse", "wb") as f:
        f.truncate(10 * 1024**3)
    with open(ws / "over", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    (ws / "fine.txt").write_text("fine\n")
    try:
        os.mknod(ws / "zero", 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero's numbers: endless bytes
    except PermissionError:
        pass  # not root: the test covers the other kinds
    return sock


def _calls(path: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("fs/read", {"path": path}),
        ("fs/write", {"path": path, "content": "x"}),
        ("fs/append", {"path": path, "content": "x"}),
        ("fs/edit", {"path": path, "old": "\x00", "new": "x"}),
    ]


def _targets(ws: Path) -> list[str]:
    return [*FIFOS, "sock", "sparse", "over", *(["zero"] if (ws / "zero").exists() else [])]


def _expected(path: str, tool: str) -> str:
    """What the refusal must say: a special file is not a regular file; a big one is too large,
    except for ``fs/append``, which reads only its last bytes and so may grow it."""
    if path in ("sparse", "over"):
        return "" if tool == "fs/append" else f"larger than {MAX_FILE_BYTES} bytes"
    return "not a regular file"


async def test_special_and_huge_files_are_refused_by_every_file_tool(tmp_path: Path) -> None:
    ws = tmp_path
    sock = _hostile_workspace(ws)
    ctx = ToolContext(agent_id="a1", workspace=ws, run_id="r1")
    try:
        with _watchdog(ws) as freed:
            for path in _targets(ws):
                for tool, args in _calls(path):
                    expected = _expected(path, tool)
                    if not expected:
                        assert await REG.invoke(tool, args, ctx) == {"path": path, "bytes": 1}
                        continue
                    with pytest.raises(ToolError) as err:
                        await REG.invoke(tool, args, ctx)
                    assert str(err.value).startswith(f"{path}: {expected}"), (tool, path, str(err.value))
            listed = await REG.invoke("fs/list", {"path": "."}, ctx)
        assert freed == [], f"calls hung on {freed} until the watchdog opened them"
    finally:
        sock.close()
    assert set(_targets(ws)) - {"sub/fifo"} <= set(listed) and "sub/" in listed
    assert os.path.getsize(ws / "sparse") == 10 * 1024**3 + 1 and os.path.getsize(ws / "over") == MAX_FILE_BYTES + 2
    assert all((ws / name).is_fifo() for name in FIFOS) and (ws / "sock").is_socket()
    assert await REG.invoke("fs/read", {"path": "fine.txt"}, ctx) == "fine\n"


async def test_a_file_at_the_limit_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / "edge.txt").write_bytes(b"a" * (MAX_FILE_BYTES - 1) + b"\n")
    ctx = ToolContext(agent_id="a1", workspace=tmp_path, run_id="r1")
    text = await REG.invoke("fs/read", {"path": "edge.txt"}, ctx)
    assert len(text) == MAX_FILE_BYTES and text.endswith("a\n")


def test_reading_a_10_gb_sparse_file_stays_within_a_small_memory_limit(tmp_path: Path) -> None:
    """In a process whose address space is capped at 1 GiB (a read of the whole file would
    die with MemoryError), fs/read and fs/write on a 10 GB sparse file end in the refusal."""
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(10 * 1024**3)
    script = (
        "import anyio, resource, sys\n"
        "from pathlib import Path\n"
        "from agentctl.services.tools import ToolContext, default_registry\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "async def main():\n"
        "    ctx = ToolContext(agent_id='a1', workspace=Path(sys.argv[1]), run_id='r1')\n"
        "    for tool, extra in (('fs/read', {}), ('fs/write', {'content': 'x'}), ('fs/edit', {'old': 'a', 'new': 'b'})):\n"
        "        try:\n"
        "            await default_registry().invoke(tool, {'path': 'sparse', **extra}, ctx)\n"
        "        except Exception as exc:\n"
        "            print(tool, type(exc).__name__, exc)\n"
        "anyio.run(main)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" ", 2)[:2] for line in lines] == [["fs/read", "ToolError"], ["fs/write", "ToolError"],
                                                          ["fs/edit", "ToolError"]], done.stdout
    assert all(f"larger than {MAX_FILE_BYTES} bytes" in line for line in lines)
    assert os.path.getsize(tmp_path / "sparse") == 10 * 1024**3


def test_an_llm_agent_calling_file_tools_on_hostile_files_gets_refusals_and_the_run_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model asks for every file tool on each hostile file in one reply: every call is
    refused with the reason, the model gets the refusals back, the run finishes."""
    ws = tmp_path
    sock = _hostile_workspace(ws)
    attempts = [(tool, args) for path in _targets(ws) for tool, args in _calls(path) if _expected(path, tool)]
    try:
        with _watchdog(ws) as freed, start_blocking_portal() as portal, \
                portal.wrap_async_context_manager(running_server()) as server:
            server.then(Behaviour(content="", tool_calls=[(tool.replace("/", "__"), args) for tool, args in attempts]),
                        Behaviour(content="gave up"))
            plan = {"name": "hostile-files", "defaults": {
                "provider": "openai", "model": "m", "base_url": server.url + "/v1", "restart": "temporary",
                "tools": ["fs/read", "fs/write", "fs/append", "fs/edit", "fs/list"]},
                "tasks": [{"id": "hostile", "agent": "llm", "instructions": "hang the run"}]}
            result, evs = run_model_plan(ws, plan, tmp_path / "run", monkeypatch)
        assert freed == [], f"the run hung on {freed} until the watchdog opened them"
    finally:
        sock.close()
    assert result.exit_code == 0, result.output
    asked = {e["call_id"]: e for e in of(evs, "tool/requested", "hostile")}
    results = of(evs, "tool/result", "hostile")
    assert sorted((asked[r["call_id"]]["tool"], asked[r["call_id"]]["arguments"]["path"]) for r in results) == sorted(
        (tool, args["path"]) for tool, args in attempts)
    for r in results:
        path = asked[r["call_id"]]["arguments"]["path"]
        assert not r["ok"] and r["error"].startswith(f"{path}: {_expected(path, r['tool'])}"), r
    replies = [m["content"] for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert len(replies) == len(attempts) and all("regular file" in m or "larger than" in m for m in replies)
    assert evs[-1]["type"] == "run/finished"
