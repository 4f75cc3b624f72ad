"""The LLM providers of a run, from the plan's ``defaults`` and the environment.

Invoked from :mod:`agentctl.cli.session` when it builds the work plane. A plan names at
most one provider (``defaults.provider``; ``ollama`` when it names none) with an optional
``defaults.model`` and ``defaults.base_url``; what the plan leaves out comes from the
environment (``OLLAMA_HOST``; ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``), see
:func:`agentctl.services.llm.config.provider_from_config`. Each task's own ``model`` is
sent with its requests by the runtime, so one provider serves every model.
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
    runs). Plan validation refuses other names, so an unknown one never gets here.

    Args:
        plan: the loaded plan.
        env: where to read environment variables from.

    Raises:
        LLMError: settings the named provider cannot use.
    """
    d = plan.defaults
    name = (d.provider or DEFAULT_PROVIDER).strip().lower()
    if name == "scripted":
        return {name: ScriptedProvider(())}, name
    return {name: provider_from_config(name, model=d.model, base_url=d.base_url, env=env)}, name
