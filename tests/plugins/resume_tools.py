"""A plugin for crash-resume tests: numbered lines appended by a tool that can kill its process.

``test/line`` appends ``line-NN`` to ``out/lines.txt``. When ``N`` is listed in the
environment variable ``TEST_KILL_AT_LINE`` (comma separated), the tool SIGKILLs its own
process before appending: everything logged before the call (its write-ahead
``tool/requested`` included) is on disk, and the call has had no effect.
``test/gated_line`` does the same once the file ``go`` exists in the workspace, so a test
can signal the run while the call is in progress. ``test/note`` is the README's example of
a plugin tool made exactly-once with ``recover=``.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio

from agentctl import actions as act
from agentctl import keeps_state
from agentctl.services.tools import Recovered


def register(registry: Any) -> None:
    @registry.tool("test/line", description="Append line N.", idempotent=True)
    def line(ctx: Any, n: int) -> dict:
        if str(n) in os.environ.get("TEST_KILL_AT_LINE", "").split(","):
            os.kill(os.getpid(), signal.SIGKILL)
        out = ctx.workspace / "out"
        out.mkdir(exist_ok=True)
        with open(out / "lines.txt", "a") as f:
            f.write(f"line-{n:02d}\n")
        return {"n": n}

    @registry.tool("test/gated_line", description="Append line N once the file go exists.", idempotent=True)
    async def gated_line(ctx: Any, n: int) -> dict:
        while not (ctx.workspace / "go").exists():
            await anyio.sleep(0.02)
        with open(ctx.workspace / "out" / "lines.txt", "a") as f:
            f.write(f"line-{n:02d}\n")
        return {"n": n}

    def note_recover(ctx: Any, arguments: dict, record: Any) -> Recovered:
        if record is None:
            return Recovered(False)  # it never got to the file
        notes = ctx.workspace / "notes.txt"
        size = notes.stat().st_size if notes.exists() else 0
        line = (arguments["text"] + "\n").encode()
        if size == record["size"] + len(line):
            return Recovered(True, {"ok": True})
        return Recovered(False) if size == record["size"] else Recovered(None)

    @registry.tool("test/note", description="Add a note.", recover=note_recover)
    async def note(ctx: Any, text: str) -> dict:
        notes = ctx.workspace / "notes.txt"
        await ctx.write_ahead({"size": notes.stat().st_size if notes.exists() else 0})
        with notes.open("a") as f:
            f.write(text + "\n")
        return {"ok": True}

    @registry.tool("test/once", description="Append line N; neither idempotent nor recoverable.")
    def once(ctx: Any, n: int) -> dict:
        with open(ctx.workspace / "once.txt", "a") as f:
            f.write(f"once-{n}\n")
        return {"n": n}


@keeps_state("1")  # its state is empty (it goes by ctx.step_no): snapshots keep it mid-batch
def batch_step(ctx: Any) -> list:
    """Two parallel batches of three appends (``out/batch-J.txt``), then done."""
    if ctx.results and not all(r.ok for r in ctx.results[0].value):
        raise RuntimeError(f"a batch call failed: {ctx.results[0].value}")
    if ctx.step_no <= 2:
        return [act.parallel([act.call_tool("fs/append", {"path": f"out/batch-{j}.txt", "content": f"b{ctx.step_no}\n"})
                              for j in range(3)])]
    return [act.done("ok", 6)]
