"""How the CLI reports bad input: one clear line on stderr and exit code 2, no traceback.

The ``agentctl`` app (:mod:`agentctl.cli.app`) runs parsing and every command, including
ones added later, inside :func:`boundary`: usage errors, :class:`~agentctl.errors.AgentctlError` and file system
errors become one ``error: …`` line and exit 2, also when they arrive wrapped in the
exception groups of anyio task groups. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

import typer

# typer vendors click; these two are not re-exported by typer itself.
from typer._click.exceptions import BadParameter, NoArgsIsHelpError, UsageError

from ..errors import AgentctlError, PlanError, leaves

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail_usage(message: str) -> NoReturn:
    """Print ``error: message`` and exit with the usage code."""
    print_error(message)
    raise typer.Exit(EXIT_USAGE)


def _stderr_line(label: str, message: str) -> None:
    # Plain text on purpose: file names and messages may hold "[...]" that Rich markup would eat.
    style = "\x1b[1;31m{}\x1b[0m" if color(sys.stderr) else "{}"
    sys.stderr.write(f"{style.format(label)} {message}\n")
    sys.stderr.flush()


def color(stream: TextIO) -> bool:
    """Whether to colour what goes to ``stream``: a terminal, unless ``NO_COLOR`` is set
    (https://no-color.org) or ``TERM`` is ``dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def print_error(message: str) -> None:
    """Print ``error: message`` on stderr, secrets hidden (:mod:`agentctl.redact`)."""
    from ..redact import Redactor  # not at import: start-up stays cheap

    _stderr_line("error:", Redactor.for_run(os.environ).text(message))


def print_plan_error(exc: PlanError) -> None:
    """Print a plan error with where and what."""
    _stderr_line("invalid plan:", exc.render())


def fail_plan(problems: list[PlanError]) -> None:
    """Print every plan problem, one line each, and exit with the usage code if there is any."""
    for problem in problems:
        print_plan_error(problem)
    if problems:
        raise typer.Exit(EXIT_USAGE)


def refuse_nul(args: list[str]) -> None:
    """Refuse a command line with a NUL byte in an argument, before any command sees it.

    No shell can pass one (argv is C strings), but a program calling the app can; no file
    name, run id or value may hold one, and the OS would refuse it deep inside a command.

    Raises:
        UsageError: naming the first such argument and its place.
    """
    for number, arg in enumerate(args, 1):
        if "\x00" in arg:
            raise UsageError(f"command-line argument {number} holds a NUL byte (expected none): {arg!r}")


def _is_input_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno != errno.EPIPE  # a closed pipe is typer's to handle quietly
    return isinstance(exc, (AgentctlError, typer.TyperException, typer.Exit)) and not isinstance(exc, NoArgsIsHelpError)


def _report(exc: BaseException) -> int:
    """Print one line for an input error; the exit code it means."""
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, UsageError):
        command = exc.ctx.command_path if exc.ctx is not None else "agentctl"
        message = _bad_value(exc) if isinstance(exc, BadParameter) else None
        print_error(f"{message or exc.format_message().rstrip('.')} (see '{command} -h')")
    elif isinstance(exc, typer.TyperException):
        print_error(exc.format_message())
    elif isinstance(exc, PlanError):
        print_plan_error(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print_error(f"{where}{exc.strerror.lower()}")
    else:
        print_error(str(exc))
    return EXIT_USAGE


#: What a value of a parameter had to be, by the kind of the validation error Typer raised.
_EXPECTED = {"int_parsing": "an integer", "float_parsing": "a number", "greater_than_equal": "a number >= {ge:g}",
             "greater_than": "a number > {gt:g}", "less_than_equal": "a number <= {le:g}", "less_than": "a number < {lt:g}"}


def _bad_value(exc: BadParameter) -> str | None:
    """``--speed: expected a number >= 0, got '-1'``, from the validation error behind ``exc``
    (None when it is not one this knows: the caller prints Typer's own message)."""
    param = exc.param
    errors = getattr(exc.__cause__, "errors", None)
    if param is None or not callable(errors) or not errors():
        return None
    first: dict[str, Any] = errors()[0]
    choices = param.type_descriptor.choices if param.type_descriptor.is_choice else None
    if choices:
        expected = "one of " + ", ".join(str(getattr(c, "value", c)) for c in choices)
    elif first.get("type") in _EXPECTED:
        expected = _EXPECTED[first["type"]].format(**first.get("ctx", {}))
    else:
        return None
    label = "/".join(param.opts) if param.param_type_name == "option" else str(param.metavar or param.name)
    return f"{label}: expected {expected}, got {first.get('input')!r}"


@contextmanager
def boundary() -> Iterator[None]:
    """Turn bad input raised inside into one line on stderr and ``typer.Exit``.

    Exception groups (from anyio task groups) are unwrapped: if every exception inside is
    one this handles, each distinct message is printed once; a Ctrl-C inside one exits 130.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, NoArgsIsHelpError):
        raise
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BaseException as exc:
        found = list(leaves(exc))
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in found):
            raise typer.Exit(EXIT_INTERRUPTED) from None
        if not all(_is_input_error(leaf) for leaf in found):
            raise
        codes, seen = [], set()
        for leaf in found:
            key = (type(leaf), str(leaf))
            if key not in seen:
                seen.add(key)
                codes.append(_report(leaf))
        raise typer.Exit(max(codes)) from None
