"""settings.executor and --ray without a cluster: the plan's shape, the one-line error without
the extra, and a plain run that never imports Ray (the cluster tests are ``pytest -m ray``)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import PLANS, invoke

from agentctl.errors import PlanError
from agentctl.plan.load import load_plan

REMOTE = """\
name: remote
settings:
  shell: true
  executor:
    kind: ray
    address: 127.0.0.1:6379
    tools: {"shell/run": {num_cpus: 0.5, resources: {docker: 1}}}
tasks:
  - id: a
    agent: script
    steps: [{call: {tool: shell/run, args: {command: "true"}}}]
"""


def test_the_executor_is_read_into_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(REMOTE)
    executor = load_plan(path).settings.executor
    assert (executor.kind, executor.address, executor.shared_workspace) == ("ray", "127.0.0.1:6379", False)
    request = executor.tools["shell/run"]
    assert (request.num_cpus, dict(request.resources), request.max_retries) == (0.5, {"docker": 1.0}, None)


@pytest.mark.parametrize("bad, where", [
    ("address: nowhere", "settings.executor.address"),
    ("kind: spark", "settings.executor.kind"),
    ("tools: {shell/run: {max_retries: -1}}", "settings.executor.tools.shell/run.max_retries"),
])
def test_a_bad_executor_names_its_key(tmp_path: Path, bad: str, where: str) -> None:
    path = tmp_path / "p.yaml"
    key, _, value = bad.partition(": ")
    lines = [line for line in REMOTE.splitlines() if not line.strip().startswith(f"{key}:")]
    at = lines.index("  executor:") + 1
    path.write_text("\n".join([*lines[:at], f"    {bad}", *lines[at:]]) + "\n")
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert caught.value.path is not None and where in str(caught.value.to_dict())


def test_without_the_extra_a_ray_run_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does without the extra
    (tmp_path / "p.yaml").write_text(REMOTE)
    result = invoke("run", "p.yaml", "--no-ui", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the ray executor needs Ray, an optional extra: pip install 'agentctl[ray]'"]
    # --ray asks for it too, on a plan that says nothing of executors.
    result = invoke("run", str(PLANS / "hello.yaml"), "--no-ui", "--ray", "auto", cwd=tmp_path)
    assert result.returncode == 2 and "pip install 'agentctl[ray]'" in result.stderr
    assert not (tmp_path / ".agentctl").exists()  # refused before any run started


def test_a_bad_ray_address_is_refused(tmp_path: Path) -> None:
    result = invoke("run", str(PLANS / "hello.yaml"), "--no-ui", "--ray", "http://x", cwd=tmp_path)
    assert result.returncode == 2
    assert "--ray: expected auto, local, HOST:PORT or ray://HOST:PORT, got 'http://x'" in result.stderr


def test_a_local_run_never_imports_ray(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom agentctl.cli.main import app\n"
        f"r = CliRunner().invoke(app, ['run', {str(PLANS / 'hello.yaml')!r}, '--no-ui'])\n"
        "print(r.exit_code, 'ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["0", "False"], out.stderr


def test_a_cluster_nobody_answers_at_is_one_line_and_exit_2_at_once(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    result = invoke("run", str(PLANS / "hello.yaml"), "--no-ui", "--ray", f"127.0.0.1:{port}", cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: settings.executor: cannot reach the Ray cluster at '127.0.0.1:{port}': Connection refused" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bad, where", [
    ("    tools: {shell/run: {resources: {docker: -1}}}", "settings.executor.tools.shell/run.resources.docker"),
    ("    tools: {shell/run: {num_cpus: many}}", "settings.executor.tools.shell/run.num_cpus"),
    ("    tools: [shell/run]", "settings.executor.tools"),
    ("    shared_workspace: maybe", "settings.executor.shared_workspace"),
    ("    cpus: 2", "settings.executor.cpus"),
])
def test_a_run_of_a_plan_with_a_bad_executor_is_one_line_and_exit_2(tmp_path: Path, bad: str, where: str) -> None:
    lines = [line for line in REMOTE.splitlines() if not line.startswith("    tools:")]
    at = lines.index("  executor:") + 1
    (tmp_path / "p.yaml").write_text("\n".join([*lines[:at], bad, *lines[at:]]) + "\n")
    result = invoke("run", "p.yaml", "--no-ui", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"invalid plan: p.yaml:{at + 1}: at {where}"), line
    assert not (tmp_path / ".agentctl").exists()  # refused before any run started
