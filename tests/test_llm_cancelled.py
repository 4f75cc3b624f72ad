"""An LLM call cut short by its agent's ``max_seconds`` (a model that streams and never ends):
its ``llm/result`` says it was cancelled, without blaming the run's shutdown.

A real streaming OpenAI-compatible server on 127.0.0.1 and the real CLI, in this process.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import of, run_model_plan
from llm_servers import Behaviour, running_server


def test_a_call_cut_short_by_its_agents_max_seconds_says_so_not_the_runs_shutdown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    never = threading.Event()
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as server:
        server.then(Behaviour(content="never whole", hold=never, hold_after=1))
        plan = {"name": "cut", "defaults": {"provider": "openai", "model": "m", "base_url": server.url + "/v1",
                                            "restart": "temporary", "budget": {"max_seconds": 1}},
                "tasks": [{"id": "talker", "agent": "llm", "instructions": "talk"}]}
        result, evs = run_model_plan(tmp_path, plan, tmp_path / "run", monkeypatch)
        never.set()
    assert result.exit_code == 1, result.output
    (cut,) = of(evs, "llm/result", "talker")
    assert (cut["ok"], cut["error_type"]) == (False, "cancelled")
    assert cut["error"] == "cancelled: the run shut down or the agent ended (its max_seconds, a stop)"
    assert of(evs, "agent/done", "talker")[0]["reason"] == "max_seconds"
