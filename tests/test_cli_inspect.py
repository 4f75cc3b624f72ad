"""``validate``, ``diff`` and ``send`` against plans and finished runs, without running anything new."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import FAILING, PLANS, invoke


def rows(stdout: str) -> dict[str, str]:
    """The diff table's rows by task id."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1]:
            out[cells[1]] = cells[2]
    return out


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("failed")
    plan = tmp / "failing.yaml"
    plan.write_text(FAILING)
    proc = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp / "run"), cwd=tmp)
    assert proc.returncode == 1, proc.stderr
    return plan, tmp / "run"


@pytest.mark.parametrize("plan", sorted(p.name for p in PLANS.iterdir()))
def test_validate_accepts_every_example_plan(plan: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentctl.plan.load import load_plan
    from agentctl.services.tools.docker_engine import check_docker

    # A key the user supplies (plans/providers.yaml's api_key_env); validation wants it set.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-example-not-a-real-key")
    missing = check_docker(load_plan(PLANS / plan))
    if missing:
        pytest.skip(f"{plan} needs a Docker engine: {missing}")
    proc = invoke("validate", str(PLANS / plan), cwd=tmp_path)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_diff_from_nothing_lists_every_task(tmp_path: Path) -> None:
    proc = invoke("diff", str(PLANS / "hello.yaml"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert rows(proc.stdout) == {"greeter": "spawn", "reporter": "wait for dependencies"}


def test_diff_against_a_failed_run(failed_run: tuple[Path, Path], tmp_path: Path) -> None:
    plan, run_dir = failed_run
    same = invoke("diff", str(plan), "--run", str(run_dir), cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert rows(same.stdout) == {"after": "blocked (a dependency failed)"}
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(FAILING.replace('[{fail: "on purpose"}]', "[{done: fixed}]"))
    proc = invoke("diff", str(fixed), "--run", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    # the fixed task runs again; its dependant waits for it; the finished one is left alone
    assert rows(proc.stdout) == {"breaks": "rerun", "after": "wait for dependencies"}


def test_send_to_a_finished_run_is_refused(failed_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run_dir = failed_run
    proc = invoke("send", "--run", str(run_dir), "--to", "fine", "hello", cwd=tmp_path)
    assert proc.returncode == 2 and "finished" in proc.stderr


def test_a_plan_that_is_a_directory_is_a_plan_error(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    for command in ("validate", "run", "diff"):
        proc = invoke(command, str(tmp_path / "dir.yaml"), cwd=tmp_path)
        assert proc.returncode == 2 and "dir.yaml" in proc.stderr and "Traceback" not in proc.stderr, command


def test_validate_lists_every_command_and_module_a_plan_runs(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from agentctl.cli.main import app

    (tmp_path / "steps_mod.py").write_text("def step(ctx):\n    return []\n")
    (tmp_path / "tools_mod.py").write_text("def register(registry):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "plan.yaml").write_text(
        "name: opts\n"
        "settings: {shell: true, plugins: [tools_mod]}\n"
        "mcp:\n"
        "  calc: {command: [python, -m, agentctl.examples.calc_server, --flag, 'two words']}\n"
        "  remote: {url: 'http://127.0.0.1:9/mcp'}\n"
        "tasks:\n"
        "  - {id: top, agent: python, step: 'steps_mod:step'}\n"
        "  - {id: other, agent: python, step: 'steps_mod:step'}\n"
    )
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "plan.yaml")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "runs code (see docs/security.md):",
        "  settings.shell: agents granted shell/run run any shell command in the workspace",
        "  mcp.calc: runs python -m agentctl.examples.calc_server --flag 'two words'",
        "  mcp.remote: connects to http://127.0.0.1:9/mcp",
        "  settings.plugins: imports tools_mod (its register() adds tools)",
        "  task top: imports steps_mod:step (agent: python)",
        "  task other: imports steps_mod:step (agent: python)",
    ]
    (tmp_path / "quiet.yaml").write_text("name: q\ntasks: [{id: t, agent: script, steps: [{done: ok}]}]\n")
    quiet = CliRunner().invoke(app, ["validate", str(tmp_path / "quiet.yaml")])
    assert quiet.output.splitlines()[1:] == ["runs no commands, plugins or python modules"]
