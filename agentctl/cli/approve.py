"""``agentctl approve`` and ``agentctl deny``: a person answers a call an approval gate holds.

The answer goes through the run's control channel (:mod:`agentctl.cli.control`, ops
``approve`` and ``deny``), never through a file an agent could write; the command returns
once the run has logged it. ``agentctl watch``'s approval keys send the same requests
(:func:`control_answer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from .errors import fail_usage
from .views import resolve_run

if TYPE_CHECKING:
    from ..events.run_state import RunState
    from ..views.approval_keys import Answer as ApprovalAnswer

_TARGETS_HELP = "[RUN] CALL: the run directory or run id [default: the newest run], and the held call's id."


def _targets(targets: list[str]) -> tuple[Optional[Path], str]:
    if len(targets) > 2:
        fail_usage(f"expected [RUN] CALL, got {len(targets)} arguments: {' '.join(targets)}")
    return (Path(targets[0]) if len(targets) == 2 else None), targets[-1]


def answer_request(call_id: str, granted: bool, text: Optional[str]) -> dict[str, Any]:
    """The control channel's request that approves (``text``: a note) or denies (a reason) a call."""
    if granted:
        return {"op": "approve", "call_id": call_id, "note": text}
    return {"op": "deny", "call_id": call_id, "reason": text}


def control_answer(state: RunState) -> ApprovalAnswer:
    """What answers a held call from ``agentctl watch``'s keys: the request ``approve`` and
    ``deny`` send, to the socket ``state`` (the watched run, folded as it grows) names now.

    Blocking, as the keys are pressed: the run replies once the answer is logged, and a run
    that does not within 5 s gets its error shown on the panel instead.
    """
    from .control import ControlError, request

    def answer(call_id: str, granted: bool, text: Optional[str]) -> Optional[str]:
        if state.control is None:
            return "the run has not opened its control channel yet"
        try:
            reply = request(Path(state.control), answer_request(call_id, granted, text), timeout=5)
        except ControlError as exc:
            return str(exc)
        return None if reply.get("ok") else str(reply.get("error") or "refused by the run")

    return answer


def _answer(targets: list[str], granted: bool, text: Optional[str]) -> None:
    from .runs import ask_run, live_run

    run, call = _targets(targets)
    info = live_run(resolve_run(run))
    reply = ask_run(info, answer_request(call, granted, text))
    verb = "approved" if granted else "denied"
    typer.echo(f"{verb} call {call} in run {info.state.run_id} (event #{reply.get('seq')})")


def approve_command(
    targets: list[str] = typer.Argument(..., metavar="[RUN] CALL", help=_TARGETS_HELP),
    note: Optional[str] = typer.Option(None, "--note", help="A note logged with the approval."),
) -> None:
    """Approve a held call: it runs. Exit 2 for an unknown call, one already answered, or a run not live."""
    _answer(targets, True, note)


def deny_command(
    targets: list[str] = typer.Argument(..., metavar="[RUN] CALL", help=_TARGETS_HELP),
    reason: str = typer.Option(..., "--reason", help="Why: the agent is told (its tool error)."),
) -> None:
    """Deny a held call: the agent gets a tool error with the reason. Exit 2 as for approve."""
    if not reason.strip():
        fail_usage("--reason: expected a reason the agent is told, got an empty one")
    _answer(targets, False, reason)
