"""Several providers in one plan: ``providers:`` and ``model: <provider>/<model>``.

Two real model servers on 127.0.0.1 (an Ollama one and an OpenAI-compatible one, served
from a thread) and the real CLI, in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from cli_helpers import events, invoke, of
from llm_servers import Behaviour, LLMServer, running_server
from test_views import text_of

from agentctl.cli.providers import providers_for_plan
from agentctl.errors import PolicyError
from agentctl.events.fold import fold
from agentctl.plan import parse_plan
from agentctl.policy import UNLIMITED, Grant, Policy, grant_child
from agentctl.views.live import render_run

SECRET = "acme-7f3c9a1e5b2d4068"
KEY_ENV = "ACME_CLOUD_CREDS"  # not a secret-looking name: api_key_env alone makes its value one


@pytest.fixture
def servers() -> Iterator[tuple[LLMServer, LLMServer]]:
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running_server()) as local, \
            portal.wrap_async_context_manager(running_server()) as cloud:
        yield local, cloud


def two_provider_plan(tmp_path: Path, local: LLMServer, cloud: LLMServer, tasks: str) -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""\
name: two providers
providers:
  local: {{kind: ollama, base_url: "{local.url}"}}
  cloud: {{kind: openai, base_url: "{cloud.url}/v1", api_key_env: {KEY_ENV}}}
policy:
  model_rank: [cloud/big, local/small]
defaults: {{budget: {{max_steps: 20}}}}
tasks:
{tasks}""")
    return plan


LLM_TASKS = """\
  - {id: planner, agent: llm, model: cloud/big, instructions: plan it}
  - {id: worker, agent: llm, model: local/small, instructions: do it}
  - {id: helper, agent: llm, model: "local/small", instructions: help}
"""


def test_each_provider_gets_exactly_its_calls_and_the_key_never_reaches_a_log(
        tmp_path: Path, servers: tuple[LLMServer, LLMServer], monkeypatch: pytest.MonkeyPatch) -> None:
    local, cloud = servers
    monkeypatch.setenv(KEY_ENV, SECRET)
    local.default = Behaviour(content="done locally")
    # The cloud model repeats the key, streamed in pieces that split it: a hostile reply.
    cloud.default = Behaviour(content=f"the key is {SECRET}, done", piece=5)
    plan = two_provider_plan(tmp_path, local, cloud, LLM_TASKS)
    result = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run"),
                    "--workspace", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    assert [(r.path, r.body["model"]) for r in local.requests] == [("/api/chat", "small")] * 2
    assert [(r.path, r.body["model"]) for r in cloud.requests] == [("/v1/chat/completions", "big")]
    assert cloud.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert "authorization" not in local.requests[0].headers

    evs = events(tmp_path / "run")
    asked = {e["agent_id"]: (e["provider"], e["model"]) for e in of(evs, "llm/requested")}
    assert asked == {"planner": ("cloud", "big"), "worker": ("local", "small"), "helper": ("local", "small")}
    assert {e["agent_id"]: e["provider"] for e in of(evs, "llm/result")} == {
        "planner": "cloud", "worker": "local", "helper": "local"}
    assert {e["agent_id"]: e["model"] for e in of(evs, "agent/spawned") if e["agent_id"] != "plan"} == {
        "planner": "cloud/big", "worker": "local/small", "helper": "local/small"}
    assert of(evs, "agent/done", "planner")[0]["result"] == "the key is ***, done"
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and SECRET[:10].encode() not in data, path

    # The live view names the provider of a call in flight.
    asked_seq = of(evs, "llm/requested", "planner")[0]["seq"]
    assert "llm cloud/big" in text_of(render_run(fold(evs, until_seq=asked_seq)), width=200)


def test_a_child_never_gets_a_model_ranked_above_its_parents_across_providers(
        tmp_path: Path, servers: tuple[LLMServer, LLMServer], monkeypatch: pytest.MonkeyPatch) -> None:
    local, cloud = servers
    monkeypatch.setenv(KEY_ENV, SECRET)
    plan = two_provider_plan(tmp_path, local, cloud, """\
  - id: boss
    agent: script
    model: local/small
    steps:
      - spawn: {id: upstart, model: cloud/big, steps: [{done: hi}]}
""")
    result = invoke("validate", str(plan), cwd=tmp_path)
    assert result.returncode == 2
    assert "model 'cloud/big' ranks above the parent's 'local/small'" in result.stdout + result.stderr
    assert local.requests == [] and cloud.requests == []


def test_a_model_naming_an_unknown_provider_is_one_line_and_exit_2(
        tmp_path: Path, servers: tuple[LLMServer, LLMServer], monkeypatch: pytest.MonkeyPatch) -> None:
    local, cloud = servers
    monkeypatch.setenv(KEY_ENV, SECRET)
    plan = two_provider_plan(tmp_path, local, cloud, "  - {id: a, agent: llm, model: clod/big, instructions: x}\n")
    result = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"invalid plan: {plan}:9: at tasks[0].model: unknown provider 'clod'")
    assert "expected <provider>/<model>, provider one of: local, cloud" in lines[0] and "got 'clod/big'" in lines[0]
    assert local.requests == [] and cloud.requests == []


def test_an_api_key_variable_that_is_not_set_is_one_line_and_exit_2(
        tmp_path: Path, servers: tuple[LLMServer, LLMServer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    plan = two_provider_plan(tmp_path, *servers, LLM_TASKS)
    result = invoke("run", str(plan), "--no-ui", "--no-watch-plan", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 2
    out = (result.stdout + result.stderr).strip()
    assert out == (f"invalid plan: {plan}:4: at providers.cloud.api_key_env: environment variable {KEY_ENV} is not "
                   f"set (expected {KEY_ENV} set to the API key, got not set)")


def test_a_spawned_child_asking_for_a_model_of_no_declared_provider_is_refused() -> None:
    policy = Policy(providers=frozenset({"local", "cloud"}))
    parent = Grant("local/small", frozenset(), UNLIMITED)
    for asked in ("gpt-5", "elsewhere/big"):
        with pytest.raises(PolicyError, match="names no provider of the plan"):
            grant_child(policy=policy, depth=1, parent=parent, parent_remaining=None, model=asked, tools=None,
                        budget=None)
    assert grant_child(policy=policy, depth=1, parent=parent, parent_remaining=None, model="cloud/big", tools=None,
                       budget=None).model == "cloud/big"




def test_http2_is_each_providers_own_choice_and_anything_but_a_boolean_is_one_line_and_exit_2(
        tmp_path: Path) -> None:
    text = """\
name: h2
providers:
  local: {kind: ollama, base_url: "http://127.0.0.1:9"}
  cloud: {kind: openai, base_url: "https://127.0.0.1:9/v1", http2: true}
tasks:
  - {id: a, agent: llm, model: cloud/big, instructions: x}
"""
    built, default = providers_for_plan(parse_plan(text, filename="plan.yaml"), env={})
    assert default == "local"
    assert {name: p.http.http2 for name, p in built.items()} == {"local": False, "cloud": True}  # type: ignore[attr-defined]
    plan = tmp_path / "plan.yaml"
    plan.write_text(text.replace("http2: true", "http2: sometimes"))
    result = invoke("validate", str(plan), cwd=tmp_path)
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"invalid plan: {plan}:4: at providers.cloud.http2:"), lines
    assert lines[0].endswith("wrong type (expected boolean, got string 'sometimes')")
