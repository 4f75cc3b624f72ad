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
    """A command whose usage line reads ``agentctl run [OPTIONS] PLAN``, as click's do, and
    whose help lists arguments by that same name, without Typer's ``<path>`` type labels.

    An argument is named by its metavar (as the author wrote it), else by its name in capitals;
    that name is also what "Missing argument 'PLAN'" says.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and not param.metavar:
                param.metavar = (param.name or "").upper() + ("..." if param.nargs != 1 else "")

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(_usage_name(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                arguments.append((str(param.metavar), record[1]))
            else:
                options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def _usage_name(param: TyperArgument) -> str:
    """``PLAN``, or ``[RUN]`` when it may be left out (a metavar written with brackets stays as written)."""
    name = str(param.metavar)
    return name if param.required or name.startswith("[") else f"[{name}]"


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
