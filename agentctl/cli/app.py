"""The Typer app class of ``agentctl``: what every command gets without asking.

Used by :mod:`agentctl.cli.main`. Parsing and running any command happen inside
:func:`~agentctl.cli.errors.boundary` (bad input: one line, exit 2), ``-h`` works as
``--help`` everywhere, and usage lines name arguments as ``PLAN`` / ``[RUN]``.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from .errors import boundary, refuse_nul


class AgentctlCommand(TyperCommand):
    """A command whose usage line reads ``agentctl run [OPTIONS] PLAN``, as click's do."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument) and param.metavar:
                pieces.append(param.metavar)  # written out by the command's author, as shown
            elif isinstance(param, TyperArgument):
                name = (param.name or "").upper() + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class AgentctlGroup(TyperGroup):
    """The ``agentctl`` group: parsing and every command run inside the error boundary (and
    a command line with a NUL byte is refused first: :func:`~agentctl.cli.errors.refuse_nul`)."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        with boundary():
            refuse_nul(args)
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with boundary():
            return super().invoke(ctx)


class AgentctlTyper(typer.Typer):
    """A Typer app whose commands are :class:`AgentctlCommand` unless they ask otherwise."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", AgentctlGroup)
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        # Plain click help: help texts say "[default: …]", which Rich markup would swallow.
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or AgentctlCommand, **kwargs)
