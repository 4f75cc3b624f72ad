"""Fast constructors for frozen, slotted dataclasses on hot paths.

A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__``, which
on the message path costs more than routing the message. :func:`slot_maker` builds a
constructor that fills the slots directly; the objects are the same (same class, fields,
equality, and immutable once built). Generated with ``exec``, as ``dataclasses`` itself
generates ``__init__``, so there is no per-field loop at call time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def slot_maker(cls: type[T]) -> Callable[..., T]:
    """A positional constructor for ``cls`` that takes every field, in field order."""
    names = list(cls.__slots__)  # type: ignore[attr-defined]
    args = ", ".join(names)
    body = "\n".join(f"    _set_{n}(obj, {n})" for n in names)
    source = f"def make({args}):\n    obj = _new(_cls)\n{body}\n    return obj\n"
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    scope.update({f"_set_{n}": getattr(cls, n).__set__ for n in names})
    exec(source, scope)  # noqa: S102 - the source is built from the class's own slot names
    make = scope["make"]
    make.__doc__ = f"Build a {cls.__name__} from its fields, in order, without __init__."
    return make
