"""Actions: the values a step function returns for the runtime to carry out.

A step function never touches the bus, the locks or the worker pools itself. It returns
a list of actions; the runtime's interpreter executes them in order and hands the list
of :class:`Result` back to the agent's next step as ``ctx.results``. ``parallel`` runs
its members concurrently and still answers with their results in order.

Every action is an immutable value (a frozen ``msgspec.Struct``: built in a sixth of a
frozen dataclass's time, and the message path builds several per message), so it can be
logged, compared and replayed. Use the small constructors below rather than the classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import msgspec

__all__ = [
    "Action",
    "AcquireLock",
    "CallLLM",
    "CallTool",
    "Done",
    "Parallel",
    "ReleaseLock",
    "Result",
    "Send",
    "Sleep",
    "Spawn",
    "Stop",
    "acquire_lock",
    "call_llm",
    "call_tool",
    "done",
    "parallel",
    "release_lock",
    "result",
    "send",
    "sleep",
    "spawn",
    "stop",
]


class Send(msgspec.Struct, frozen=True):
    """Send a message to another agent (``to`` may be ``"parent"``)."""

    to: str
    kind: str = "chat"
    body: Any = None
    thread_id: str | None = None


class Spawn(msgspec.Struct, frozen=True):
    """Spawn a child under the acting agent; ``spec`` is an ``AgentSpec``."""

    spec: Any


class Stop(msgspec.Struct, frozen=True):
    """Stop an agent's subtree (a descendant of the acting agent, or itself)."""

    agent_id: str


class AcquireLock(msgspec.Struct, frozen=True):
    """Take a read or write lock on a workspace path.

    ``timeout`` 0 answers at once with the conflict; otherwise wait up to that many seconds.
    """

    path: str
    mode: str = "write"
    timeout: float = 0.0


class ReleaseLock(msgspec.Struct, frozen=True):
    """Give back a lock the agent holds."""

    path: str


class CallTool(msgspec.Struct, frozen=True):
    """Run a registered tool on the tool pool."""

    name: str
    arguments: Mapping[str, Any] = msgspec.field(default_factory=dict)
    call_id: str | None = None


class CallLLM(msgspec.Struct, frozen=True):
    """Ask the agent's model on the LLM pool.

    ``messages`` are chat messages (``{"role", "content", ...}``); ``tools`` are tool
    names the model may call; ``model`` overrides the agent's model for this call.
    """

    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[str] = ()
    model: str | None = None
    options: Mapping[str, Any] = msgspec.field(default_factory=dict)
    call_id: str | None = None


class Sleep(msgspec.Struct, frozen=True):
    """Pause the agent for ``seconds``.

    With ``wake_on_message`` the pause ends early when a message arrives (Erlang's
    ``receive ... after``): the result value is ``"message"`` or ``"timeout"``. In a
    parallel batch, one message ends every such sleep of the batch still waiting when it
    comes (it stays in the inbox: the step after the batch reads it).
    """

    seconds: float
    wake_on_message: bool = False


class Done(msgspec.Struct, frozen=True):
    """End the agent. Its parent is told with a ``done`` message."""

    status: str = "ok"
    result: Any = None


class Parallel(msgspec.Struct, frozen=True):
    """Run ``actions`` concurrently; their results come back in the same order."""

    actions: tuple[Action, ...]


Action = Union[Send, Spawn, Stop, AcquireLock, ReleaseLock, CallTool, CallLLM, Sleep, Done, Parallel]


class Result(msgspec.Struct, frozen=True):
    """The outcome of one action, handed back to the agent's next step.

    ``ok`` is False when the action failed; ``error`` then names why (a short code such
    as ``topology_denied``, ``conflict``, ``timeout``, ``invalid_arguments``) and
    ``value`` may carry details. For ``parallel`` the value is the tuple of member results.
    """

    action: Action
    ok: bool = True
    value: Any = None
    error: str | None = None


def result(action: Action, ok: bool = True, value: Any = None, error: str | None = None) -> Result:
    """A :class:`Result` of ``action``."""
    return Result(action, ok, value, error)


def send(to: str, kind: str = "chat", body: Any = None, thread_id: str | None = None) -> Send:
    """Message ``to`` (an agent id, or ``"parent"``)."""
    return Send(to if type(to) is str else str(to), kind if type(kind) is str else str(kind), body, thread_id)


def spawn(spec: Any) -> Spawn:
    """Spawn a child agent from an ``AgentSpec``."""
    return Spawn(spec)


def stop(agent_id: str) -> Stop:
    """Stop ``agent_id`` and its subtree."""
    return Stop(str(agent_id))


def acquire_lock(path: str, mode: str = "write", timeout: float = 0.0) -> AcquireLock:
    """Lock a workspace path (``mode`` is ``"read"`` or ``"write"``)."""
    return AcquireLock(str(path), mode, float(timeout))


def release_lock(path: str) -> ReleaseLock:
    """Release a lock held on ``path``."""
    return ReleaseLock(str(path))


def call_tool(name: str, arguments: Mapping[str, Any] | None = None, call_id: str | None = None) -> CallTool:
    """Call the tool registered as ``name`` with ``arguments``."""
    return CallTool(str(name), dict(arguments or {}), call_id)


def call_llm(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[str] = (),
    model: str | None = None,
    options: Mapping[str, Any] | None = None,
    call_id: str | None = None,
) -> CallLLM:
    """Ask the model; the reply comes back as this action's result value."""
    return CallLLM(tuple(messages), tuple(tools), model, dict(options or {}), call_id)


def sleep(seconds: float, wake_on_message: bool = False) -> Sleep:
    """Pause for ``seconds`` (or until a message arrives, with ``wake_on_message``)."""
    return Sleep(float(seconds), wake_on_message)


def done(status: str = "ok", result: Any = None) -> Done:
    """Finish with ``status`` (``"ok"`` unless told otherwise) and ``result``."""
    return Done(str(status), result)


def parallel(actions: Sequence[Action]) -> Parallel:
    """Run ``actions`` concurrently."""
    return Parallel(tuple(actions))
