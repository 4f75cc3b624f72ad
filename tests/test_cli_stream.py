"""Streamed replies: fragments logged as ``llm/delta`` while the model is still talking.

Real parts throughout: the model servers of ``llm_servers.py`` on 127.0.0.1 (served from a
thread, so a run in a subprocess or in this process can reach them), ``agentctl run`` and
``agentctl logs -f`` as real processes where the process boundary is the point (a follower
that sees text before the call ends; a SIGKILL mid-stream), in-process otherwise.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import events, invoke, of, running, wait_for
from llm_servers import Behaviour, LLMServer, running_server
from test_views import text_of

from agentctl.events.fold import fold
from agentctl.views.live import render_run

REPLY = "The quick brown fox jumps over the lazy dog, twice over."


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as srv:
        yield srv


def llm_plan(tmp_path: Path, url: str, *, provider: str = "ollama", extra: str = "") -> Path:
    plan = tmp_path / "plan.yaml"
    base = url + ("/v1" if provider == "openai" else "")
    plan.write_text(f"""\
name: talk
defaults: {{provider: {provider}, base_url: "{base}", model: m1, budget: {{max_steps: 20}}{extra}}}
tasks:
  - id: talker
    agent: llm
    instructions: say something
""")
    return plan


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> list[str]:
    """Lines of ``proc``'s stdout up to the first holding ``needle`` (the process is killed on timeout)."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if needle in line:
                return lines
    finally:
        timer.cancel()
    raise AssertionError(f"{needle!r} never came; got {lines}")


def running_plan(plan: Path, run_dir: Path, workspace: Path) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    """``agentctl run PLAN`` (plain lines, plan not watched) in the background, killed on the way out."""
    return running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir),
                   "--workspace", str(workspace), cwd=workspace)


@contextlib.contextmanager
def held_stream(tmp_path: Path, server: LLMServer, hold_after: int, *then: Behaviour,
                provider: str = "ollama") -> Iterator[tuple[subprocess.Popen[str], Path, threading.Event]]:
    """The LLM plan run in the background (``tmp_path/run``), its first reply streamed in
    8-character fragments and held after ``hold_after`` until the event is set (set on the way
    out, whatever happens, so the server never waits on a test that failed); ``then``: the
    server's next replies."""
    hold = threading.Event()
    server.then(Behaviour(content=REPLY, piece=8, hold=hold, hold_after=hold_after), *then)
    run_dir = tmp_path / "run"
    try:
        with running_plan(llm_plan(tmp_path, server.url, provider=provider), run_dir, tmp_path) as run:
            yield run, run_dir, hold
    finally:
        hold.set()


@pytest.mark.parametrize("provider", ["ollama", "openai"])
def test_logs_follow_shows_fragments_before_the_call_ends(tmp_path: Path, server: LLMServer, provider: str) -> None:
    with held_stream(tmp_path, server, 2, provider=provider) as (run, run_dir, hold):
        wait_for(run_dir, lambda evs: of(evs, "run/started"), timeout=30)
        with running("logs", str(run_dir), "-f", cwd=tmp_path, stdout=subprocess.PIPE, stderr=None) as follow:
            # The server holds the rest of the reply until this test has seen its start.
            seen = _read_until(follow, "The quic")
            assert not any("llm ollama ok" in line or "llm openai ok" in line for line in seen)
            assert not of(events(run_dir), "llm/result"), "the call must still be in flight"
            hold.set()
            out, _ = follow.communicate(timeout=60)
            assert follow.returncode == 0
        assert run.wait(60) == 0, run.stderr.read() if run.stderr else ""
    evs = events(run_dir)
    deltas = of(evs, "llm/delta", "talker")
    assert "".join(d["content"] for d in deltas) == REPLY
    (result,) = of(evs, "llm/result", "talker")
    assert result["reply"]["content"] == REPLY and result["provider"] == provider
    assert all(d["seq"] < result["seq"] for d in deltas)
    assert f"llm {provider} ok" in out
    # The live view's row of the agent shows the tail of what it has said so far.
    row = next(line for line in text_of(render_run(fold(evs, until_seq=deltas[0]["seq"])), width=160).splitlines()
               if "talker" in line)
    assert f"llm {provider}/m1" in row and row.rstrip().endswith(deltas[0]["content"].strip())


def test_fragments_are_coalesced_to_one_event_per_call_per_interval(tmp_path: Path, server: LLMServer) -> None:
    # 60 fragments 10 ms apart: about 0.6 s of streaming, about 7 intervals of 100 ms.
    text = "".join(f"w{i:02d} " for i in range(60))
    server.then(Behaviour(content=text, piece=4, gap=0.01))
    result = invoke("run", str(llm_plan(tmp_path, server.url)), "--no-ui", "--no-watch-plan", "--run-dir",
                    str(tmp_path / "run"), "--workspace", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    evs = events(tmp_path / "run")
    deltas = of(evs, "llm/delta", "talker")
    (reply,) = of(evs, "llm/result", "talker")
    assert "".join(d["content"] for d in deltas) == text
    assert 2 <= len(deltas) < 60
    # Every delta but the final flush is at least the interval after the one before (t is in ms).
    times = [d["t"] for d in deltas[:-1]]
    assert all(b - a >= 99 for a, b in zip(times, times[1:], strict=False)), times
    assert len(deltas) <= (reply["t"] - of(evs, "llm/requested", "talker")[0]["t"]) / 100 + 2


def test_text_held_by_the_interval_is_logged_while_the_model_pauses(tmp_path: Path, server: LLMServer) -> None:
    # Three fragments back to back, then the model pauses: they came within the call's first
    # interval, and no fragment follows to carry them out; the timer does, mid-call.
    with held_stream(tmp_path, server, 3) as (run, run_dir, hold):
        evs = wait_for(run_dir, lambda evs: "".join(d["content"] for d in of(evs, "llm/delta")) == REPLY[:24],
                       timeout=30)
        assert not of(evs, "llm/result")
        hold.set()
        assert run.wait(60) == 0
    evs = events(run_dir)
    deltas, (requested,) = of(evs, "llm/delta"), of(evs, "llm/requested")
    # However the three fragments fell into deltas: none before the call's first interval had
    # passed, none within an interval of the one before but the final flush (t is in ms).
    times = [requested["t"], *(d["t"] for d in deltas[:-1])]
    assert all(b - a >= 99 for a, b in zip(times, times[1:], strict=False)), times


def test_streaming_off_logs_no_fragments_and_the_same_result(tmp_path: Path, server: LLMServer) -> None:
    # 50 ms between fragments: the streamed reply outlasts the call's first interval.
    server.then(Behaviour(content=REPLY, piece=8, gap=0.05), Behaviour(content=REPLY, piece=8, gap=0.05))
    outcomes = {}
    for stream in (True, False):
        here = tmp_path / str(stream)
        here.mkdir()
        plan = llm_plan(here, server.url, extra=f", stream: {str(stream).lower()}")
        result = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(here / "run"),
                        "--workspace", str(here), cwd=here)
        assert result.returncode == 0, result.stdout
        evs = events(here / "run")
        outcomes[stream] = (len(of(evs, "llm/delta")), of(evs, "agent/done", "talker")[0]["result"])
    assert [r.body["stream"] for r in server.requests] == [True, False]
    assert outcomes[True][0] >= 1 and outcomes[False] == (0, REPLY) and outcomes[True][1] == REPLY


def test_resume_after_a_kill_mid_stream_gives_the_clean_result(tmp_path: Path, server: LLMServer) -> None:
    with held_stream(tmp_path, server, 2, Behaviour(content=REPLY, piece=8)) as (run, run_dir, _):
        wait_for(run_dir, lambda evs: of(evs, "llm/delta"), timeout=30)
        run.send_signal(signal.SIGKILL)
        run.wait(10)
    killed = events(run_dir)
    assert of(killed, "llm/delta") and not of(killed, "llm/result")
    resumed = invoke("run", "--resume", str(run_dir), "--no-ui", "--no-watch-plan", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    evs = events(run_dir)
    (done,) = of(evs, "agent/done", "talker")
    assert (done["status"], done["result"]) == ("ok", REPLY)
    # Asked again once, and the dead run's fragments did not count as a reply.
    assert len(server.requests) == 2
    assert [e["reply"]["content"] for e in of(evs, "llm/result")] == [REPLY]


def test_describe_shows_what_a_call_in_flight_has_streamed(tmp_path: Path, server: LLMServer) -> None:
    with held_stream(tmp_path, server, 2) as (run, run_dir, hold):
        wait_for(run_dir, lambda evs: of(evs, "llm/delta"), timeout=30)
        shown = invoke("describe", str(run_dir), "talker", cwd=tmp_path)
        as_json = json.loads(invoke("describe", str(run_dir), "talker", "-o", "json", cwd=tmp_path).stdout)
        hold.set()
        assert run.wait(60) == 0
    assert "streaming: The quic" in shown.stdout
    assert as_json["conversation"][0]["streamed"].startswith("The quic")
    assert as_json["conversation"][0]["ok"] is None
    after = json.loads(invoke("describe", str(run_dir), "talker", "-o", "json", cwd=tmp_path).stdout)
    assert after["conversation"][0]["streamed"] is None and after["conversation"][0]["reply"]["content"] == REPLY
