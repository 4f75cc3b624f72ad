"""One ``agentctl run``: the event log, the runtime, the reconciler, watchers and the view.

Invoked from :mod:`agentctl.cli.run`. Owns one task group for its helpers (plan file
watcher, control channel, signal handler, live view); the runtime owns the
agents. On every exit path the runtime stops every agent, ``run/finished`` is logged
with the reason, and the log is flushed and fsynced before this returns.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import watchfiles

from .. import __version__
from ..agents.llm import llm_child_spec
from ..errors import PlanError, PolicyError
from ..events import open_event_log, read_events
from ..events.checkpoint import Checkpointer
from ..executor import Executor
from ..plan.code import code_paths, plan_modules
from ..plan.load import line_finder, parse_plan, read_plan_text
from ..plan.model import Plan
from ..reconcile import ROOT_ID, Reconciler
from ..reconcile.live import changed_sections, fixed_changes, supervision_changes
from ..reconcile.preflight import check_code, check_gates, load_plugins, root_tools
from ..reconcile.states import task_states
from ..redact import Redactor
from ..runtime import open_runtime
from ..runtime.interrupted import recover_interrupted
from ..runtime.resume_state import ResumeContext
from ..services.approvals import ApprovalError, Approvals
from ..services.bus import USER, SendStatus
from ..services.mcp import open_mcp
from ..services.tools import ToolContext, default_registry
from ..services.tools.docker import release_run, uses_docker
from ..services.workers import LocalWorkPlane
from .clusters import ran_here
from .control import serve_control, socket_path
from .faults import fault_hook
from .otel import LiveTrace, OtelConfig
from .providers import providers_for_plan
from .resume import Resumed, journal_from_log

if TYPE_CHECKING:
    from ..services.ray_plane import RayWorkPlane

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def new_run_id() -> str:
    """A sortable, unique run id: ``20261125-071502-3fa9c2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass
class RunOptions:
    """What ``agentctl run`` was asked to do."""

    plan_path: Path
    run_dir: Path
    workspace: Path
    run_id: str
    ui: bool = True
    watch_plan: bool = True
    keep_running: bool = False
    durability: str | None = None
    ray: str | None = None
    otel: OtelConfig | None = None
    #: Where the plan's own modules would be imported from (``plan.code.code_paths``): kept from the file tools.
    code: tuple[Path, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class Session:
    """Drives one run of a plan; :meth:`run` returns the process exit code."""

    def __init__(self, options: RunOptions, plan: Plan, resumed: Resumed | None = None) -> None:
        self.o = options
        self.plan = plan
        self.resumed = resumed
        self.version = resumed.version if resumed and resumed.version else 1
        self.reason = "completed"
        self.status = "failed"
        self.interrupted = False
        self.lost: str | None = None  # why the run lost its Ray cluster, if it did
        self.cluster: RayWorkPlane | None = None  # the work plane, when it is a Ray cluster's
        self._stopping = anyio.Event()
        # Ids of calls, messages and conflicts are unique across every process of a run:
        # each resume numbers its own under a prefix of its own (r1., r2., ...).
        self.id_prefix = f"r{resumed.state.resumes + 1}." if resumed else ""
        self._scope: anyio.CancelScope | None = None
        self.redactor = run_redactor(plan)
        self.trace: LiveTrace | None = None

    async def run(self) -> int:
        o = self.o
        o.run_dir.mkdir(parents=True, exist_ok=True)
        self.control_path = socket_path(o.run_dir, o.run_id)
        durability = o.durability or self.plan.settings.durability
        try:
            await self._logged(durability)
        finally:
            if self.trace is not None:
                # The run's span, and what the exporter still holds (bounded: cli.otel.RUN_GRACE).
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.trace.close)
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if self.status == "ok" else EXIT_FAILED

    async def _logged(self, durability: str) -> None:
        """The run between opening and closing its event log."""
        o, r = self.o, self.resumed
        async with open_event_log(
            o.run_dir / "events.jsonl", o.run_id, durability=durability,  # type: ignore[arg-type]
            start_seq=r.last_seq + 1 if r else 1, redactor=self.redactor,
        ) as log:
            self.log = log
            self._subscribe(log)
            fault = fault_hook(os.environ)
            if fault is not None:
                log.subscribe(fault)
            control, executor = str(self.control_path), executor_of(self.plan, o.ray)
            where = {"executor": executor.kind, "address": executor.address if executor.kind == "ray" else None}
            # Containers the killed processes left in this machine's engine: only where one ran its tools here.
            stale = r is not None and uses_docker(self.plan) and ran_here(r.state)
            if r is not None:
                log.emit("run/resumed", None, from_seq=r.last_seq, torn_line=r.torn_line, checkpoint=r.checkpoint,
                         agents=sorted(r.journals.by_agent), pid=os.getpid(), control=control, **where)
            else:
                log.emit("run/started", None, pid=os.getpid(), version=__version__, durability=durability,
                         workspace=str(o.workspace), plan=str(o.plan_path), control=control, **where)
            if stale:
                await release_run(o.run_id, force=True)
            try:
                await self._supervise()
            except Exception:
                self.reason, self.status = "error", "failed"
                raise
            finally:
                await release_run(o.run_id)
                if self.cluster is not None:
                    await self.cluster.release_containers(o.run_id)
                log.emit("run/finished", None, reason=self.reason, status=self.status, events=log.last_seq + 1)

    async def _supervise(self) -> None:
        o, plan, log = self.o, self.plan, self.log
        tools = default_registry()
        load_plugins(plan.settings.plugins, tools)
        if self.resumed is not None:
            recover_interrupted(self.resumed.journals, tools, self._recovery_context, log.emit)
        held = root_tools(plan.settings, tools.names())
        providers, default_provider = providers_for_plan(plan)
        plane = self._work_plane(
            log.emit, id_prefix=self.id_prefix, tools=tools, llm_workers=plan.settings.llm_workers, tool_workers=plan.settings.tool_workers,
            tool_timeouts=plan.settings.tool_timeouts,
            providers=providers, default_provider=default_provider, qualified_models=bool(plan.providers),
            redactor=self.redactor, before_run=lambda event: log.flushed(event["seq"]),
        )
        r = self.resumed
        if r is not None and self.cluster is not None and uses_docker(plan):
            await self.cluster.release_containers(o.run_id)  # what the killed process left, on the nodes its log names
        self.approvals = Approvals.from_log(log.emit, r.state.approvals if r else {}, id_prefix=self.id_prefix)
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            view = self.view
            tg.start_soon(view.run)
            tg.start_soon(self._signals)
            tg.start_soon(self.checkpointer.run)
            # MCP servers first: their tools must be registered before agents resolve toolsets.
            async with open_mcp(plan.mcp, tools, log.emit, log_dir=o.run_dir, redactor=self.redactor) as mcp, open_runtime(
                log.emit, run_id=o.run_id, workspace=o.workspace, plane=plane, tools=tools,
                policy=plan.runtime_policy(), root_tools=held | mcp.tool_names(),
                inbox_size=plan.settings.inbox_size, shell_enabled=plan.settings.shell,
                protected=(o.plan_path, o.run_dir, self.control_path, *o.code),
                strategy=plan.settings.strategy, max_restarts=plan.settings.max_restarts,
                restart_period=plan.settings.restart_period, lock_wait=plan.settings.lock_wait, backpressure=log,
                resume=ResumeContext(r.journals, journal_from_log(o.run_dir, r.last_seq), parents=r.state.parents()) if r else None,
                conflicts=plan.policy.conflicts if plan.policy else "first_come",
                conflict_timeout=plan.policy.conflict_timeout if plan.policy else 10.0,
                id_prefix=self.id_prefix, llm_child=llm_child_spec, approvals=self.approvals,
            ) as rt:
                self.rt = rt
                self.checkpointer.snapshots = rt.snapshots
                if not self._start_tree(rt):
                    tg.cancel_scope.cancel()
                    return
                if o.watch_plan:
                    tg.start_soon(self._watch_plan)
                await tg.start(serve_control, self.control_path, self._control)
                try:
                    exit = await rt.wait(ROOT_ID)
                finally:
                    # The plan watcher's thread only notices this, not a cancellation.
                    self._stopping.set()
                self.status = "ok" if exit.outcome == "done" and exit.status == "ok" else "failed"
                self.reason = "completed" if self.status == "ok" else "failed"
            await plane.aclose()
            if view is not None:
                await view.close()
            tg.cancel_scope.cancel()

    def _work_plane(self, emit: Any, *, tools: Any, **options: Any) -> LocalWorkPlane | RayWorkPlane:
        """The local pools, or the pools with a Ray cluster behind them (``settings.executor``, ``--ray``)."""
        executor = executor_of(self.plan, self.o.ray)
        if executor.kind != "ray":
            return LocalWorkPlane(emit, tools=tools, **options)
        from ..services.ray_plane import RayWorkPlane, connect  # Ray only when asked for

        connect(executor.address)
        plane = self.cluster = RayWorkPlane(emit, executor=executor, tools=tools, on_lost=self._cluster_lost, **options)
        if self.resumed is not None and uses_docker(self.plan):
            plane.replay_containers(read_events(self.o.run_dir / "events.jsonl"))  # which node holds what
        return plane

    def _cluster_lost(self, line: str) -> None:
        """The Ray cluster is gone: end the run as a signal would, its calls in flight cut short
        (``cancelled``: interrupted for a resume), and say so (:attr:`lost`)."""
        if self.lost is None:
            self.lost = line
            self._interrupt("cluster_lost")
            self.interrupted = False  # exit 1, not 130: nobody asked for the stop

    def failure_lines(self) -> list[str]:
        """Why the run failed: one line per agent that ended failed (which call, and why)."""
        from ..views.failures import failure_lines

        checkpointer = getattr(self, "checkpointer", None)
        return failure_lines(checkpointer.state) if checkpointer is not None else []

    def _recovery_context(self, agent_id: str) -> ToolContext:
        return ToolContext(agent_id=agent_id, workspace=self.o.workspace, run_id=self.o.run_id,
                           protected=(self.o.plan_path, self.o.run_dir, *self.o.code))

    def _start_tree(self, rt: Any) -> bool:
        """Spawn the root reconciler (and, on resume, the agents that were live); False if
        a resumed run had already finished."""
        r, log, o = self.resumed, self.log, self.o
        root = r.state.agents.get(ROOT_ID) if r else None
        if r is None or r.applied is None or root is None:
            self.reconciler = Reconciler(self.plan, log.emit, keep_running=o.keep_running)
            self._loaded(self.plan)
            rt.spawn(self.reconciler.spec())
            return True
        if root.status in ("done", "failed", "stopped") and ROOT_ID not in r.journals.by_agent:
            self.status = "ok" if root.status == "done" and root.done_status == "ok" else "failed"
            self.reason = "completed" if self.status == "ok" else "failed"
            return False
        current, applied = self.plan, r.applied
        self.plan = applied
        self.reconciler = Reconciler.resumed(applied, r.state, r.journals, self.version, log.emit,
                                             keep_running=o.keep_running)
        self.reconciler.respawn(rt, r.journals)
        if current != applied:
            self._apply(current)
        return True

    def _subscribe(self, log: Any) -> None:
        """The checkpointer and the view see every event, ``run/started`` included.

        One fold serves both: the checkpointer folds each event, the live view draws that state.
        """
        from .output import open_view

        r, settings = self.resumed, self.plan.settings
        self.checkpointer = Checkpointer(
            self.o.run_dir, log.flushed, every_events=settings.checkpoint_events,
            every_seconds=settings.checkpoint_seconds, redactor=self.redactor,
            state=r.state if r else None,
        )
        log.subscribe(self.checkpointer.feed)
        self.view = open_view(ui=self.o.ui, state=self.checkpointer.state, answer=self._answer_from_view)
        log.subscribe(self.view.feed)
        if self.o.otel is not None:
            self.trace = LiveTrace(self.o.otel)
            if r is not None:
                self.trace.catch_up(self.o.run_dir / "events.jsonl", r.last_seq)
            log.subscribe(self.trace.feed)

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self._interrupt("interrupted")
                return

    def _interrupt(self, reason: str) -> None:
        """End the run early (Ctrl-C, SIGTERM, ``agentctl stop``): every agent is stopped and
        the log flushed; the status is ``stopped`` if every task had finished ok, else ``failed``."""
        self.interrupted = True
        done = task_states(self.plan, self.checkpointer.state)
        all_ok = len(done) == len(self.plan.tasks) and all(s.status == "ok" for s in done.values())
        self.reason, self.status = reason, "stopped" if all_ok else "failed"
        self._stopping.set()
        if self._scope is not None:
            self._scope.cancel()

    def _loaded(self, plan: Plan, text: str | None = None, changed: list[str] | None = None) -> None:
        """Keep a copy of the plan version just applied (resume and ``diff --run`` read it)."""
        copy = self.o.run_dir / f"plan.v{self.version}{self.o.plan_path.suffix}"
        if text is None and self.o.plan_path.exists():
            text = self.o.plan_path.read_text()
        if text is not None:
            copy.write_text(self.redactor.text(text))  # an MCP server's env may hold a key
        self.log.emit("plan/loaded", None, file=str(self.o.plan_path), name=plan.name, version=self.version,
                      tasks=len(plan.tasks), copy=str(copy), changed=changed or [])

    async def _watch_plan(self) -> None:
        path = self.o.plan_path.resolve()
        # Editors save by rename, so watch the directory and pick out the plan file.
        changes_seen = watchfiles.awatch(path.parent, debounce=30, step=10, recursive=False, stop_event=self._stopping)
        async for changes in changes_seen:
            if any(Path(p).resolve() == path for _, p in changes) and path.exists():
                # Parsing a large plan takes a while: off the event loop, so agents go on meanwhile.
                loaded = await anyio.to_thread.run_sync(self._read, abandon_on_cancel=True)
                if isinstance(loaded, PlanError):
                    self.log.emit("plan/invalid", ROOT_ID, file=str(self.o.plan_path), error=loaded.to_dict())
                else:
                    await self._edit(*loaded)

    async def _edit(self, plan: Plan, text: str) -> None:
        """A valid save: applied whole, or refused whole, out loud, when it changes what the
        running run was built from (see :mod:`agentctl.reconcile.live`)."""
        fixed = fixed_changes(self.plan, plan)
        if not fixed:
            self._apply(plan, text)
            return
        file = str(self.o.plan_path)
        line = await anyio.to_thread.run_sync(line_finder(file, text), tuple(fixed[0].split(".")))
        error = PlanError(f"cannot change {', '.join(fixed)} while the run is running; the run goes on with "
                          f"plan v{self.version} (restart it to apply this edit)", file=file, line=line,
                          path=fixed[0], expected="the value the run started with", got="a new value")
        self.log.emit("plan/refused", ROOT_ID, file=file, fields=fixed, error=error.to_dict())

    def _read(self) -> tuple[Plan, str] | PlanError:
        """The saved plan and its text, or why it cannot be applied (runs in a worker thread)."""
        path = self.o.plan_path
        try:
            # One read: the copy kept is the very text applied, even if the file changes again.
            text = read_plan_text(path)
            plan = parse_plan(text, filename=str(path))
        except PlanError as exc:
            return exc
        # The modules it names are the plan's code from now on, whether this edit is applied
        # or not: out of the agents' reach before they are imported (below, to check them).
        self.rt.protect(code_paths(path, plan_modules(plan)))
        # A step function that does not import is refused here, with its line, not when it spawns.
        find = line_finder(str(path), text)
        problems = check_code(plan, find) + check_gates(plan, self.rt.tools.names(), find)
        if problems:
            problems[0].more = tuple(problems[1:])
            return problems[0]
        return plan, text

    def _apply(self, plan: Plan, text: str | None = None) -> None:
        if plan == self.plan or not self.rt.is_live(ROOT_ID):
            return
        changed = changed_sections(self.plan, plan)
        if "policy" in changed:
            # Agents spawned from now on are granted under the new depth policy.
            self.rt.set_policy(plan.runtime_policy())
        for task_id, supervise in supervision_changes(self.plan, plan).items():
            # A running task's next restart decision goes by the edit (a refusal is logged
            # as policy/refused; the task keeps what it had until it starts again).
            with suppress(PolicyError):
                self.rt.set_supervision(task_id, supervise)
        self.plan = plan
        self.version += 1
        self._loaded(plan, text, changed)
        self.reconciler.set_plan(plan)
        self.rt.signal("user", ROOT_ID, "reconcile", {"version": self.version})

    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request of the control channel (see :mod:`agentctl.cli.control`).

        Ops: ``send`` (``to``, ``kind``, ``body``; sent as ``user``, answered once it is
        logged), ``approve`` / ``deny`` (``call_id``, ``note`` / ``reason``; answered once
        logged), ``stop`` (the whole run, or ``agent`` and its subtree) and ``ping``.
        """
        op = request["op"]
        if op == "send":
            return await self._control_send(request)
        if op in ("approve", "deny"):
            return await self._control_answer(op, request)
        if op == "stop":
            agent = request.get("agent")
            if agent is None:
                self._interrupt("stopped")
            elif not isinstance(agent, str) or not self.rt.stop(agent, "requested"):
                return {"ok": False, "error": f"no live agent {agent!r} in run {self.o.run_id}"}
            elif self.plan.task(agent) is not None:
                # A task's agent sends no done message when stopped: tell the root it ended.
                self.reconciler.task_stopped(agent)
                self.rt.send(USER, ROOT_ID, "reconcile", {"version": self.version})
            return {"ok": True}
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "run_id": self.o.run_id}
        return {"ok": False, "error": f"unknown op {op!r}: expected send, approve, deny, stop or ping"}

    async def _control_answer(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        call_id, key = request.get("call_id"), "note" if op == "approve" else "reason"
        text = request.get(key)
        if not isinstance(call_id, str) or not call_id or not (text is None or isinstance(text, str)):
            return {"ok": False, "error": f"{op}: 'call_id' must be a non-empty string and '{key}' a string"}
        if op == "deny" and not text:
            return {"ok": False, "error": "deny: a 'reason' is required (the agent is told it)"}
        event = self.answer(call_id, op == "approve", text)
        await self.log.flushed(event["seq"])
        return {"ok": True, "seq": event["seq"]}

    def _answer_from_view(self, call_id: str, granted: bool, text: str | None) -> str | None:
        """The live view's keys answer as ``user`` too; a refusal is shown on its panel."""
        try:
            self.answer(call_id, granted, text)
        except ApprovalError as exc:
            return str(exc)
        return None

    def answer(self, call_id: str, granted: bool, text: str | None) -> dict[str, Any]:
        """Answer a held call as ``user`` (the control channel, the live view); returns its event.

        Raises:
            ApprovalError: no such held call in this run, or it was answered already.
        """
        return self.approvals.answer(call_id, granted, text)

    async def _control_send(self, request: dict[str, Any]) -> dict[str, Any]:
        to, kind = request.get("to"), request.get("kind", "chat")
        if not isinstance(to, str) or not to or not isinstance(kind, str) or not kind:
            return {"ok": False, "error": "send: 'to' and 'kind' must be non-empty strings"}
        result = self.rt.send(USER, to, kind, request.get("body"))
        seq = self.log.last_seq
        await self.log.flushed(seq)
        if result.status is SendStatus.UNKNOWN_TARGET:
            return {"ok": False, "seq": seq, "error": f"no live agent {to!r} in run {self.o.run_id}"}
        if not result.ok:
            return {"ok": False, "seq": seq, "error": f"not delivered to {to!r}: {result.status}"}
        return {"ok": True, "seq": seq, "msg_id": result.msg_id}


def executor_of(plan: Plan, ray_address: str | None) -> Executor:
    """Where the run's remote-capable tools run: the plan's executor, or a Ray cluster ``--ray`` names."""
    executor = plan.settings.executor
    if ray_address is None:
        return executor
    return replace(executor, kind="ray", address=ray_address)


def run_redactor(plan: Plan) -> Redactor:
    """The redactor of a run of ``plan``: secret keys, and the values of the secrets it knows."""
    keys = [p.api_key_env for p in plan.providers if p.api_key_env]
    return Redactor.for_run(os.environ, names=(*plan.settings.secrets, *keys), mcp_env=[s.env for s in plan.mcp])


def is_tty() -> bool:
    """Whether stdout is a terminal (the live view needs one)."""
    return sys.stdout.isatty()
