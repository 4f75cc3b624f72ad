"""Shell completion of values: run ids and run directories, agent ids, held calls, plan files.

Passed as ``autocompletion=`` to the arguments and options that take them, in the command
modules; the shell asks on every Tab, through click's ``_AGENTCTL_COMPLETE`` protocol. So
each completer is quick (a run is read from the end of its log where that is enough), only
reads (a run is never asked anything over its control channel, nothing is written), and
never fails: a damaged run directory or log gives fewer candidates, never a traceback or a
line on the terminal the person is typing in.

Nothing heavy is imported before a Tab asks (``agentctl --help`` stays as quick as it was).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .locate import RUNS

if TYPE_CHECKING:
    from ..views.runs import RunInfo

#: What a completer gives: values, or (value, help) pairs that zsh and fish show beside them.
Candidates = list[tuple[str, str]]

#: The files ``agentctl run`` takes as a plan.
PLAN_SUFFIXES = (".yaml", ".yml", ".edn")


def quiet(completer: Callable[[Any, str], Candidates]) -> Callable[..., Candidates]:
    """``completer(ctx, incomplete)`` as Typer calls it, giving no candidates, and printing
    nothing, when it fails: a Tab never ends in a traceback or an error line."""

    @wraps(completer)
    def complete(ctx: Any, incomplete: str) -> Candidates:
        try:
            return completer(ctx, incomplete)
        except (Exception, SystemExit):  # a damaged log, a file gone meanwhile: nothing to offer
            return []

    return complete


def _run_dirs() -> list[Path]:
    """The run directories under ``.agentctl/runs`` (those with an ``events.jsonl``), newest
    first by id. Listed here, not by :func:`agentctl.views.runs.list_runs`: importing the
    views costs a Tab several times what listing does."""
    try:
        with os.scandir(RUNS) as entries:
            found = [Path(e.path) for e in entries if _is_run_dir(Path(e.path))]
    except OSError:
        return []
    return sorted(found, reverse=True)


def _run_ids() -> list[str]:
    """The run ids under ``.agentctl/runs``, newest first."""
    return [d.name for d in _run_dirs()]


def _paths(incomplete: str, keep: Callable[[Path], bool], what: str) -> Candidates:
    """Entries of the directory ``incomplete`` names so far that ``keep`` takes, and its
    other directories (ending with ``/``, to go on into them); hidden ones only when asked."""
    folder, slash, start = incomplete.rpartition("/")
    prefix = folder + slash
    found: Candidates = []
    with os.scandir(os.path.expanduser(prefix) if prefix else ".") as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.name.startswith(start) or (entry.name.startswith(".") and not start.startswith(".")):
                continue
            path = Path(entry.path)
            if keep(path):
                found.append((prefix + entry.name, what))
            elif entry.is_dir():
                found.append((prefix + entry.name + "/", "directory"))
    return found


def _is_run_dir(path: Path) -> bool:
    return (path / "events.jsonl").is_file()


@quiet
def complete_run(ctx: Any, incomplete: str) -> Candidates:
    """RUN: run ids under ``.agentctl/runs``; once it looks like a path, run directories."""
    if "/" in incomplete or incomplete.startswith((".", "~")):
        return _paths(incomplete, _is_run_dir, "run directory")
    # By the start of the id only: Typer keeps only candidates that start with what was typed,
    # so the start of a random tail, which RUN takes too, cannot be completed.
    return [(i, "run") for i in _run_ids() if i.startswith(incomplete)]


@quiet
def complete_plan(ctx: Any, incomplete: str) -> Candidates:
    """PLAN: plan files (``*.yaml``, ``*.yml``, ``*.edn``) and directories to look in."""
    return _paths(incomplete, lambda p: p.suffix in PLAN_SUFFIXES and p.is_file(), "plan")


def _given_run(ctx: Any) -> Path | None:
    """The run directory of the RUN given so far on the command line (``--run`` or the RUN
    argument), None when none was given or it names none."""
    value = ctx.params.get("run")
    if value is None and ctx.args and any(p.name == "run" and p.param_type_name == "argument" for p in ctx.command.params):
        # An option still waiting for its value (the one being completed) stops click's
        # parsing before it assigns the arguments: they are left in ctx.args.
        value = ctx.args[0]
    return None if value is None else _run_dir(str(value))


def _run_dir(ref: str) -> Path | None:
    """The run directory RUN names (a directory, its events file, a run id or the start of
    one): as :func:`~agentctl.cli.locate.resolve_run` finds it, but silent when it does not."""
    path = Path(ref)
    if path.is_file():
        return path.parent
    for found in (path, RUNS / ref):
        if _is_run_dir(found):
            return found
    matches = [RUNS / i for i in _run_ids() if i.startswith(ref) or i.rpartition("-")[2].startswith(ref)]
    return matches[0] if len(matches) == 1 else None


def _newest() -> RunInfo | None:
    """The newest run, as ``describe`` and ``logs`` pick it by default."""
    # The most recently written, as resolve_run takes it (agentctl.views.watch.newest_run).
    return _folded(max(_run_dirs(), key=lambda d: d.stat().st_mtime, default=None))


def _newest_live() -> RunInfo | None:
    """The newest run still running, as ``send``, ``stop``, ``approve`` and ``deny`` pick it
    by default; a finished one is told by the end of its log, without reading the rest."""
    from ..errors import AgentctlError
    from ..views.runs import read_run_end

    for run_dir in _run_dirs():
        try:
            if read_run_end(run_dir).finished is None and (info := _folded(run_dir)) is not None and info.alive:
                return info
        except AgentctlError:
            continue  # a damaged log: not a run to steer
    return None


def _folded(run_dir: Path | None) -> RunInfo | None:
    from ..views.runs import read_run

    return None if run_dir is None else read_run(run_dir)


def _agents(info: RunInfo | None, incomplete: str, *, live: bool) -> Candidates:
    """The agent ids of a run that start with ``incomplete`` (``live``: those not ended), in
    spawn order, each with its status."""
    if info is None:
        return []
    ended = ("done", "failed", "stopped")
    return [(a.id, a.status) for a in info.state.agents.values()
            if a.id.startswith(incomplete) and not (live and a.status in ended)]


def _calls(info: RunInfo | None, incomplete: str) -> Candidates:
    """The calls a run holds for approval now whose id starts with ``incomplete``, each with
    its agent and tool."""
    if info is None:
        return []
    return [(h["call_id"], f"{h.get('agent_id')} {h.get('tool')}") for h in info.state.held()
            if str(h["call_id"]).startswith(incomplete)]


def _then(first: Candidates, more: Iterable[tuple[str, str]]) -> Candidates:
    seen = {value for value, _ in first}
    return first + [c for c in more if c[0] not in seen]


@quiet
def complete_live_agent(ctx: Any, incomplete: str) -> Candidates:
    """``send --to`` and ``stop --agent``: the agents of the run (``--run`` or RUN, else the
    newest unfinished one) that have not ended."""
    run_dir = _given_run(ctx)
    return _agents(_folded(run_dir) if run_dir else _newest_live(), incomplete, live=True)


@quiet
def complete_agent(ctx: Any, incomplete: str) -> Candidates:
    """``logs --agent``: every agent of the run given (else the newest run)."""
    run_dir = _given_run(ctx)
    return _agents(_folded(run_dir) if run_dir else _newest(), incomplete, live=False)


def _run_then(ctx: Any, name: str, incomplete: str, values: Callable[[RunInfo | None, str], Candidates],
              newest: Callable[[], RunInfo | None]) -> Candidates:
    """For ``[RUN] X`` (the argument ``name``): after a RUN, that run's ``values``; first,
    those of the run taken by default (``newest``), then the run ids."""
    given: list[str] = [str(v) for v in ctx.params.get(name) or ()]
    if len(given) >= 2:
        return []
    if len(given) == 1:
        return values(_folded(_run_dir(given[0])), incomplete)
    return _then(values(newest(), incomplete), complete_run(ctx, incomplete))


@quiet
def complete_run_then_agent(ctx: Any, incomplete: str) -> Candidates:
    """``describe [RUN] AGENT``: the agents of the RUN given, else of the newest run, and run ids."""
    return _run_then(ctx, "args", incomplete, lambda info, start: _agents(info, start, live=False), _newest)


@quiet
def complete_run_then_call(ctx: Any, incomplete: str) -> Candidates:
    """``approve``/``deny [RUN] CALL``: the calls the RUN given holds, else those of the
    newest running run, and run ids."""
    return _run_then(ctx, "targets", incomplete, _calls, _newest_live)
