"""``python`` plugin steps for snapshot tests: one parallel batch of calls, then a summary.

``batch`` declares how its state is kept (``keeps_state``, version from the environment
variable ``SNAP_STEPS_VERSION``, default ``1``, so a test can resume with another version);
``batch_plain`` is the same step without it. The batch runs ``test/count`` twice (a tool
that appends ``ran`` to ``out/ran-NAME.txt`` each time it really runs: neither idempotent
nor recoverable, so a second run shows) and ``test/gated_line`` (waits for the file ``go``).
``mixed`` carries out lists that hold a send, an unlock and a ``done`` beside a call or a sleep.
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

from agentctl import actions as act
from agentctl import keeps_state


class BatchState(TypedDict, total=False):
    asked: int


def register(registry: Any) -> None:
    @registry.tool("test/count", description="Note that this call ran.")
    def count(ctx: Any, name: str) -> dict:
        with open(ctx.workspace / "out" / f"ran-{name}.txt", "a") as f:
            f.write("ran\n")
        return {"name": name}


def batch_plain(ctx: Any) -> list[act.Action]:
    st = ctx.state
    if "asked" not in st:
        st["asked"] = 1
        return [act.parallel([act.call_tool("test/count", {"name": "a"}), act.call_tool("test/count", {"name": "b"}),
                              act.call_tool("test/gated_line", {"n": 3})])]
    if st["asked"] == 1:
        st["asked"] = 2
        summary = " ".join(f"{r.ok}:{r.value}" for r in ctx.results[0].value)
        return [act.call_tool("fs/write", {"path": "out/summary.txt", "content": summary + "\n"})]
    return [act.done("ok", None)]


@keeps_state(os.environ.get("SNAP_STEPS_VERSION", "1"), state=BatchState)
def batch(ctx: Any) -> list[act.Action]:
    return batch_plain(ctx)


@keeps_state(os.environ.get("SNAP_STEPS_VERSION", "1"), state=BatchState)
async def batch_async(ctx: Any) -> list[act.Action]:
    """``batch`` as an async step: its batch is carried out once the step's coroutine returned it."""
    return batch_plain(ctx)


@keeps_state("1", state=BatchState)
def mixed(ctx: Any) -> list[act.Action]:
    """Lists that hold actions that never wait beside ones that do: takes the lock ``out/p``;
    sends ``hello`` to ``peer``, gives ``out/p`` back and calls ``test/gated_line`` (waits
    for the file ``go``); writes whether each of those went well (``out/summary.txt``); then
    sleeps 2 s and is done in the same list."""
    st = ctx.state
    asked = st.get("asked", 0)
    st["asked"] = asked + 1
    if asked == 0:
        return [act.acquire_lock("out/p")]
    if asked == 1:
        return [act.send("peer", "hello", {"n": 1}), act.release_lock("out/p"), act.call_tool("test/gated_line", {"n": 3})]
    if asked == 2:
        summary = " ".join(f"{r.ok}" for r in ctx.results)
        return [act.call_tool("fs/write", {"path": "out/summary.txt", "content": summary + "\n"})]
    return [act.sleep(2), act.done("ok", "finished")]
