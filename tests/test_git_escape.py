"""An agent holding only the file tools cannot make git run a command as the user.

A repository's ``.git`` holds what git executes: hooks, and config entries such as
``core.fsmonitor`` that the user's next ``git status`` runs. In a real run in a git
workspace, a model (a real HTTP server on 127.0.0.1) asks the file tools to plant such
commands every way it can; then the user runs ``git status`` and ``git commit`` there with
the real git: nothing the agent wrote runs, and ordinary files stay writable.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import of, run_model_plan
from llm_servers import Behaviour, running_server

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ws.parent), "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x",
           "GIT_COMMITTER_NAME": "u", "GIT_COMMITTER_EMAIL": "u@x"}
    return subprocess.run(["git", *args], cwd=ws, env=env, capture_output=True, text=True, timeout=60)


def test_an_agent_cannot_plant_a_command_that_git_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, marker = tmp_path / "ws", tmp_path / "ran"
    ws.mkdir()
    assert _git(ws, "init", "-q").returncode == 0
    config = (ws / ".git" / "config").read_text()
    run_it = f"touch {marker}; false"
    hook = f"#!/bin/sh\ntouch {marker}\n"
    attacks = [
        ("fs/write", {"path": ".git/config", "content": config + f'[core]\n\tfsmonitor = "{run_it}"\n'}),
        ("fs/append", {"path": ".git/config", "content": f'[core]\n\tfsmonitor = "{run_it}"\n'}),
        ("fs/edit", {"path": ".git/config", "old": "[core]", "new": f'[core]\n\tfsmonitor = "{run_it}"'}),
        ("fs/write", {"path": ".git/hooks/pre-commit", "content": hook}),
        ("fs/write", {"path": "./.git//hooks/post-commit", "content": hook}),
        ("fs/write", {"path": ".GIT/config", "content": "x"}),
        ("fs/write", {"path": "sub/.git", "content": "gitdir: ../planted\n"}),
        ("fs/read", {"path": ".git/config"}),
        ("fs/list", {"path": ".git/hooks"}),
    ]
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(Behaviour(content="", tool_calls=[(t.replace("/", "__"), a) for t, a in attacks]),
                    Behaviour(content="", tool_calls=[("fs__write", {"path": "src/work.txt", "content": "done"})]))
        server.default = Behaviour(content="finished")
        plan = {"name": "git", "defaults": {"provider": "openai", "model": "m", "base_url": server.url + "/v1",
                                            "restart": "temporary",
                                            "tools": ["fs/read", "fs/write", "fs/append", "fs/edit", "fs/list"]},
                "tasks": [{"id": "hostile", "agent": "llm", "instructions": "own the user"}]}
        result, evs = run_model_plan(ws, plan, tmp_path / "run", monkeypatch)
    assert result.exit_code == 0, result.output
    asked = {e["call_id"]: e["arguments"]["path"] for e in of(evs, "tool/requested", "hostile")}
    outcome = sorted((asked[e["call_id"]], e["ok"], e["error"]) for e in of(evs, "tool/result", "hostile"))
    assert ("src/work.txt", True, None) in outcome
    refused = [o for o in outcome if o[0] != "src/work.txt"]
    assert sorted(path for path, _, _ in refused) == sorted(a["path"] for _, a in attacks)
    assert all(not ok and "protected (inside .git" in str(error) for _, ok, error in refused), refused
    assert (ws / ".git" / "config").read_text() == config and not (ws / "sub").exists()
    assert (ws / "src" / "work.txt").read_text() == "done"
    # The user goes on with their repository.
    assert _git(ws, "status").returncode == 0
    assert _git(ws, "add", "src/work.txt").returncode == 0
    assert _git(ws, "commit", "-q", "-m", "agent work").returncode == 0
    assert not marker.exists()
