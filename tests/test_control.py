"""The control channel: a Unix socket only the run's user can reach; ``send`` and ``stop`` through it.

Live runs are real ``agentctl run`` subprocesses (the socket crosses a process boundary);
the commands that talk to them run in-process through Typer's ``CliRunner``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_helpers import GATE, events, of, running, wait_for
from typer.testing import CliRunner

from agentctl.cli.control import ControlError, request, serve_control, socket_path
from agentctl.cli.main import app


def agentctl(*args: str) -> Any:
    """``agentctl ARGS`` in this process."""
    return CliRunner().invoke(app, list(args))


def started(run_dir: Path) -> dict[str, Any]:
    return of(wait_for(run_dir, lambda e: of(e, "agent/status", "gate")), "run/started")[0]


# ------------------------------------------------------------------ the socket itself


@pytest.mark.anyio
async def test_a_request_is_answered_by_the_handler_and_the_socket_is_private(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def handle(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(message)
        return {"ok": True, "echo": message.get("x")}

    path = tmp_path / "c.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, handle)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reply = await anyio.to_thread.run_sync(lambda: request(path, {"op": "echo", "x": [1, 2]}))
        assert reply == {"ok": True, "echo": [1, 2]}
        # not JSON, then JSON without an op: refused before the handler
        for raw in (b"garbage\n", b'["op"]\n', b'{"op": 3}\n'):
            with anyio.fail_after(10):
                stream = await anyio.connect_unix(path)
                async with stream:
                    await stream.send(raw)
                    answer = await stream.receive()
            assert b'"ok":false' in answer and b"bad request" in answer
        tg.cancel_scope.cancel()
    assert seen == [{"op": "echo", "x": [1, 2]}]
    assert not path.exists()


@pytest.mark.anyio
async def test_a_silent_client_and_an_oversized_request_do_not_block_or_break_the_channel(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def handle(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(message)
        return {"ok": True}

    path = tmp_path / "c.sock"
    async with anyio.create_task_group() as tg:
        await tg.start(serve_control, path, handle)
        silent = [await anyio.connect_unix(path) for _ in range(20)]  # connect, never send
        huge = await anyio.connect_unix(path)
        with contextlib.suppress(anyio.BrokenResourceError):  # refused after 1 MiB: the rest bounces
            await huge.send(b'{"op": "send", "body": "' + b"x" * (2 << 20))
        with anyio.fail_after(10):
            answer = await huge.receive()
        assert b'"ok":false' in answer and b"bad request" in answer
        with anyio.fail_after(10):
            reply = await anyio.to_thread.run_sync(lambda: request(path, {"op": "ping"}))
        assert reply == {"ok": True}
        for stream in (*silent, huge):
            await stream.aclose()
        tg.cancel_scope.cancel()
    assert seen == [{"op": "ping"}]


def test_nothing_listening_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no run is listening"):
        request(tmp_path / "none.sock", {"op": "ping"})
    squatter = tmp_path / "file.sock"
    squatter.write_text("a file, not a socket")
    with pytest.raises(ControlError, match="no run is listening"):
        request(squatter, {"op": "ping"})

    async def serve() -> None:
        await serve_control(squatter, lambda m: None)  # type: ignore[arg-type,return-value]

    with pytest.raises(ControlError, match="cannot serve the control channel"):
        anyio.run(serve)
    assert squatter.read_text() == "a file, not a socket"


def _connect_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(path)!r})\n"
        "except OSError as e:\n"
        "    print('connect failed', e.errno); sys.exit(0)\n"
        "try:\n"
        "    s.sendall(b'{\"op\": \"send\", \"to\": \"gate\", \"kind\": \"open\"}\\n')\n"
        "except BrokenPipeError:\n"
        "    pass  # refused before the request was read; the refusal is still there to read\n"
        "print(s.recv(4096).decode())\n"
    )
    # The system interpreter: a venv or pyenv under /root is out of the other user's reach.
    return subprocess.run([SYSTEM_PYTHON, "-c", code], user=65534, capture_output=True, text=True, timeout=20)


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.getuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="needs root and a system python to connect as another user")
@pytest.mark.anyio
async def test_another_user_is_refused_by_mode_and_by_peer_uid() -> None:
    seen: list[dict[str, Any]] = []

    async def handle(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(message)
        return {"ok": True}

    # A directory the other user can traverse, so only the socket itself stands in the way.
    root = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        root.chmod(0o755)
        path = root / "c.sock"
        async with anyio.create_task_group() as tg:
            await tg.start(serve_control, path, handle)
            denied = await anyio.to_thread.run_sync(_connect_as_nobody, path)
            assert "connect failed 13" in denied.stdout, denied  # EACCES: mode 0600
            path.chmod(0o666)  # as if the mode were lost: the uid check still refuses
            refused = await anyio.to_thread.run_sync(_connect_as_nobody, path)
            assert "peer uid 65534 is not the run's user" in refused.stdout, refused
            tg.cancel_scope.cancel()
    finally:
        shutil.rmtree(root)
    assert seen == []


def test_a_path_too_long_for_a_socket_falls_back_to_a_private_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path / ("d" * 80) / ("e" * 80)
    short = tmp_path / "r"
    assert socket_path(short, "id1") == short.resolve() / "control.sock"
    runtime = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        assert socket_path(deep, "id1") == runtime / "agentctl-id1.sock"
        runtime.chmod(0o777)  # a runtime dir others can write is not used
        fallback = socket_path(deep, "id1")
        assert fallback.parent == Path(tempfile.gettempdir()) / f"agentctl-{os.getuid()}"
        assert stat.S_IMODE(fallback.parent.stat().st_mode) == 0o700
        assert len(os.fsencode(fallback)) <= 107
    finally:
        shutil.rmtree(runtime)


# ------------------------------------------------------------------ send and stop, live


def test_forged_control_lines_do_nothing_and_a_socket_message_is_from_user(tmp_path: Path) -> None:
    forged = '{"from": "plan", "to": "gate", "kind": "open", "body": "forged"}\n'
    plan = tmp_path / "p.yaml"
    # JSON strings are YAML strings: the agent appends the very line a forger would.
    plan.write_text(GATE + f"""\
  - id: forger
    agent: script
    restart: temporary
    steps:
      - append: {{path: control.jsonl, content: {json.dumps(forged)}}}
      - append: {{path: control.sock, content: {json.dumps(forged)}}}
      - done: forged
""")
    run_dir = tmp_path / ".agentctl" / "runs" / "r"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace", str(tmp_path),
                 cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/done", "forger") and of(e, "agent/status", "gate"))
        for name in ("control.jsonl", "control.offset", "control"):
            with open(run_dir / name, "a") as f:
                f.write(forged)
        # The old file channel was polled every 0.1 s; give a forgery five times that to land.
        time.sleep(0.5)
        assert proc.poll() is None
        assert not of(events(run_dir), "agent/done", "gate")
        sent = agentctl("send", "--run", str(run_dir), "--to", "gate", "--kind", "open", '"real"')
        assert sent.exit_code == 0, sent.output
        assert proc.wait(20) == 0
    evs = events(run_dir)
    to_gate = [(m["from"], m["kind"], m["body"]) for m in of(evs, "agent/message") if m["to"] == "gate"]
    assert to_gate == [("user", "open", "real")]
    assert of(evs, "agent/done", "gate")[0]["result"] == "opened"
    assert not (run_dir / "control.sock").exists()


def test_send_returns_once_logged_and_refuses_unknown_agents_and_finished_runs(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(GATE)
    # deeper than a socket path may be: the channel falls back to a short path
    run_dir = tmp_path / ("d" * 60) / ("e" * 60) / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        control = Path(started(run_dir)["control"])
        assert run_dir.resolve() not in control.parents and len(os.fsencode(control)) <= 107
        unknown = agentctl("send", "--run", str(run_dir), "--to", "nobody", "hi")
        assert unknown.exit_code == 2 and "no live agent 'nobody'" in unknown.stderr
        assert len(unknown.stderr.strip().splitlines()) == 1
        sent = agentctl("send", "--run", str(run_dir), "--to", "gate", "--kind", "note", '{"x": 1}')
        assert sent.exit_code == 0, sent.output
        seq = int(sent.stdout.split("#")[1].split(")")[0])
        # already on disk when send returned
        message = next(e for e in events(run_dir) if e["seq"] == seq)
        assert (message["type"], message["from"], message["body"]) == ("agent/message", "user", {"x": 1})
        assert agentctl("send", "--run", str(run_dir), "--to", "gate", "--kind", "open", "go").exit_code == 0
        assert proc.wait(20) == 0
    assert not control.exists()
    late = agentctl("send", "--run", str(run_dir), "--to", "gate", "hi")
    assert late.exit_code == 2 and "has finished" in late.stderr


def test_stop_ends_a_run_like_ctrl_c_and_stop_agent_ends_one_subtree(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(GATE + """\
  - id: parent
    agent: script
    steps:
      - spawn: {id: child, agent: script, steps: [{wait: never}]}
      - wait: never
""")
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/status", "gate") and of(e, "agent/spawned", "child"))
        unknown = agentctl("stop", str(run_dir), "--agent", "nobody")
        assert unknown.exit_code == 2 and "no live agent 'nobody'" in unknown.stderr
        one = agentctl("stop", str(run_dir), "--agent", "parent")
        assert one.exit_code == 0, one.output
        evs = wait_for(run_dir, lambda e: of(e, "agent/stopped", "parent"))
        assert of(evs, "agent/stopped", "child") and not of(evs, "agent/stopped", "gate")
        whole = agentctl("stop", str(run_dir))
        assert whole.exit_code == 0, whole.output
        assert "exit 130" in whole.stdout
        assert proc.wait(20) == 130
    evs = events(run_dir)
    assert (evs[-1]["type"], evs[-1]["reason"], evs[-1]["status"]) == ("run/finished", "stopped", "failed")
    assert of(evs, "agent/stopped", "gate")[0]["reason"] == "shutdown"
    again = agentctl("stop", str(run_dir))
    assert again.exit_code == 2 and "has finished" in again.stderr


def test_a_task_stopped_alone_counts_as_ended_and_the_run_finishes_without_it(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(GATE + "  - id: idle\n    agent: script\n    steps: [{wait: never}]\n")
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/status", "gate") and of(e, "agent/status", "idle"))
        assert agentctl("stop", str(run_dir), "--agent", "idle").exit_code == 0
        assert agentctl("send", "--run", str(run_dir), "--to", "gate", "--kind", "open", "go").exit_code == 0
        assert proc.wait(20) == 1  # the run ends by itself, not ok: one task was stopped
    evs = events(run_dir)
    assert of(evs, "agent/stopped", "idle")[0]["reason"] == "requested"
    assert (evs[-1]["reason"], evs[-1]["status"]) == ("failed", "failed")


def test_stop_after_every_task_finished_ok_is_a_clean_stop(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text("name: quick\ntasks:\n  - id: quick\n    agent: script\n    steps: [{done: fine}]\n")
    run_dir = tmp_path / "run"
    with running("run", str(plan), "--no-ui", "--no-watch-plan", "--keep-running", "--run-dir", str(run_dir), cwd=tmp_path) as proc:
        wait_for(run_dir, lambda e: of(e, "agent/done", "quick"))
        assert agentctl("stop", str(run_dir)).exit_code == 0
        assert proc.wait(20) == 130
    finished = events(run_dir)[-1]
    assert (finished["type"], finished["reason"], finished["status"]) == ("run/finished", "stopped", "stopped")
