"""An agent with file tools cannot plant code that agentctl imports from beside the plan.

The plan sits in the workspace with its plugin and its python step module beside it, as it
usually does. A hostile agent holding only the file tools tries to rewrite the plugin and the
step module, to shadow them with packages or extension modules of the same names, and writes
modules named after what agentctl imports while it loads the plan's code (a fresh
``agentctl run`` imported ``asyncio``, ``concurrent`` and the optional ``httpx_aiohttp``
then, with the plan's directory first on ``sys.path``). Then the user runs the plan again
in a new process, with a module that leaves a marker file planted beside the plan under every
name of the standard library, of every installed distribution and of httpx's optional
backends: none is imported, the plan's code is unchanged and still works.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import cli, events, invoke, of

from agentctl.plan.code import code_paths, import_plan_module, plan_code
from agentctl.services.tools.protect import protection

STEP = "from agentctl import actions as act\n\ndef worker(ctx):\n    return [act.done('ok', 'the plan author wrote this')]\n"
PLUGIN = ("def register(registry):\n    @registry.tool('beside/echo')\n    def echo(text: str) -> str:\n"
          "        \"\"\"Echo.\"\"\"\n        return text\n")
OPTIONAL = ("httpx_aiohttp", "socksio", "h2", "brotli", "brotlicffi", "zstandard", "trio", "certifi")


def _planted(marker: Path, name: str) -> str:
    """A module that leaves ``marker/name`` when imported."""
    return f"open({str(marker / name)!r}, 'w').close()\n"


def _attacks(marker: Path) -> list[tuple[str, dict[str, str]]]:
    return [
        ("fs/write", {"path": "asyncio.py", "content": _planted(marker, "asyncio")}),
        ("fs/write", {"path": "httpx_aiohttp.py", "content": _planted(marker, "httpx_aiohttp")}),
        ("fs/write", {"path": "tools_pc.py", "content": _planted(marker, "tools_pc")}),
        ("fs/edit", {"path": "steps_pc.py", "old": "the plan author wrote this", "new": "pwned"}),
        ("fs/write", {"path": "steps_pc/__init__.py", "content": _planted(marker, "steps_pc-package")}),
        ("fs/write", {"path": "tools_pc/__init__.py", "content": _planted(marker, "tools_pc-package")}),
        ("fs/write", {"path": "steps_pc.abi3.so", "content": "\x7fELF"}),
    ]


def _plan(ws: Path, marker: Path) -> Path:
    (ws / "steps_pc.py").write_text(STEP)
    (ws / "tools_pc.py").write_text(PLUGIN)
    attackers = [{"id": f"try{i}", "agent": "script", "tools": ["fs/write", "fs/edit"],
                  "steps": [{"call": {"tool": tool, "args": args}}, {"done": "ok"}]}
                 for i, (tool, args) in enumerate(_attacks(marker))]
    plan = ws / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "beside", "settings": {"plugins": ["tools_pc"]}, "defaults": {"restart": "temporary"},
        "tasks": [*attackers, {"id": "py", "agent": "python", "step": "steps_pc:worker"},
                  {"id": "caller", "agent": "script", "tools": ["beside/echo"],
                   "steps": [{"call": {"tool": "beside/echo", "args": {"text": "hi"}}}, {"done": "ok"}]}],
    }, sort_keys=False))
    return plan


def test_an_agent_cannot_plant_code_that_the_next_run_imports(tmp_path: Path) -> None:
    ws, marker = tmp_path / "ws", tmp_path / "markers"
    ws.mkdir()
    marker.mkdir()
    plan = _plan(ws, marker)
    before = {p.name: p.read_text() for p in (ws / "steps_pc.py", ws / "tools_pc.py")}
    # The attack, in this process (whose imports are all done already).
    first = invoke("run", plan.name, "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run1"), cwd=ws)
    evs = events(tmp_path / "run1")
    results = {e["call_id"]: e for e in of(evs, "tool/result")}
    asked = [(e["tool"], e["arguments"]["path"], results[e["call_id"]])
             for e in sorted((e for e in of(evs, "tool/requested") if e["agent_id"].startswith("try")),
                             key=lambda e: int(e["agent_id"][3:]))]
    # Any new module an agent may write; the plan's own code it may not touch.
    assert [(tool, path, r["ok"]) for tool, path, r in asked] == [
        (tool, args["path"], i < 2) for i, (tool, args) in enumerate(_attacks(marker))], first.stdout
    assert all("protected" in r["error"] for _, _, r in asked[2:])
    # What an agent could write under every name a run might import (the standard library's,
    # every installed distribution's, httpx's optional backends).
    names = {*sys.stdlib_module_names, *importlib.metadata.packages_distributions(), *OPTIONAL} - {"tools_pc", "steps_pc"}
    for name in names:
        if not (ws / f"{name}.py").exists():
            (ws / f"{name}.py").write_text(_planted(marker, name))
    # The next run, in a fresh process that imports everything anew.
    second = cli("run", plan.name, "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run2"), cwd=ws)
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr  # the attackers fail again
    assert sorted(p.name for p in marker.iterdir()) == []
    assert {p.name: p.read_text() for p in (ws / "steps_pc.py", ws / "tools_pc.py")} == before
    evs = events(tmp_path / "run2")
    assert of(evs, "agent/done", "py")[0]["result"] == "the plan author wrote this"
    assert of(evs, "tool/result", "caller")[0]["ok"]


def test_only_the_module_the_plan_names_is_found_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside ``plan_code`` a plain import of a name that is beside the plan but nowhere else
    fails; importing it as a module the plan names finds it; a package's submodules too."""
    (tmp_path / "agentctl_pc_beside.py").write_text("VALUE = 'beside'\n")
    (tmp_path / "agentctl_pc_pkg").mkdir()
    (tmp_path / "agentctl_pc_pkg" / "__init__.py").write_text("")
    (tmp_path / "agentctl_pc_pkg" / "steps.py").write_text("from . import helper\nVALUE = helper.VALUE\n")
    (tmp_path / "agentctl_pc_pkg" / "helper.py").write_text("VALUE = 'helper'\n")
    for name in ("agentctl_pc_beside", "agentctl_pc_pkg", "agentctl_pc_pkg.steps", "agentctl_pc_pkg.helper"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    path_before, finders_before = list(sys.path), list(sys.meta_path)
    with plan_code(tmp_path / "plan.yaml"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("agentctl_pc_beside")
        assert import_plan_module("agentctl_pc_beside").VALUE == "beside"
        assert import_plan_module("agentctl_pc_pkg.steps").VALUE == "helper"
        assert sys.path == path_before
    assert sys.meta_path == finders_before
    for name in ("agentctl_pc_beside", "agentctl_pc_pkg", "agentctl_pc_pkg.steps", "agentctl_pc_pkg.helper"):
        sys.modules.pop(name, None)


def test_the_code_paths_of_a_plan_are_protected_whatever_their_suffix(tmp_path: Path) -> None:
    paths = code_paths(tmp_path / "plan.yaml", ["steps_pc", "pkg.sub"])
    for rel in ("steps_pc.py", "steps_pc.pyc", "steps_pc.abi3.so", "steps_pc", "steps_pc/__init__.py", "pkg/sub.py",
                "pkg.py", "__pycache__/steps_pc.cpython-311.pyc"):
        assert protection(tmp_path, tmp_path / rel, paths) == "it steers this run", rel
    for rel in ("steps_pc2.py", "other.py", "sub/steps_pc.py", "pkg_sub.py"):
        assert protection(tmp_path, tmp_path / rel, paths) is None, rel


def test_a_module_a_live_edit_names_is_out_of_reach_from_that_save_on(tmp_path: Path) -> None:
    """While the run goes on, the user saves the plan naming ``early_pc`` before writing it
    (the save is refused: it does not import), then writes ``late_pc.py`` and saves a plan
    that runs it (applied: it is imported then). Agents added by the next save try to rewrite,
    shadow and plant both: every call is refused, both before and after the module exists."""
    from cli_helpers import interrupt, running, save, wait_for

    plan, run_dir = tmp_path / "live.yaml", tmp_path / "run"
    head = "name: live\ndefaults: {restart: temporary}\ntasks:\n"
    late = "  - {id: late, agent: python, step: 'late_pc:worker'}\n"
    attacks = [
        ("fs/edit", {"path": "late_pc.py", "old": "the plan author wrote this", "new": "pwned"}),
        ("fs/write", {"path": "late_pc.py", "content": "pwned = True\n"}),
        ("fs/write", {"path": "late_pc/__init__.py", "content": "pwned = True\n"}),
        ("fs/write", {"path": "late_pc.abi3.so", "content": "\x7fELF"}),
        ("fs/write", {"path": "early_pc.py", "content": "pwned = True\n"}),
        ("fs/write", {"path": "early_pc/__init__.py", "content": "pwned = True\n"}),
    ]
    attackers = "".join(
        f"  - {{id: try{i}, agent: script, tools: [{tool}], steps: [{{call: {{tool: {tool}, args: {yaml.safe_dump(args, default_flow_style=True).strip()}}}}}, {{done: ok}}]}}\n"
        for i, (tool, args) in enumerate(attacks))
    save(plan, head + "  - {id: idle, agent: script, steps: [{wait: never}]}\n")
    with running("run", str(plan), "--no-ui", "--keep-running", "--run-dir", str(run_dir), "--workspace", str(tmp_path),
                 cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/status", "idle"))
        save(plan, head + "  - {id: early, agent: python, step: 'early_pc:worker'}\n")
        wait_for(run_dir, lambda e: of(e, "plan/invalid"))
        (tmp_path / "late_pc.py").write_text(STEP)
        save(plan, head + late)
        wait_for(run_dir, lambda e: of(e, "agent/done", "late"))
        save(plan, head + late + attackers)
        evs = wait_for(run_dir, lambda e: len([r for r in of(e, "tool/result") if r["agent_id"].startswith("try")]) == len(attacks))
        interrupt(proc, run_dir)
    results = {e["agent_id"]: e for e in of(evs, "tool/result")}
    assert all(not results[f"try{i}"]["ok"] and "protected" in results[f"try{i}"]["error"] for i in range(len(attacks))), results
    assert (tmp_path / "late_pc.py").read_text() == STEP
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("late_pc", "early_pc"))) == ["late_pc.py"]
    assert of(evs, "agent/done", "late")[0]["result"] == "the plan author wrote this"
