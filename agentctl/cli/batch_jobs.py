"""One run of a batch: what to run (:class:`Job`), how (:func:`job_command`), and what came of it.

Used by ``agentctl batch`` (:mod:`agentctl.cli.batch`) for runs on this machine, and by
:mod:`agentctl.cli.batch_ray` inside a Ray task on a cluster node: a job is a normal
``agentctl run`` in a process of its own, with its own run directory and log, and its
outcome is read back from that log (:func:`outcome`), where the run ran. Imports no Ray.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

__all__ = ["Job", "Outcome", "STOP_GRACE", "Stop", "job_command", "job_env", "outcome", "run_all", "run_job", "run_job_here"]

#: The run's last stderr lines kept for an outcome whose run could not start.
_STDERR_LINES = 3
#: Bytes of a run's stderr kept (its end: the lines an outcome quotes).
_STDERR_KEPT = 65536
#: Seconds a run stopped as Ctrl-C stops it may take to end before it is killed.
STOP_GRACE = 30.0


@dataclass(frozen=True, slots=True)
class Job:
    """One run of a batch (plain values only: it travels to cluster nodes).

    Attributes:
        index: its number in the batch, from 1.
        name: how progress lines and the table name it (``03-plan`` or ``03-plan[n=2]``).
        plan: the plan file to run (a copy with the parameters filled in, if any).
        code_dir: the directory of the original plan: its step modules and plugins import from there.
        run_dir: the run's own directory (its ``events.jsonl``).
        workspace: the run's workspace.
        params: the parameters of this run.
    """

    index: int
    name: str
    plan: str
    code_dir: str
    run_dir: str
    workspace: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a job came to.

    Attributes:
        status: ``ok`` (exit 0), ``failed`` (a task failed, exit 1), ``error`` (the run
            could not start: a bad plan, exit 2), ``interrupted`` (exit 130) or ``lost``
            (its process or cluster worker died without a verdict).
        exit_code: the run's exit code (``None`` if lost).
        duration_s: wall time of the run's process.
        tokens: prompt and completion tokens of its LLM calls.
        tool_calls: its tool calls.
        failures: agent errors and failed calls, as its summary counts them.
        error: the first failure's text, or why the run did not start.
        node: the cluster node that ran it (``None`` on this machine).
    """

    job: Job
    status: str
    exit_code: int | None
    duration_s: float
    tokens: int = 0
    tool_calls: int = 0
    failures: int = 0
    error: str | None = None
    node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``batch -o json`` object of one run (docs/cli.md)."""
        out = asdict(self)
        job = out.pop("job")
        return {"index": job["index"], "name": job["name"], "plan": job["plan"], "params": job["params"],
                "run_dir": job["run_dir"], **out}


def job_command(job: Job) -> list[str]:
    """The ``agentctl run`` command line of ``job`` (plain lines, no plan watching)."""
    # The interpreter running this, not a script on PATH: a cluster node runs its own install.
    return [sys.executable, "-c", "from agentctl.cli.main import main; main()", "run", job.plan, "--no-ui", "--no-watch-plan",
            "--run-dir", job.run_dir, "--workspace", job.workspace]


def job_env(job: Job) -> dict[str, str]:
    """The environment of ``job``'s run: ours, with the original plan's directory importable."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": job.code_dir + (os.pathsep + path if path else "")}


_STATUS = {0: "ok", 1: "failed", 2: "error", 130: "interrupted"}


def outcome(job: Job, exit_code: int | None, duration_s: float, stderr: str, node: str | None = None) -> Outcome:
    """Read ``job``'s log into its :class:`Outcome` (its summary, else the run's last stderr lines)."""
    from ..events.fold import state_at
    from ..views.summary import summarize

    status = _STATUS.get(exit_code, "lost") if exit_code is not None else "lost"
    why = " / ".join(stderr.strip().splitlines()[-_STDERR_LINES:]) or None
    events = Path(job.run_dir) / "events.jsonl"
    if not events.exists() or status == "error":
        return Outcome(job, status, exit_code, round(duration_s, 3), error=why, node=node)
    s = summarize(state_at(events))
    first = s.failures[0].error if s.failures else (why if status != "ok" else None)
    return Outcome(job, status, exit_code, round(duration_s, 3), tokens=s.prompt_tokens + s.completion_tokens,
                   tool_calls=s.tool_calls, failures=len(s.failures), error=first, node=node)


def run_job(job: Job, node: str | None = None) -> Outcome:
    """Run ``job`` to its end in this thread (a cluster task's body) and read its outcome."""
    Path(job.workspace).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(job_command(job), env=job_env(job), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    code = proc.returncode if proc.returncode >= 0 else None
    return outcome(job, code, time.perf_counter() - start, proc.stderr, node)


@dataclass(frozen=True, slots=True)
class Stop:
    """How a batch on this machine is stopped: ``asked`` (a first Ctrl-C or SIGTERM) stops each
    running run as Ctrl-C stops one and starts no more; ``forced`` (a second) kills them."""

    asked: anyio.Event = field(default_factory=anyio.Event)
    forced: anyio.Event = field(default_factory=anyio.Event)


async def run_job_here(job: Job, stop: Stop) -> Outcome:
    """Run ``job`` in a child process to its end, or until ``stop`` ends it, and read its outcome.

    Asked to stop, the run gets SIGINT: it logs its end (``interrupted``, exit 130) and can be
    resumed; it is killed if ``stop`` is forced or it has not ended within :data:`STOP_GRACE`
    seconds. The child runs in a session of its own, so a Ctrl-C at the terminal reaches the
    batch alone, which stops each run once; cancelled, it is killed (anyio's process does so).
    """
    Path(job.workspace).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    err = bytearray()
    async with await anyio.open_process(job_command(job), env=job_env(job), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True) as proc:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_when, stop, proc)
            assert proc.stderr is not None
            async for chunk in proc.stderr:
                err += chunk
                del err[:-_STDERR_KEPT]
            await proc.wait()
            tg.cancel_scope.cancel()
    code = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else None
    return outcome(job, code, time.perf_counter() - start, err.decode("utf-8", "replace"))


async def _stop_when(stop: Stop, proc: anyio.abc.Process) -> None:
    await stop.asked.wait()
    with contextlib.suppress(ProcessLookupError):  # it ended (and was reaped) before its turn
        proc.send_signal(signal.SIGINT)
    with anyio.move_on_after(STOP_GRACE):
        await stop.forced.wait()
    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
        proc.kill()


async def run_all(jobs: list[Job], parallel: int, run_one: Callable[[Job], Awaitable[Outcome]],
                  progress: Callable[[Outcome], None], started: Callable[[Job], None] | None = None,
                  stop: Stop | None = None) -> list[Outcome]:
    """``run_one`` every job, at most ``parallel`` at once; ``started`` hears of each as it gets
    its slot (a cluster: as it is submitted), ``progress`` as it ends. Once ``stop`` is asked,
    a job still waiting for its slot is not started: its outcome is ``interrupted``, no exit code."""
    limiter = anyio.CapacityLimiter(parallel)
    outcomes: list[Outcome] = []

    async def one(job: Job) -> None:
        async with limiter:
            if stop is not None and stop.asked.is_set():
                done = Outcome(job, "interrupted", None, 0.0, error="not started: the batch was stopped")
            else:
                if started is not None:
                    started(job)
                done = await run_one(job)
        outcomes.append(done)
        progress(done)

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(one, job)
    return outcomes
