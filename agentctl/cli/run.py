"""``agentctl run PLAN``: run a plan, reconcile every save of it, show it live."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..errors import AgentctlError, PlanError, leaves
from .complete import complete_plan, complete_run
from .errors import EXIT_USAGE, fail_plan, fail_usage, print_error
from .locate import RUNS, run_by_id

if TYPE_CHECKING:
    from ..plan.model import Plan
    from .otel import OtelConfig
    from .resume import Resumed
    from .session import RunOptions

DURABILITIES = ("none", "batch", "always")


def run_command(
    plan: Optional[Path] = typer.Argument(None, help="The plan file (.yaml, .yml or .edn); optional with --resume [default: the run's latest applied version].", autocompletion=complete_plan),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", metavar="DIR", help="Where events.jsonl goes [default: .agentctl/runs/<run_id>]."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", metavar="DIR", help="The directory file tools are confined to [default: current directory]."),
    no_ui: bool = typer.Option(False, "--no-ui", help="Plain lines instead of the live view."),
    watch_plan: bool = typer.Option(True, "--watch-plan/--no-watch-plan", help="Reconcile every save of the plan file."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Stay up after every task finished, for more edits (Ctrl-C ends)."),
    durability: Optional[str] = typer.Option(None, "--durability", metavar="none|batch|always", help="Event log durability: none, batch or always [default: the plan's, else batch]."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUN", help="Continue the run in this run directory (or run id) after its process died.", autocompletion=complete_run),
    apply_plan: bool = typer.Option(False, "--apply-plan", help="With --resume: switch the run to PLAN, another file than the one it ran."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS", help="Run shell/run and remote plugin tools on this Ray cluster: auto, local, HOST:PORT or ray://HOST:PORT (needs agentctl[ray]; overrides settings.executor)."),
    force: bool = typer.Option(False, "--force", help="With --resume: continue even if the log fails its integrity check (seq gaps, duplicates, another run's events); each problem is printed as a warning. Work may then repeat or be lost."),
    otel: bool = typer.Option(False, "--otel", help="Export the run as OpenTelemetry spans while it runs (needs the otel extra); also on when OTEL_EXPORTER_OTLP_ENDPOINT is set."),
    otel_endpoint: Optional[str] = typer.Option(None, "--otel-endpoint", metavar="URL", help="With --otel (implied): the OTLP/HTTP receiver, e.g. http://127.0.0.1:6006 (/v1/traces is appended) [default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318]."),
    otel_content: bool = typer.Option(False, "--otel-content", help="With --otel: also send tool arguments and results and model replies (as logged: redacted). Off by default."),
) -> None:
    """Run a plan, its agent tree shown live.

    Spawns PLAN's agents, reconciles every save of the file against the running tree and
    logs every event to the run's events.jsonl. Exit 0 every task ok, 1 a task failed, 2 bad
    input, 130 interrupted.
    """
    # Imported here, not above: `agentctl --help` and every other command start faster.
    from ..plan.code import code_paths, plan_code, plan_modules
    from .resume import recorded_workspace
    from .session import RunOptions, is_tty

    if durability is not None and durability not in DURABILITIES:
        fail_usage(f"--durability: expected one of {', '.join(DURABILITIES)}, got {durability!r}")
    trace = _otel_config(otel, otel_endpoint, otel_content)
    resumed = None
    if resume is not None:
        if run_dir is not None:
            fail_usage("--resume RUN_DIR and --run-dir: give only one (a resumed run keeps its directory)")
        resume = _run_dir_of(resume)
        resumed = _resumable(resume, force)
        workspace = workspace or (recorded_workspace(resume) if resumed else None)
        run_dir = resume
    plan, code_beside, given = _plan_to_run(plan, resume, resumed)
    # step: modules and plugins beside the plan import as they would beside a script.
    with plan_code(code_beside):
        loaded = _load_checked(plan)
        if resumed is not None and _another_plan(plan, loaded, resumed) and not apply_plan:
            fail_usage(f"--resume: {plan} is not the plan file of run {resumed.run_id} and differs from the v{resumed.version} "
                       "it last applied; leave PLAN out to continue with that version, or pass --apply-plan to apply this one")
        _check_executor(loaded, ray, resumed)
        ws, run_id, where = _places(workspace, run_dir, resume, resumed)
        options = RunOptions(
            plan_path=plan.resolve(),
            run_dir=where.resolve(),
            workspace=ws,
            run_id=run_id,
            ui=not no_ui and is_tty(),
            # A kept copy of the plan is not the file anyone edits.
            watch_plan=watch_plan and given,
            keep_running=keep_running,
            durability=durability,
            ray=ray,
            otel=trace,
            code=code_paths(code_beside, plan_modules(loaded)),
        )
        raise typer.Exit(_run_session(options, loaded, resumed))


def _resumable(run_dir: Path, force: bool) -> Resumed | None:
    """What ``--resume`` continues from (None: the run died before its first event), after
    its warnings; a run that finished its tasks or whose process still runs is refused."""
    from ..views.runs import process_alive
    from .resume import load_resumed

    try:
        resumed = load_resumed(run_dir, force=force)
    except AgentctlError as exc:
        hint = "; continue anyway with --force" if getattr(exc, "line", None) and not force else ""
        fail_usage(f"--resume: {exc}{hint}")
    if resumed is None:
        return None
    for warning in resumed.warnings:
        typer.echo(f"warning: {warning}", err=True)
    finished = resumed.state.finished
    # Interrupted or stopped runs are continued; a run whose tasks all ended is done.
    if finished is not None and finished.reason in ("completed", "failed"):
        fail_usage(f"--resume: run {resumed.run_id} has finished ({finished.reason}, {finished.status}); "
                   "nothing to resume")
    if finished is None and resumed.state.pid is not None and process_alive(resumed.state.pid):
        # Two processes appending to one log would interleave their events.
        fail_usage(f"--resume: run {resumed.run_id} is still running (pid {resumed.state.pid}); "
                   f"stop it first: agentctl stop {run_dir}")
    return resumed


def _plan_to_run(plan: Path | None, resume: Path | None, resumed: Resumed | None) -> tuple[Path, Path, bool]:
    """The plan file to load, where its step modules and plugins are, and whether it was
    given (else it is the resumed run's kept copy of the version it applied last)."""
    if plan is not None:
        if not plan.exists():
            fail_usage(f"plan file not found: {plan}")
        return plan, plan, True
    if resume is None or resumed is None or resumed.applied is None:
        fail_usage("missing PLAN" + (f": the run in {resume} kept no plan version to continue with" if resume else ""))
    # The kept copy is the plan; its step modules and plugins are beside the original.
    copy = _applied_copy(resume, resumed.version)
    return copy, Path(resumed.state.plan_file) if resumed.state.plan_file else copy, False


def _load_checked(path: Path) -> Plan:
    """The plan at ``path``, with its plugins loaded and its code and approval gates
    checked; every problem is printed and the run refused (exit 2) if there is any."""
    from ..plan.load import line_finder, load_plan
    from ..reconcile.preflight import check_code, check_gates, load_plugins
    from ..services.tools import default_registry

    try:
        loaded = load_plan(path)
        find = line_finder(loaded.source)
        registry = default_registry()
        load_plugins(loaded.settings.plugins, registry, loaded.source, find)
        problems = check_code(loaded, find) + check_gates(loaded, registry.names(), find)
    except PlanError as exc:
        problems = [exc, *exc.more]
    fail_plan(problems)
    return loaded


def _check_executor(loaded: Plan, ray: str | None, resumed: Resumed | None) -> None:
    """Refuse a run whose tools have nowhere to run (no container engine here, a bad
    ``--ray`` address, Ray not installed); warn of containers a resumed run's dead process
    may have left on a cluster this resume does not use."""
    from ..plan.schema import EXECUTOR_ADDRESS
    from ..services.tools.docker import check_docker, uses_docker
    from .clusters import left_on_clusters, ray_missing
    from .session import executor_of

    if executor_of(loaded, ray).kind == "local" and (engine_problem := check_docker(loaded)) is not None:
        fail_usage(engine_problem)
    if ray is not None and not re.match(EXECUTOR_ADDRESS, ray):
        fail_usage(f"--ray: expected auto, local, HOST:PORT or ray://HOST:PORT, got {ray!r}")
    if executor_of(loaded, ray).kind == "ray" and (missing := ray_missing()) is not None:
        fail_usage(missing)
    if resumed is not None and uses_docker(loaded):
        executor = executor_of(loaded, ray)
        for warning in left_on_clusters(resumed.state, executor.address if executor.kind == "ray" else None):
            typer.echo(f"warning: {warning}", err=True)


def _places(workspace: Path | None, run_dir: Path | None, resume: Path | None,
            resumed: Resumed | None) -> tuple[Path, str, Path]:
    """The run's workspace (resolved), run id and run directory, each checked usable."""
    from .session import new_run_id

    if resume is None and run_dir is not None:
        _check_fresh_run_dir(run_dir)
    ws = (workspace or Path.cwd()).resolve()
    if not ws.is_dir():
        fail_usage(f"--workspace: not a directory: {ws}")
    run_id = resumed.run_id if resumed else new_run_id()
    _check_writable(ws, "--workspace", create=False)
    _check_writable(run_dir or RUNS / run_id, "--run-dir" if run_dir else "run directory")
    return ws, run_id, run_dir or RUNS / run_id


def _run_session(options: RunOptions, loaded: Plan, resumed: Resumed | None) -> int:
    """Run the plan; say on stderr how the run ended (and why it failed); its exit code."""
    import anyio

    from .session import Session

    session = Session(options, loaded, resumed)
    try:
        code = anyio.run(session.run)
    except* AgentctlError as group:
        # A run that could not be set up (an MCP server that did not start, say): the
        # events so far are on disk; say what failed, without a traceback.
        for message in dict.fromkeys(str(error) for error in leaves(group)):
            print_error(message)
        code = EXIT_USAGE
    if code != EXIT_USAGE:  # a run that could not be set up failed for that one reason
        for line in session.failure_lines():
            print_error(line)
    status = "" if session.status == session.reason else f" ({session.status})"
    typer.echo(f"run {options.run_id} {session.reason}{status}; events: {options.run_dir / 'events.jsonl'}", err=True)
    if session.lost is not None:
        print_error(f"{session.lost}; the run is resumable: agentctl run --resume {options.run_dir} --ray ADDRESS")
    return code


def _otel_config(flag: bool, endpoint: str | None, content: bool) -> OtelConfig | None:
    """The run's trace export, if asked for. Asked on the command line without the SDK: one
    line, exit 2; asked only by the environment (``OTEL_EXPORTER_OTLP_ENDPOINT``): a warning."""
    import os

    from .otel import INSTALL_HINT, otel_config, require_sdk, sdk_installed

    config = otel_config(flag, endpoint, content, os.environ)
    if config is not None and (flag or endpoint):
        require_sdk()
    elif config is not None and not sdk_installed():
        typer.echo(f"warning: OTEL_EXPORTER_OTLP_ENDPOINT is set but no trace is exported: {INSTALL_HINT}", err=True)
        return None
    return config


def _another_plan(path: Path, plan: Plan, resumed: Resumed) -> bool:
    """Whether resuming with ``plan`` would switch the run to another plan: a different file
    whose content differs from the version applied last (edits of the run's own plan file,
    made while it was down, are applied as they would have been live)."""
    if resumed.applied is None or plan == resumed.applied:
        return False
    own = resumed.state.plan_file
    return own is None or Path(own).resolve() != path.resolve()


def _run_dir_of(run: Path) -> Path:
    """``--resume``'s run directory: the path given, or a run id (or the start of one) under ``.agentctl/runs``."""
    if not run.exists() and len(run.parts) == 1:
        return run_by_id(str(run)) or run
    return run


def _applied_copy(run_dir: Path, version: int) -> Path:
    """The file a run kept of plan version ``version`` (``plan.vN.yaml`` or ``.edn``)."""
    return next(iter(sorted(run_dir.glob(f"plan.v{version}.*"))))


def _check_writable(path: Path, what: str, *, create: bool = True) -> None:
    """Make sure files can be created in ``path`` (made first when ``create``); else one line, exit 2."""
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as error:
        hint = " (give --run-dir DIR on a writable disk)" if what == "run directory" else ""
        fail_usage(f"{what}: cannot write in {path}: {error.strerror or error}{hint}")


def _check_fresh_run_dir(run_dir: Path) -> None:
    """A new run needs a directory of its own: a second run appended to an old log would
    restart its ``seq`` at 1 and replay, resume and diff would mix the two."""
    if run_dir.exists() and not run_dir.is_dir():
        fail_usage(f"--run-dir: not a directory: {run_dir}")
    events = run_dir / "events.jsonl"
    if events.exists() and events.stat().st_size > 0:
        fail_usage(f"--run-dir: {run_dir} already holds a run; continue it with --resume {run_dir} or pick a new directory")
