"""How the CLI reports bad input: one clear line on stderr and exit code 2, no traceback."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from ..errors import PlanError

EXIT_USAGE = 2
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail_usage(message: str) -> NoReturn:
    """Print ``error: message`` and exit with the usage code."""
    print_error(message)
    raise typer.Exit(EXIT_USAGE)


def print_error(message: str) -> None:
    """Print ``error: message`` on stderr."""
    _err.print(f"[bold red]error:[/] {message}", markup=True)


def print_plan_error(exc: PlanError) -> None:
    """Print a plan error with where and what."""
    _err.print(f"[bold red]invalid plan:[/] {exc.render()}", markup=True)
