"""The ``agentctl`` command: one module per command, joined here."""

from __future__ import annotations

import typer

from .. import __version__
from .app import AgentctlTyper
from .approve import approve_command, deny_command
from .batch import batch_command
from .describe import describe_command
from .export import export_command
from .gc import gc_command
from .inspect import diff_command, schema_command, validate_command
from .logs import logs_command
from .prune import prune_command
from .ps import ps_command
from .run import run_command
from .send import send_command
from .stop import stop_command
from .views import replay_command, watch_command

app = AgentctlTyper(
    name="agentctl",
    help="Run and watch trees of LLM agents driven by a plan file.",
    no_args_is_help=True,
)
app.command("run")(run_command)
app.command("batch")(batch_command)
app.command("watch")(watch_command)
app.command("replay")(replay_command)
app.command("send")(send_command)
app.command("stop")(stop_command)
app.command("approve")(approve_command)
app.command("deny")(deny_command)
app.command("ps")(ps_command)
app.command("logs")(logs_command)
app.command("prune")(prune_command)
app.command("describe")(describe_command)
app.command("validate")(validate_command)
app.command("schema")(schema_command)
app.command("diff")(diff_command)
app.command("gc")(gc_command)
app.command("export")(export_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentctl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")) -> None:
    """Run and watch trees of LLM agents driven by a plan file."""


def main() -> None:
    """Console-script entry point."""
    app()
