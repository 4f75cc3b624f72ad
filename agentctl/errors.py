"""The exceptions agentctl raises: every one is an :class:`AgentctlError`.

One base class, then one family per layer of the data flow (where a class is defined
elsewhere, its module is named)::

    AgentctlError
    ├── UsageError           a library call given an argument it cannot use (also a ValueError)
    ├── PlanError            a plan file that cannot be loaded or validated
    ├── ActionError          an action an agent returned that cannot be carried out
    │   └── PolicyError      a spawn refused: tools, model, budget, children or depth
    ├── ScriptFailed         a script agent's step that failed (agents.script)
    ├── BusError             a message that cannot be routed (raised only by ``send_or_raise``)
    ├── LockError            a path lock that cannot be taken or released
    ├── ApprovalError        an answer to a held call that cannot be given (services.approvals)
    ├── WorkerError          a tool or LLM job that failed in its pool
    │   ├── ToolError        a tool that is unknown, got bad arguments or raised
    │   │   └── SchemaError  arguments that do not match the tool's schema (also a ValueError)
    │   ├── LLMError         a provider that failed or replied with something unusable
    │   │   └── LLMHTTPError an HTTP provider's call that failed for good (services.llm.http)
    │   ├── McpError         an MCP server that cannot be used (services.mcp.supervisor)
    │   ├── Interrupted      a call whose cluster worker or node was lost (services.workers)
    │   └── Cancelled        a call cut short by the run's shutdown or its agent's end (services.workers)
    ├── LogError             an events file that cannot be written or read
    │   ├── CorruptLogError  a line in the middle of an events file that is not an event
    │   └── SnapshotError    a checkpoint's snapshot of an agent that cannot be restored (runtime.snapshots)
    └── ControlError         a run's control socket that cannot be used (cli.control)
        ├── NotListening     nothing accepts connections on it (yet)
        └── NoReply          a run that took a request and died before it answered

There is no retry flag: what is worth retrying is retried where it happens (an LLM call
by its provider's client, with backoff; a crashed agent by its supervisor), and an error
that reaches the caller is final. Budgets are not exceptions either: a spent budget ends
the agent with status ``budget_exceeded`` in its ``agent/done`` event (or a failed result
for a tool or LLM call past ``max_tool_calls``/``max_tokens``).
"""

from __future__ import annotations

from collections.abc import Iterator


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


class AgentctlError(Exception):
    """Base class of every error agentctl raises on purpose."""


class UsageError(AgentctlError, ValueError):
    """An agentctl function called with an argument it cannot use (a bad capacity, an unknown
    policy name, a tool function whose signature has no schema): a bug in the calling code,
    not bad input from a plan, a model or an events file, which get their own errors above."""


class PlanError(AgentctlError):
    """A plan file that cannot be loaded or validated.

    Attributes:
        file: the plan file, when known.
        line: 1-based line in the file, when the syntax gives one (YAML does).
        path: key path inside the plan, e.g. ``tasks[2].budget.max_steps``.
        expected: what the schema wanted there.
        got: what the file had there.
        more: other errors found in the same pass, each a ``PlanError`` of its own.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        path: str | None = None,
        expected: str | None = None,
        got: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.path = path
        self.expected = expected
        self.got = got
        #: Other problems found in the same pass (``agentctl validate`` prints them all).
        self.more: tuple[PlanError, ...] = ()
        super().__init__(self.render())

    def render(self) -> str:
        """One line: ``file:line: at key.path: message (expected X, got Y)``."""
        where = self.file or "<plan>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.path:
            text += f"at {self.path}: "
        text += self.message
        if self.expected is not None or self.got is not None:
            text += f" (expected {self.expected}, got {self.got})"
        return text

    def to_dict(self) -> dict[str, object]:
        """The fields, for the ``plan/invalid`` event."""
        return {
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "path": self.path,
            "expected": self.expected,
            "got": self.got,
        }


class ActionError(AgentctlError):
    """An action that cannot be carried out (unknown kind, bad fields)."""


class PolicyError(ActionError):
    """A spawn refused: tools, budget or model not allowed for the child.

    Attributes:
        rule: which rule refused it: ``tools``, ``model``, ``budget``, ``max_children``,
            ``depth`` or ``id`` (a reserved id).
    """

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(message)


class BusError(AgentctlError):
    """A message that could not be delivered."""


class LockError(AgentctlError):
    """A lock that cannot be taken (conflict) or released (not held)."""


class WorkerError(AgentctlError):
    """A job that failed in a worker pool."""


class ToolError(WorkerError):
    """A tool that is unknown, got invalid arguments, or raised."""


class LLMError(WorkerError):
    """A provider that failed, timed out or replied with something unusable."""


class LogError(AgentctlError):
    """An events file that cannot be written or read."""


class CorruptLogError(LogError):
    """A line in the middle of an events file that is not a JSON event.

    Attributes:
        file: the events file.
        line: 1-based line number of the bad line.
    """

    def __init__(self, file: str, line: int, reason: str) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        super().__init__(f"{file}:{line}: corrupt event line: {reason}")

