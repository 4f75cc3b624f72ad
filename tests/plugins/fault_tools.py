"""A plugin for crash tests: a numbered, idempotent side-effecting tool and a python agent.

``test/record`` writes ``out/<agent>-<n>.txt`` (idempotent) and appends ``<agent>:<n>`` to
``.side/ran.log``, so a test can count how many times each call really ran.
"""

from __future__ import annotations

from typing import Any

from agentctl import actions as act


def register(registry: Any) -> None:
    @registry.tool("test/record", description="Record call n of an agent.", idempotent=True)
    def record(ctx: Any, n: int, agent: str) -> dict:
        side = ctx.workspace / ".side"
        side.mkdir(exist_ok=True)
        with open(side / "ran.log", "a") as f:
            f.write(f"{agent}:{n}\n")
        out = ctx.workspace / "out"
        out.mkdir(exist_ok=True)
        (out / f"{agent}-{n}.txt").write_text(f"{agent} {n}\n")
        return {"n": n}


def parallel_step(ctx: Any) -> list:
    """Three parallel batches of three numbered calls, then done."""
    batch = ctx.step_no - 1
    if batch < 3:
        return [act.parallel([act.call_tool("test/record", {"n": 3 * batch + j, "agent": ctx.agent_id}) for j in range(3)])]
    return [act.done("ok", 9)]
