"""The LLM providers of a run, from the plan and the environment.

Invoked from :mod:`agentctl.cli.session` when it builds the work plane. A plan either names
its providers (``providers: {local: {kind: ollama, base_url: ...}, cloud: {kind: openai,
api_key_env: OPENAI_API_KEY}}``, each model then ``local/qwen3:8b``: the work plane routes a
call by that prefix) or names at most one (``defaults.provider``; ``ollama`` when it names
none) with an optional ``defaults.model`` and ``defaults.base_url``, which then serves every
model. What the plan leaves out comes from the environment (``OLLAMA_HOST``;
``OPENAI_BASE_URL``, ``OPENAI_API_KEY``), see
:func:`agentctl.services.llm.config.provider_from_config`. Replies stream unless the plan
says ``stream: false``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..plan.model import Plan
from ..services.llm.base import Provider
from ..services.llm.config import provider_from_config
from ..services.llm.scripted import ScriptedProvider

__all__ = ["DEFAULT_PROVIDER", "providers_for_plan"]

DEFAULT_PROVIDER = "ollama"


def providers_for_plan(plan: Plan, env: Mapping[str, str] = os.environ) -> tuple[dict[str, Provider], str]:
    """The providers ``plan`` needs, by name, and the name of the default one.

    ``scripted`` gives a provider that answers every request with ``"done"`` (for dry
    runs). Plan validation refuses other names, so an unknown one never gets here. With
    named providers, the first is the default (a call whose model names none goes there).

    Args:
        plan: the loaded plan.
        env: where to read environment variables from.

    Raises:
        LLMError: settings the named provider cannot use.
    """
    if plan.providers:
        built = {
            p.name: _provider(p.kind, model=None, base_url=p.base_url, stream=p.stream, http2=p.http2,
                              api_key=env.get(p.api_key_env) if p.api_key_env else None, env=env)
            for p in plan.providers
        }
        return built, plan.providers[0].name
    d = plan.defaults
    name = (d.provider or DEFAULT_PROVIDER).strip().lower()
    return {name: _provider(name, model=d.model, base_url=d.base_url, stream=d.stream, env=env)}, name


def _provider(kind: str, *, model: str | None, base_url: str | None, stream: bool, env: Mapping[str, str],
              api_key: str | None = None, http2: bool = False) -> Provider:
    if kind == "scripted":
        return ScriptedProvider((), stream=stream)
    return provider_from_config(kind, model=model, base_url=base_url, api_key=api_key, env=env, stream=stream,
                                http2=http2)
