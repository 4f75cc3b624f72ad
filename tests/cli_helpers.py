"""Helpers for tests that drive the ``agentctl`` command, in this process or in subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, AnyStr

from agentctl.events.reader import read_events

ROOT = Path(__file__).parent.parent
PLANS = ROOT / "plans"
PLUGINS = ROOT / "tests" / "plugins"
AGENTCTL = str(Path(sys.executable).parent / "agentctl")

Events = list[dict[str, Any]]


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``agentctl ARGS`` to completion in a process of its own (the real entry point).

    For what needs the process boundary: signals, exit codes of the executable, a run that
    another command (``watch``, ``send``) talks to. Everything else uses :func:`invoke`.
    """
    return subprocess.run([AGENTCTL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def run_plan(cwd: Path, *, fault: str | None = None, resume: bool = False) -> subprocess.CompletedProcess[str]:
    """Run (or ``resume``) ``cwd/plan.yaml`` in the run dir ``cwd/run``, in a process of its
    own with none of the caller's ``AGENTCTL_*`` settings; ``fault``: its ``AGENTCTL_FAULT``
    (see ``agentctl.cli.faults``), which kills it there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
    if fault is not None:
        env["AGENTCTL_FAULT"] = fault
    where = ("--resume", "run") if resume else ("--run-dir", "run")
    return subprocess.run([AGENTCTL, "run", "plan.yaml", "--no-ui", "--no-watch-plan", *where], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def invoke(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``agentctl ARGS`` in this process (Typer's ``CliRunner``) in directory ``cwd``.

    The result reads like :func:`cli`'s (``returncode``, ``stdout``, ``stderr``); an
    exception the CLI does not turn into an exit code propagates, traceback and all.
    """
    from typer.testing import CliRunner

    from agentctl.cli.main import app

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess([AGENTCTL, *args], result.exit_code, result.stdout, result.stderr)


def start(*args: str, cwd: Path, **popen: Any) -> subprocess.Popen[str]:
    """Start ``agentctl ARGS`` in the background (stderr kept for failure messages; ``popen``:
    other ``Popen`` arguments, or these replaced)."""
    options = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([AGENTCTL, *args], cwd=cwd, **options)


@contextmanager
def reaped(proc: subprocess.Popen[AnyStr], grace: float = 0) -> Iterator[subprocess.Popen[AnyStr]]:
    """``proc``, killed on the way out if it is still running and waited for, its pipes closed,
    whatever happened meanwhile: a failed test leaves no process behind.

    ``grace``: seconds a server gets to exit after SIGTERM before it is killed.
    """
    try:
        yield proc
    finally:
        with proc:  # closes the pipes and waits
            if grace and proc.poll() is None:
                proc.terminate()
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
            proc.kill()


@contextmanager
def running(*args: str, cwd: Path, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """``agentctl ARGS`` in the background (as :func:`start`), :func:`reaped` on the way out."""
    with reaped(start(*args, cwd=cwd, **popen)) as proc:
        yield proc


def ends(proc: subprocess.Popen[str], code: int, sig: signal.Signals | None = None) -> None:
    """Send ``sig`` (if any) to ``proc``, then assert it exits with ``code`` within 20 s."""
    if sig is not None:
        proc.send_signal(sig)
    got = proc.wait(20)
    assert got == code, (got, proc.stderr.read() if proc.stderr else "")


def events(run_dir: Path) -> Events:
    """The events a run has written so far (a torn final line is left out)."""
    path = run_dir / "events.jsonl"
    return list(read_events(path)) if path.exists() else []


def wait_for(run_dir: Path, check: Callable[[Events], Any], timeout: float = 20) -> Events:
    """Poll the run's events until ``check`` holds; fail with the latest events at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = events(run_dir)
        if check(found):
            return found
        time.sleep(0.05)
    tail = [(e["seq"], e["type"], e.get("agent_id")) for e in events(run_dir)[-10:]]
    raise AssertionError(f"timed out waiting; last events: {tail}")


def of(evs: Sequence[dict[str, Any]], type: str, agent: str | None = None) -> Events:
    """The events of one type (and agent)."""
    return [e for e in evs if e["type"] == type and (agent is None or e.get("agent_id") == agent)]


def agent_row(line: str) -> str:
    """A line of the live view's agent table without its tree guides (``├─ ``, ``│  ``, …)."""
    return line.lstrip(" ├└│─")


def save(path: Path, text: str) -> None:
    """Save like an editor: write a temporary file, then rename it over the target."""
    tmp = path.with_name(path.name + ".swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def interrupt(proc: subprocess.Popen[str], run_dir: Path) -> Events:
    """Ctrl-C a running ``agentctl run`` (one :func:`running` started): it must exit 130 with
    ``run/finished`` interrupted."""
    ends(proc, 130, signal.SIGINT)
    evs = events(run_dir)
    assert (evs[-1]["type"], evs[-1]["reason"]) == ("run/finished", "interrupted")
    return evs


#: A plan whose first task fails, whose second depends on it, and whose third is fine.
FAILING = """\
name: failing
defaults: {restart: temporary}
tasks:
  - id: breaks
    agent: script
    steps: [{fail: "on purpose"}]
  - id: after
    agent: script
    depends_on: [breaks]
    steps: [{done: never}]
  - id: fine
    agent: script
    steps: [{done: ok}]
"""


#: A plan whose one task waits for an ``open`` message (``agentctl send --kind open``).
GATE = """\
name: gate
tasks:
  - id: gate
    agent: script
    steps: [{wait: open}, {done: opened}]
"""


def run_model_plan(ws: Path, plan: dict[str, Any], run_dir: Path, monkeypatch: Any) -> tuple[Any, Events]:
    """Write ``plan`` to ``ws/plan.yaml`` and ``agentctl run`` it in this process from ``ws``
    (its OpenAI-compatible model's key ``sk-test``); Click's result and the run's events."""
    import yaml
    from typer.testing import CliRunner

    from agentctl.cli.main import app

    (ws / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.chdir(ws)
    result = CliRunner().invoke(app, ["run", "plan.yaml", "--no-ui", "--run-dir", str(run_dir)])
    log = run_dir / "events.jsonl"
    return result, list(read_events(log)) if log.exists() else []
