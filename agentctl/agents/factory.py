"""Turn a plan task into an :class:`~agentctl.runtime.AgentSpec`.

Invoked from the reconciler (top-level tasks) and from script agents (``spawn`` steps).
What a task leaves out comes from the plan's ``defaults``; what those leave out is
inherited in the runtime through the depth policy.
"""

from __future__ import annotations

from functools import partial

from ..errors import PlanError
from ..frozen import thaw
from ..plan.code import import_plan_module
from ..plan.model import Defaults, Task
from ..policy import Budget, Supervision
from ..runtime.spec import AgentSpec, StateCodec, StepFn
from ..services.bus import Topology
from .plugin import state_codec
from .script import script_codec, script_step


def load_step(ref: str) -> StepFn:
    """Import ``"module:function"``; a ``PlanError`` says what could not be found."""
    module_name, _, attr = ref.partition(":")
    try:
        module = import_plan_module(module_name)
    except ImportError as exc:
        raise PlanError(f"cannot import step module {module_name!r}: {exc}", path="step") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise PlanError(f"{module_name!r} has no function {attr!r}", path="step")
    return fn


def _step_for(task: Task, defaults: Defaults) -> tuple[StepFn, StateCodec | None]:
    """The task's step function, and how its state is snapshotted (None: a plugin step that
    does not declare it with ``keeps_state`` is always replayed in full)."""
    if task.agent == "script":
        child = partial(spec_for_task, defaults=defaults, top_level=False)
        return script_step(task.steps, child), script_codec(task.steps, child)
    if task.agent == "python":
        assert task.step is not None
        fn = load_step(task.step)
        return fn, state_codec(fn)
    if task.agent == "llm":
        from .llm import LLMAgentConfig, llm_codec, llm_step

        sized = {"context_chars": defaults.context_chars} if defaults.context_chars else {}
        config = LLMAgentConfig(options=thaw(defaults.llm_options or {}), **sized)
        return llm_step(task, config), llm_codec(task, config)
    raise PlanError(f"unknown agent kind {task.agent!r}", path="agent")


def asked(task: Task, defaults: Defaults | None) -> tuple[str | None, tuple[str, ...] | None, Budget | None]:
    """What ``task`` asks for (model, tools, budget), with the plan ``defaults`` filling
    in for a top-level task (``None``: a spawned child, which inherits in the runtime)."""
    if defaults is None:
        return task.model, task.tools, task.budget
    budget = defaults.budget.overlay(task.budget) if task.budget is not None else defaults.budget
    return (task.model if task.model is not None else defaults.model,
            task.tools if task.tools is not None else defaults.tools, budget)


def asked_supervise(task: Task, defaults: Defaults | None) -> Supervision | None:
    """The supervision ``task`` asks for, the plan ``defaults`` filling in for a top-level task
    (``None``: a spawned child); unset fields are inherited in the runtime."""
    if defaults is None or defaults.supervise is None:
        return task.supervise
    return defaults.supervise.overlay(task.supervise)


def spec_for_task(
    task: Task,
    defaults: Defaults = Defaults(),
    *,
    top_level: bool = True,
) -> AgentSpec:
    """The agent spec for ``task``; plan defaults fill in for a top-level task."""
    model, tools, budget = asked(task, defaults if top_level else None)
    step, codec = _step_for(task, defaults)
    topology = Topology(**dict(task.topology)) if task.topology else Topology()
    flags = asked_supervise(task, defaults if top_level else None) or Supervision()
    return AgentSpec(
        id=task.id,
        step=step,
        kind=task.agent,
        model=model,
        tools=None if tools is None else frozenset(tools),
        budget=budget,
        topology=topology,
        restart=task.restart or defaults.restart,  # type: ignore[arg-type]
        strategy=flags.strategy,  # type: ignore[arg-type]
        max_restarts=flags.max_restarts,
        restart_period=flags.restart_period,
        instructions=task.instructions,
        provider=defaults.provider,
        priority=task.priority,
        tool_timeout=task.tool_timeout,
        approve=frozenset(task.approve),
        on_interrupted=task.on_interrupted or defaults.on_interrupted,
        meta={"task": task},
        state_codec=codec,
    )
