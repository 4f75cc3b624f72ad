"""What code a plan runs: its opt-ins, listed for ``agentctl validate``.

Called by :mod:`agentctl.cli.inspect`. Every way a plan hands the machine to code is an
explicit line of the plan (``docs/security.md``): ``settings.shell`` and ``settings.docker``
(agents run commands), an ``mcp:`` server's ``command`` (started for the run), a module in
``settings.plugins`` (imported; its ``register`` adds tools) and an ``agent: python`` task
(its step module imported; scripts spawn only scripts).
"""

from __future__ import annotations

import shlex

from .model import Plan

__all__ = ["code_it_runs"]


def code_it_runs(plan: Plan) -> list[str]:
    """One line per opt-in of ``plan`` that runs code, in a fixed order; empty when none."""
    out = []
    if plan.settings.shell:
        out.append("settings.shell: agents granted shell/run run any shell command in the workspace")
    if plan.settings.docker:
        out.append("settings.docker: agents granted docker/* run containers (compose files may mount host paths)")
    out += [f"mcp.{s.name}: runs {shlex.join(s.command)}" for s in plan.mcp if s.command]
    out += [f"mcp.{s.name}: connects to {s.url}" for s in plan.mcp if s.url]
    out += [f"settings.plugins: imports {name} (its register() adds tools)" for name in plan.settings.plugins]
    out += [f"task {t.id}: imports {t.step} (agent: python)" for t in plan.tasks if t.agent == "python"]
    return out
