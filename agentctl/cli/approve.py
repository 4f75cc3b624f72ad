"""``agentctl approve`` and ``agentctl deny``: a person answers a call an approval gate holds.

The answer goes through the run's control channel (:mod:`agentctl.cli.control`, ops
``approve`` and ``deny``), never through a file an agent could write; the command returns
once the run has logged it. ``agentctl watch``'s approval keys send the same requests
(:func:`~agentctl.cli.runs.control_answer`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from .complete import complete_run_then_call
from .errors import fail_usage

if TYPE_CHECKING:
    from ..events.run_state import RunState

_TARGETS_HELP = "The run directory or run id [default: the newest running run], then the held call's id."


def _targets(targets: list[str]) -> tuple[Optional[Path], str]:
    if len(targets) > 2:
        fail_usage(f"expected [RUN] CALL, got {len(targets)} arguments: {' '.join(targets)}")
    return (Path(targets[0]) if len(targets) == 2 else None), targets[-1]


def _answer(targets: list[str], granted: bool, text: Optional[str]) -> None:
    from .runs import answer_request, ask_run, steered_run

    run, call = _targets(targets)
    info = steered_run(run)
    reply = ask_run(info, answer_request(call, granted, text), settled=_settled(call))
    verb = "approved" if granted else "denied"
    typer.echo(f"{verb} call {call} in run {info.state.run_id} (event #{reply.get('seq')})")


def _settled(call: str) -> Callable[[RunState], str]:
    """What a run's log says of ``call`` when its process died before it confirmed an answer."""
    def settled(state: RunState) -> str:
        from ..services.approvals import Answer

        record = state.approvals.get(call)
        if record is None or record.get("answer") is None:
            return f"its log has no answer to call {call}: the resumed run holds it again"
        answer = Answer(record["answer"] == "granted", str(record.get("by") or "user"), record.get("text"))
        return f"its log has call {call} {answer.describe()}"

    return settled


def approve_command(
    targets: list[str] = typer.Argument(..., metavar="[RUN] CALL", help=_TARGETS_HELP, autocompletion=complete_run_then_call),
    note: Optional[str] = typer.Option(None, "--note", metavar="TEXT", help="A note logged with the approval."),
) -> None:
    """Approve a held call: it runs.

    Exit 2 for an unknown call, one already answered, or a run not live.
    """
    _answer(targets, True, note)


def deny_command(
    targets: list[str] = typer.Argument(..., metavar="[RUN] CALL", help=_TARGETS_HELP, autocompletion=complete_run_then_call),
    reason: str = typer.Option(..., "--reason", metavar="TEXT", help="Why: the agent is told (its tool error)."),
) -> None:
    """Deny a held call: its agent is told why.

    The agent gets a tool error with the reason. Exit 2 as for approve.
    """
    if not reason.strip():
        fail_usage("--reason: expected a reason the agent is told, got an empty one")
    _answer(targets, False, reason)
