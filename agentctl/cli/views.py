"""``agentctl watch`` and ``agentctl replay``: views of a run built from its events."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from .complete import complete_run
from .errors import fail_usage, print_error
from .jsonout import Output, output_option, print_json
from .locate import resolve_run

if TYPE_CHECKING:
    from rich.console import Console

    from ..views.follow import FollowEnd

#: The most of a first line read to tell whether a file is an event log.
_SNIFF = 1 << 16


def _console() -> Console:
    """A console for views; piped output gets a wide, fixed width rather than Rich's 80."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def check_event_log(path: Path) -> None:
    """Refuse a file whose first line is not an event (a plan, a README, a binary).

    An empty file (a run just starting) and a torn first event (a run killed while
    writing it) pass: the readers know what to do with those.
    """
    import orjson

    from ..errors import LogError

    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror}") from None
    text = head.lstrip()
    first, newline, _ = text.partition(b"\n")
    if not text or (not newline and first.startswith(b'{"seq":')):
        return
    line = head[: len(head) - len(text)].count(b"\n") + 1  # blank lines before it
    where = f"{path}:{line}"
    try:
        event = orjson.loads(first)
    except orjson.JSONDecodeError:
        raise LogError(f"{where}: not an agentctl event log (not JSON)") from None
    if not isinstance(event, dict) or "seq" not in event or "type" not in event:
        raise LogError(f"{where}: not an agentctl event log (JSON, but not an event with seq and type)")


def events_file(target: Optional[Path]) -> Path:
    """The events file of a run directory or events file (default: the newest run), checked.

    A log that fails the integrity check resume makes (a seq gap, a duplicate, another run's
    events) is shown anyway, after a warning per problem (the first few) on stderr.
    """
    from ..events.integrity import scan_log

    path = target if target is not None and target.is_file() else resolve_run(target) / "events.jsonl"
    check_event_log(path)
    if path.is_file():
        for problem in scan_log(path):
            typer.echo(f"warning: {problem} (a resume would refuse this log)", err=True)
    return path


def blame_the_log(path: Path) -> AbstractContextManager[None]:
    """Run a view of the log at ``path``; on its failure, name the event of the log to blame
    (:func:`agentctl.events.check.blame_the_log`); ``typer.Exit`` passes as it is."""
    from ..events.check import blame_the_log as blame

    return blame(path, named=(typer.Exit,))


def watch_command(run: Optional[Path] = typer.Argument(None, help="A run directory, its events.jsonl or a run id [default: the newest run].", autocompletion=complete_run)) -> None:
    """Follow a run of another process live.

    Shows the run's agent tree as its events.jsonl grows.

    On a terminal, calls held for approval are answered with keys as in agentctl run's live
    view (up/down select, a approves, d denies with a typed reason) while the run is live;
    otherwise one line says why not. Plain lines when stdout is not a terminal. Ends with
    the run's exit code, or 1 (and says so) when the run's process is gone without having
    logged run/finished.
    """
    import anyio

    from ..events.fold import RunState
    from ..views.approval_keys import ApprovalKeys
    from ..views.watch import watch
    from .keys import read_keys
    from .runs import control_answer

    path = events_file(run)
    plain = not sys.stdout.isatty()
    state = RunState()
    approvals = None
    if not plain:
        why = _why_no_answers(path)
        if why is None:
            approvals = ApprovalKeys(control_answer(state))
        else:
            typer.echo(f"note: held calls cannot be answered from this view: {why}", err=True)
    keys = read_keys if approvals is not None else None
    with blame_the_log(path):
        watched = anyio.run(lambda: watch(path, _console(), plain=plain, state=state, approvals=approvals, keys=keys))
    raise typer.Exit(end_code(path.parent, watched.end))


def _why_no_answers(path: Path) -> str | None:
    """Why ``watch`` cannot answer the held calls of the run logging to ``path`` (it is not
    live), or None. A run that has logged nothing yet is taken as starting: its control
    channel is looked up as it comes."""
    from ..errors import LogError
    from ..views.runs import read_run
    from .runs import not_live

    if path.name != "events.jsonl":
        return f"{path} is not a run directory's events.jsonl"
    try:
        info = read_run(path.parent)
    except LogError:
        return None  # no log yet; a corrupt one is the follow's to report
    return None if info.state.run_id is None else not_live(info)


def end_code(run_dir: Path, end: FollowEnd) -> int:
    """The exit code of a follow that ended: the run's own, or ``EXIT_DEAD`` with a line saying why."""
    from ..views.runs import EXIT_DEAD, exit_code

    if end.dead_pid is not None:
        print_error(f"run in {run_dir}: its process (pid {end.dead_pid}) is gone without run/finished; "
                    f"continue it with: agentctl run --resume {run_dir}")
        return EXIT_DEAD
    return exit_code(end.finished)


def replay_command(
    run: Optional[Path] = typer.Argument(None, help="A run directory, its events.jsonl or a run id [default: the newest run].", autocompletion=complete_run),
    speed: float = typer.Option(1.0, "--speed", min=0.0, metavar="X", help="Playback speed (0 = as fast as possible)."),
    at: Optional[int] = typer.Option(None, "--at", min=0, metavar="SEQ", help="Show the state right after event SEQ."),
    summary: bool = typer.Option(False, "--summary", help="Print a summary of the run instead of playing it."),
    svg: Optional[Path] = typer.Option(None, "--svg", metavar="FILE", help="Save the view (at --at, or the end) as an SVG picture."),
    output: Output = output_option(),
) -> None:
    """Play a run's log back, or summarise or picture it.

    Plays at the speed it was logged (--speed), or jumps to any event (--at SEQ: time travel).
    """
    import anyio

    from ..events.fold import state_at
    from ..views.replay import replay
    from ..views.summary import render_summary, summarize, summary_object

    if output is Output.json and not summary:
        fail_usage("-o json goes with --summary (a playback is not one object)")
    path = events_file(run)
    if not path.exists():
        fail_usage(f"no events file at {path}")
    if svg is not None:
        _check_writable_file(svg)
    console = _console()
    if summary:
        with blame_the_log(path):
            found = summarize(state_at(path, at))
            if output is Output.json:
                print_json(summary_object(found))
            else:
                console.print(render_summary(found))
        return
    with blame_the_log(path):
        # Piped, there is nothing to animate: the final frame is printed at once.
        state = anyio.run(lambda: replay(path, console, speed=speed, at=at, svg=svg, live=sys.stdout.isatty()))
    if at is not None and state.last_seq < at:
        typer.echo(f"note: the log ends at event #{state.last_seq}; that is the state shown", err=True)


def _check_writable_file(path: Path) -> None:
    """Refuse, before any work, a file that cannot be written: its directory is missing or
    not writable, or it is a directory."""
    import os

    where = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        fail_usage(f"--svg: {path} is a directory (expected a file name)")
    if not where.is_dir():
        fail_usage(f"--svg: no such directory: {where}")
    if not os.access(where, os.W_OK):
        fail_usage(f"--svg: cannot write in {where}")
