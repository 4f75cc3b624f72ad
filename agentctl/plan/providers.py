"""The plan's named LLM providers (``providers:``) and the models that must name them.

Called by :func:`agentctl.plan.validate.validate_plan` once the plan's shape is checked. A
plan with ``providers: {local: {kind: ollama, ...}, cloud: {kind: openai, ...}}`` names a
provider in every model it mentions, ``model: local/qwen3:8b`` (tasks, the children
scripts spawn, ``defaults.model``, ``policy.model_rank`` and ``policy.depth.N.models``), so
the depth policy ranks models across providers by their whole names. A plan without
``providers:`` is read as before: ``defaults.provider`` serves every model, as written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import PlanError
from .lines import LineMap, Path, format_path
from .model import ProviderConfig

__all__ = ["model_refs", "named_providers"]


def named_providers(data: Mapping[str, Any], file: str | None, lines: LineMap | None,
                    env: Mapping[str, str] = os.environ) -> tuple[ProviderConfig, ...]:
    """The plan's ``providers:``, with every model reference checked against them.

    Raises:
        PlanError: a model naming no declared provider, a provider setting that does not
            apply, or an ``api_key_env`` variable that is not set.
    """

    def fail(message: str, path: Path, expected: str | None = None, got: str | None = None) -> PlanError:
        return PlanError(message, file=file, line=None if lines is None else lines.nearest(path),
                         path=format_path(path) or None, expected=expected, got=got)

    raw = data.get("providers") or {}
    out = []
    for name, d in raw.items():
        key_env = d.get("api_key_env")
        if key_env is not None and d["kind"] != "openai":
            raise fail("api_key_env only applies to kind 'openai'", ("providers", name, "api_key_env"))
        if key_env is not None and not env.get(key_env):
            raise fail(f"environment variable {key_env} is not set", ("providers", name, "api_key_env"),
                       expected=f"{key_env} set to the API key", got="not set")
        out.append(ProviderConfig(name=name, kind=d["kind"], base_url=d.get("base_url"), api_key_env=key_env,
                                  stream=d.get("stream", True), http2=d.get("http2", False)))
    if not out:
        return ()
    names = [p.name for p in out]
    defaults = data.get("defaults") or {}
    for key in ("provider", "base_url", "stream"):
        if key in defaults:
            raise fail(f"defaults.{key} does not apply when 'providers:' is given: set it on the provider, "
                       "and name the provider in each model", ("defaults", key), expected="no such key",
                       got=repr(defaults[key]))
    expected = f"<provider>/<model>, provider one of: {', '.join(names)}"
    for model, path in model_refs(data):
        head, sep, rest = model.partition("/") if isinstance(model, str) else ("", "", "")
        if not sep or not rest:
            raise fail(f"model {model!r} names no provider", path, expected=expected, got=repr(model))
        if head not in names:
            raise fail(f"unknown provider {head!r} in model {model!r}", path, expected=expected, got=repr(model))
    has_default = "model" in defaults
    for i, task in enumerate(data.get("tasks") or ()):
        if task.get("agent") == "llm" and "model" not in task and not has_default:
            raise fail("an llm task needs a model when 'providers:' is given", ("tasks", i),
                       expected=f"model: {expected}", got="no model (and no defaults.model)")
    return tuple(out)


def model_refs(data: Mapping[str, Any]) -> Iterator[tuple[Any, Path]]:
    """Every model the plan mentions, with its key path."""
    defaults = data.get("defaults") or {}
    if "model" in defaults:
        yield defaults["model"], ("defaults", "model")
    for i, task in enumerate(data.get("tasks") or ()):
        yield from _task_models(task, ("tasks", i))
    policy = data.get("policy") or {}
    for k, model in enumerate(policy.get("model_rank") or ()):
        yield model, ("policy", "model_rank", k)
    for depth, rule in (policy.get("depth") or {}).items():
        for k, model in enumerate(rule.get("models") or ()):
            yield model, ("policy", "depth", depth, "models", k)


def _task_models(task: Mapping[str, Any], path: Path) -> Iterator[tuple[Any, Path]]:
    if "model" in task:
        yield task["model"], (*path, "model")
    for j, step in enumerate(task.get("steps") or ()):
        if isinstance(step, Mapping) and isinstance(step.get("spawn"), Mapping):
            yield from _task_models(step["spawn"], (*path, "steps", j, "spawn"))
