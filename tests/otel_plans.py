"""The plan the OpenTelemetry tests trace, and the model replies it gets.

Used by ``tests/test_otel_trace.py`` (the translator, default suite) and
``tests/test_otel_phoenix.py`` (a real OTLP receiver, ``-m otel``): a script task whose
child agent appends to a file, and an LLM agent (a real HTTP model server on 127.0.0.1)
whose first tool call fails, second writes a secret the run knows, and whose last reply ends it.
"""

from __future__ import annotations

from pathlib import Path

from llm_servers import Behaviour, LLMServer

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
