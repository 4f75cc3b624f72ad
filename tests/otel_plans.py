"""The plans the OpenTelemetry tests trace, and the model replies they get.

Used by ``tests/test_otel_trace.py`` and ``tests/test_otel_events.py`` (the translator and
the SDK, default suite) and ``tests/test_otel_phoenix.py`` (a real OTLP receiver, ``-m otel``).
:func:`traced_plan`: a script task whose child agent appends to a file, and an LLM agent (a
real HTTP model server on 127.0.0.1) whose first tool call fails, second writes a secret the
run knows, and whose last reply ends it. :func:`run_held`: a run whose held calls are
answered, one approved and one denied, whose agents talk, and whose last reply streams.
"""

from __future__ import annotations

import os
from pathlib import Path

from anyio.from_thread import start_blocking_portal
from cli_helpers import invoke, of, running, wait_for
from llm_servers import Behaviour, LLMServer, running_server

#: A secret the plan names in ``settings.secrets``: the log, and so every span, shows ``***``.
SECRET_ENV = "OTEL_TEST_SECRET"
SECRET = "s3cr3t-value-4711"


def traced_plan(tmp: Path, server: LLMServer) -> Path:
    """Write the plan into ``tmp`` and queue the model's replies on ``server``."""
    server.then(
        Behaviour(content="", tool_calls=[("fs__write", {"path": "/etc/nope", "content": "x"})], prompt_tokens=20),
        Behaviour(content="", tool_calls=[("fs__write", {"path": "out/w.txt", "content": f"key {SECRET}"})],
                  prompt_tokens=31, completion_tokens=9),
        Behaviour(content="wrote out/w.txt", completion_tokens=7),
    )
    plan = tmp / "traced.yaml"
    plan.write_text(f"""\
name: traced
settings: {{secrets: [{SECRET_ENV}]}}
defaults: {{provider: ollama, base_url: "{server.url}", model: m1, budget: {{max_tokens: 100000, max_steps: 50}}}}
tasks:
  - id: boss
    agent: script
    tools: [fs/write, fs/append]
    steps:
      - write: {{path: out/a.txt, content: "a\\n"}}
      - spawn: {{id: helper, agent: script, steps: [{{append: {{path: out/a.txt, content: "b\\n"}}}}]}}
      - wait: {{kind: done, timeout: 10}}
      - done: ok
  - id: writer
    agent: llm
    instructions: write the key to out/w.txt
    tools: [fs/write]
""")
    return plan


#: The held run's last reply, streamed slowly enough to come in several ``llm/delta``.
HELD_REPLY = "wrote a.py; b.py was refused, so I left it alone."
#: The held run's approval note and denial reason (the reason names the secret: logged ``***``).
HELD_NOTE, HELD_REASON = "looks fine", f"b.py holds {SECRET}"


def _held_plan(url: str) -> str:
    return f"""\
name: held
settings: {{secrets: [{SECRET_ENV}]}}
defaults: {{provider: openai, base_url: "{url}/v1", model: m, restart: temporary}}
tasks:
  - id: coder
    agent: llm
    instructions: write src/a.py and src/b.py
    tools: [fs/write]
    approve: ["fs/write:src/**"]
  - id: talker
    agent: script
    steps:
      - send: {{to: listener, kind: chat, body: {{note: "hello {SECRET}"}}}}
      - done: said
  - id: listener
    agent: script
    steps:
      - wait: {{kind: chat, timeout: 20}}
      - done: heard
"""


def run_held(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    """Run the held plan in ``tmp`` (``agentctl run ... ARGS`` in a process of its own), approve
    coder's first call with :data:`HELD_NOTE`, deny its second with :data:`HELD_REASON`;
    return the run directory once the run has ended ok."""
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(Behaviour(content="", tool_calls=[("fs__write", {"path": "src/a.py", "content": "a = 1\n"})]),
                    Behaviour(content="", tool_calls=[("fs__write", {"path": "src/b.py", "content": "b = 2\n"})]),
                    Behaviour(content=HELD_REPLY, piece=4, gap=0.04))
        (tmp / "plan.yaml").write_text(_held_plan(server.url))
        run = tmp / "run"
        env = {**os.environ, **(env or {}), SECRET_ENV: SECRET}
        with running("run", "plan.yaml", "--no-ui", "--no-watch-plan", "--run-dir", "run", *args, cwd=tmp,
                     env=env) as proc:
            first = of(wait_for(run, lambda e: of(e, "approval/requested")), "approval/requested")[0]["call_id"]
            approved = invoke("approve", "run", first, "--note", HELD_NOTE, cwd=tmp)
            assert approved.returncode == 0, approved.stderr
            second = of(wait_for(run, lambda e: len(of(e, "approval/requested")) == 2), "approval/requested")[1]
            denied = invoke("deny", "run", second["call_id"], "--reason", HELD_REASON, cwd=tmp)
            assert denied.returncode == 0, denied.stderr
            assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    return run
