"""Build an HTTP LLM provider from a name, explicit settings and the environment.

Called by the CLI and the runtime when a plan or a flag names a provider (``ollama``,
``openai``). Explicit arguments win over environment variables, which win over
defaults:

* ``ollama``: hosts from ``base_url``, else ``OLLAMA_HOST`` (``host:port`` without
  scheme and comma-separated lists allowed), else ``http://localhost:11434``;
* ``openai``: base URL from ``base_url``, else ``OPENAI_BASE_URL``, else
  ``https://api.openai.com/v1``; key from ``api_key``, else ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from agentctl.errors import LLMError
from agentctl.services.llm.base import Provider
from agentctl.services.llm.ollama import OllamaProvider
from agentctl.services.llm.openai import OpenAIProvider

__all__ = ["KNOWN_PROVIDERS", "provider_from_config"]

KNOWN_PROVIDERS = ("ollama", "openai")

_OLLAMA_DEFAULT = "http://localhost:11434"
_OPENAI_DEFAULT = "https://api.openai.com/v1"


def provider_from_config(
    name: str,
    *,
    model: str | None = None,
    base_url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    env: Mapping[str, str] = os.environ,
    **opts: Any,
) -> Provider:
    """The provider called ``name``, configured from the arguments and ``env``.

    Args:
        name: ``ollama`` or ``openai`` (case-insensitive).
        model: default model of the provider.
        base_url: one base URL, a comma-separated list, or a list.
        api_key: the OpenAI key (ignored by ollama).
        env: where to read environment variables from.
        **opts: passed on to the provider (timeout, retries, stream, ...). Replies are
            streamed unless ``stream=False`` is given.

    Raises:
        LLMError: for an unknown name or unusable settings.
    """
    kind = name.strip().lower()
    opts.setdefault("stream", True)
    try:
        if kind == "ollama":
            hosts = base_url or env.get("OLLAMA_HOST") or _OLLAMA_DEFAULT
            return OllamaProvider(hosts, model=model, **opts)
        if kind == "openai":
            base = base_url or env.get("OPENAI_BASE_URL") or _OPENAI_DEFAULT
            key = api_key or env.get("OPENAI_API_KEY") or None
            return OpenAIProvider(base, api_key=key, model=model, **opts)
    except TypeError as exc:
        # An option the provider does not take: say which, as a config error.
        raise LLMError(f"bad option for provider {kind!r}: {exc}") from None
    raise LLMError(f"unknown LLM provider {name!r}; known providers: {', '.join(KNOWN_PROVIDERS)}")
