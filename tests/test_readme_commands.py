"""The README's first two commands: what they run, that CI runs the same test command, and
that the example run leaves ``git status`` clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import ROOT, invoke


def readme_commands() -> list[str]:
    """The lines of the README's first code block."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    return block.group(1).strip().splitlines()


def test_the_readme_opens_with_an_install_and_run_command_and_a_test_command() -> None:
    run, test = readme_commands()
    venv = "python3 -m venv .venv && .venv/bin/pip install -e "
    assert run.startswith(venv) and run.endswith(" && .venv/bin/agentctl run plans/hello.yaml")
    assert test.startswith(venv) and test.endswith(" && .venv/bin/python -m pytest")


def test_ci_runs_the_readme_test_command_itself() -> None:
    _, test = readme_commands()
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_example_run_leaves_git_status_clean(tmp_path: Path) -> None:
    for name in (".gitignore", "plans/hello.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, tmp_path / name)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "clone")
    proc = invoke("run", "plans/hello.yaml", "--no-ui", "--no-watch-plan", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "hello.txt").exists() and list((tmp_path / ".agentctl" / "runs").iterdir())
    assert git("status", "--porcelain", "--untracked-files=all") == ""
