"""``python`` plugin steps for durable-timer tests: a parallel batch that holds a sleep.

Each step returns one batch, then writes what the step after it saw (``out/summary.txt``:
each member's ``ok:value`` and the kinds of the messages it read), then is done. Both
declare how their state is kept, so a checkpoint can snapshot them mid-batch.

``nap``: a 6 s sleep beside two ``test/count`` calls (from ``snap_steps``: each notes that
it really ran in ``out/ran-NAME.txt``), which answer at once.
``wake``: a 1 s sleep that a message ends, beside ``test/gated_line`` (from
``resume_tools``: waits for the file ``go``); a message that comes after the second is
over leaves the sleep's outcome ``timeout`` and is read by the step after the batch.
``wakes``: two 8 s sleeps that a message ends, beside ``test/gated_line``: one message
that comes while both wait ends both.
"""

from __future__ import annotations

from typing import Any, TypedDict

from agentctl import actions as act
from agentctl import keeps_state


class BatchState(TypedDict, total=False):
    asked: int


def _then(ctx: Any, batch: list[act.Action]) -> list[act.Action]:
    st = ctx.state
    if "asked" not in st:
        st["asked"] = 1
        return [act.parallel(batch)]
    if st["asked"] == 1:
        st["asked"] = 2
        seen = " ".join(f"{r.ok}:{r.value}" for r in ctx.results[0].value)
        kinds = " ".join(m.kind for m in ctx.messages)
        return [act.call_tool("fs/write", {"path": "out/summary.txt", "content": f"{seen} | {kinds}\n"})]
    return [act.done("ok", None)]


@keeps_state("1", state=BatchState)
def nap(ctx: Any) -> list[act.Action]:
    return _then(ctx, [act.sleep(6), act.call_tool("test/count", {"name": "a"}),
                       act.call_tool("test/count", {"name": "b"})])


@keeps_state("1", state=BatchState)
def wake(ctx: Any) -> list[act.Action]:
    return _then(ctx, [act.sleep(1, wake_on_message=True), act.call_tool("test/gated_line", {"n": 3})])


@keeps_state("1", state=BatchState)
def wakes(ctx: Any) -> list[act.Action]:
    return _then(ctx, [act.sleep(8, wake_on_message=True), act.sleep(8, wake_on_message=True),
                       act.call_tool("test/gated_line", {"n": 3})])
