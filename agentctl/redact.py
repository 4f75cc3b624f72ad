"""One redactor for everything that leaves the process: the event log, plain lines, the live
view, error lines.

Used by :class:`agentctl.events.log.EventLog` on every event before it is written or shown
(so ``events.jsonl``, checkpoints, ``watch``, ``replay``, plain output and the live view only
ever see redacted events), by the tool registry for declared secret arguments, by the LLM
HTTP client for its error messages and by the CLI for the lines it prints.

Two rules, both replacing with ``***``:

* **By key.** A mapping value is hidden, whatever it holds, when its key names a secret:
  the key split into words (at ``_``, ``-``, ``.``, spaces and camelCase humps) holds one of
  :data:`SECRET_WORDS` (``key``, ``token``, ``secret``, ``password``, ``authorization``...).
  So ``api_key``, ``OPENAI_API_KEY``, ``X-Auth-Token``, ``clientSecret`` and ``db_password``
  are hidden; ``max_tokens``, ``keys`` and ``tokenizer`` are not.
* **By value.** Every secret the run knows (:meth:`Redactor.for_run`: the values of
  environment variables whose names match the key rule, such as provider API keys; of the
  variables named in ``settings.secrets``; of MCP servers' ``env`` entries whose names match
  the key rule) is replaced wherever it appears inside a string or a key, and a number whose
  JSON text holds one is replaced whole. Values shorter than :data:`MIN_SECRET` characters
  are not scanned for: they would hide ordinary text.

  A secret is also found spelled the ways a program quotes it inside a string
  (:func:`spellings`): JSON-escaped (``json.dumps``, either ``ensure_ascii``; as when a tool
  result or an error message embeds a reply's JSON text) and ``repr``-escaped (as in
  ``FileNotFoundError``'s message), and each of those quoted once more (JSON inside JSON,
  such as a tool call's ``arguments`` string inside a logged reply). A secret whose text
  appears in an event line outside any one string (a secret that is itself a JSON fragment,
  spelled by the line's own punctuation) hides the whole field that spells it (only
  ``seq``, ``t``, ``run_id`` and ``type`` are never hidden).

A secret is found URL-encoded too (:func:`encodings`: ``quote``, ``quote_plus``), as a
password sits in a connection URL or a query string.

Not recognised: a secret split across two strings (or fields, or events), or transformed
otherwise (base64, hex, reversed, whitespace collapsed, quoted three times over). Base64 was
measured: hunting each secret at the three offsets it can take inside a longer base64 text,
in both alphabets, took the bench's append of events with ten known secrets from 0.81 to
0.44 of the rate with redaction off (bench/RESULTS.md), so it is not done.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import orjson

__all__ = ["MIN_SECRET", "REDACTED", "SECRET_WORDS", "Redactor", "encodings", "is_secret_key", "spellings"]

REDACTED = "***"
#: Words that make a key secret.
SECRET_WORDS = frozenset({
    "key", "apikey", "token", "secret", "password", "passwd", "passphrase", "pwd", "authorization", "auth",
    "credential", "credentials", "cookie", "bearer", "signature", "privatekey",
})
#: Environment variables whose names look secret but whose values are not: the shell's
#: working directories (``pwd`` as in "password" would hide the run's own paths everywhere).
NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD"})
#: Shortest value scanned for as a known secret.
MIN_SECRET = 6

_HUMP = re.compile(r"([a-z0-9])([A-Z])")
_SPLIT = re.compile(r"[^A-Za-z0-9]+")
_key_cache: dict[str, bool] = {}
_plain_keys: set[Any] = set()  # keys known not to be secret
_MAX_CACHED = 10_000
# Values whose keys the cheap test can see; anything else (a msgspec Struct, a dataclass, a
# custom Mapping) is encoded by to_jsonable and only the slow path sees inside it.
_LEAVES = frozenset((str, int, float, bool, type(None)))
_MAX_DEPTH = 254  # orjson's own nesting limit
_NUMBERS = (int, float)
_PLAIN_NON_STR = frozenset((int, float, bool, type(None)))  # dict keys that cannot spell a word
_FRAME = frozenset(("seq", "t", "run_id", "type"))  # an event's own framing, never hidden
_QUOTINGS = 2  # how many times over a secret may be quoted and still be found (JSON in JSON)


def is_secret_key(key: str) -> bool:
    """Whether a key names a secret (``api_key``, ``X-Auth-Token``; not ``max_tokens``)."""
    known = _key_cache.get(key)
    if known is None:
        words = _SPLIT.split(_HUMP.sub(r"\1_\2", key).lower())
        known = any(w in SECRET_WORDS for w in words) or "apikey" in key.lower().replace("_", "").replace("-", "")
        if len(_key_cache) < _MAX_CACHED:
            _key_cache[key] = known
    return known


def _json_inner(text: str, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


def _repr_inner(text: str) -> str:
    # `text + '"'` makes repr pick single quotes, as it does for any string holding `"`.
    return repr(text + '"')[1:-2]


def _quotings(text: str) -> set[str]:
    """``text`` as it reads inside one quoted string: JSON (orjson's spelling is
    ``ensure_ascii=False``'s), and repr in single quotes and in double quotes."""
    single = _repr_inner(text)
    # repr escapes a `'` only in single quotes; every `\'` in `single` is such an escape.
    return {_json_inner(text, True), _json_inner(text, False), single, single.replace("\\'", "'")}


def spellings(secret: str) -> frozenset[str]:
    """``secret`` and the ways it reads once or twice quoted (see the module docstring)."""
    found = {secret}
    layer = {secret}
    for _ in range(_QUOTINGS):
        layer = {q for text in layer for q in _quotings(text)} - found
        found |= layer
    return frozenset(found)


def _header_values(text: str) -> list[str]:
    """``text`` (``name=value,name=value``, values URL-encoded) and each value, decoded and not."""
    values = [text]
    for item in text.split(","):
        value = item.partition("=")[2].strip()
        values += [value, unquote(value)]
    return values


def encodings(secret: str) -> frozenset[str]:
    """``secret`` URL-encoded (``quote``, with ``/`` safe or not, and ``quote_plus``), where that differs."""
    return frozenset({quote(secret), quote(secret, safe=""), quote_plus(secret)} - {secret})


def _in_line(spelling: str) -> set[bytes]:
    """The bytes an event line holds where ``spelling`` sits inside a string, and where it
    is the line's own text (a fragment such as ``{"a":1}`` written by the encoder)."""
    try:
        return {_json_inner(spelling, False).encode(), spelling.encode()}
    except UnicodeEncodeError:  # a lone surrogate: orjson writes no such line (its repr, yes)
        return set()


def _longest_first(items: Iterable[Any]) -> list[Any]:
    return sorted(set(items), key=lambda x: (-len(x), x))


class Redactor:
    """Hides secrets by key and by value (see the module docstring).

    Args:
        secrets: values to hide wherever they appear; those shorter than :data:`MIN_SECRET`
            characters are ignored.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = _longest_first(s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET)
        self.secrets: tuple[str, ...] = tuple(values)
        # Longest first, so a secret that contains another is hidden whole. A plain secret
        # (letters, digits, most punctuation) has one spelling: the regex is the same as before.
        texts = _longest_first(t for s in values for t in spellings(s) | encodings(s))
        self._values = re.compile("|".join(map(re.escape, texts))) if texts else None
        # As they appear in an encoded event; one regex finds any.
        encoded = _longest_first(b for t in texts for b in _in_line(t))
        self._search = re.compile(b"|".join(map(re.escape, encoded))).search if encoded else None

    @classmethod
    def for_run(cls, environ: Mapping[str, str], *, names: Iterable[str] = (),
                mcp_env: Iterable[Mapping[str, str]] = ()) -> Redactor:
        """The secrets a run knows: environment variables with secret names or listed in
        ``names`` (``settings.secrets``), and MCP servers' ``env`` entries with secret names;
        and variables of request headers (``OTEL_EXPORTER_OTLP_HEADERS``: credentials, such as
        ``Authorization=Basic%20...``), whole and each header's value."""
        listed = set(names)
        values = [v for k, v in environ.items() if k in listed or (is_secret_key(k) and k not in NOT_SECRET_ENV)]
        values += [h for k, v in environ.items() if "HEADERS" in _SPLIT.split(k.upper()) for h in _header_values(v)]
        values += [v for env in mcp_env for k, v in env.items() if k in listed or is_secret_key(k)]
        return cls(values)

    def text(self, text: str) -> str:
        """``text`` with every known secret replaced."""
        if self._values is None or not text:
            return text
        return self._values.sub(REDACTED, text)

    def value(self, value: Any) -> Any:
        """``value`` (JSON-like data) with secret keys' values and known secrets hidden.

        Returns a copy where something changed; the caller's data is never modified.
        """
        if isinstance(value, str):
            return self.text(value)
        if type(value) in _NUMBERS and self._values is not None and self._values.search(_json_number(value)):
            return REDACTED  # a secret of digits, written as a JSON number
        if isinstance(value, Mapping):
            return {
                (self.text(k) if isinstance(k, str) else k): REDACTED if isinstance(k, str) and is_secret_key(k)
                else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def event(self, line: bytes) -> dict[str, Any]:
        """The event an encoded line holds, every secret hidden (:meth:`value`, then the
        fields whose encoding still spells a known secret with the line's own punctuation).

        The line is decoded rather than the event taken as it was made: values the encoder
        converted (dataclasses, Structs, paths) are plain data there.
        """
        event = self.value(orjson.loads(line))
        search = self._search
        if search is not None and search(orjson.dumps(event)) is not None:
            event = {k: v if k in _FRAME or search(orjson.dumps(v)) is None else _unspelled(v, search)
                     for k, v in event.items()}
        return event

    def suspects(self, fields: Mapping[str, Any], line: bytes, walk: Sequence[str] | None = None) -> bool:
        """Whether an event may hold a secret: a cheap test before :meth:`value`.

        Args:
            fields: the event's fields, for the key rule (a walk over its dicts, whose
                key sets are mostly known plain already).
            line: the event encoded, for the value rule (one regex of the known secrets).
            walk: the only fields that may hold data the caller did not make itself (see
                :mod:`agentctl.events.payload`); ``None``: all of them.
        """
        search = self._search
        if search is not None and search(line) is not None:
            return True
        if walk is None:
            return _holds_secret_key(fields)
        for name in walk:
            value = fields.get(name)
            # Most payloads are one flat dict of known plain keys: settled here, without the
            # call into the recursive walk. One loop over the keys, each tested for a known
            # plain key and a leaf value, measured cheaper than `_plain_keys.issuperset`
            # then a loop over `values()` (callgrind, the bench's mix: 2,360 instructions a
            # call against 3,000).
            if type(value) is dict:
                for k in value:
                    if k not in _plain_keys or type(value[k]) not in _LEAVES:
                        break
                else:
                    continue
            if type(value) not in _LEAVES and _holds_secret_key(value, 1):
                return True
        return False


def _unspelled(value: Any, search: Callable[[bytes], Any]) -> Any:
    """``value`` (decoded JSON whose encoding ``search`` matches) with the smallest parts
    whose encoding does replaced: a secret spelled across a key and its value, or across
    items, takes the object or list that holds them."""
    if type(value) is dict:
        value = {k: v if search(orjson.dumps(v)) is None else _unspelled(v, search) for k, v in value.items()}
    elif type(value) is list:
        value = [v if search(orjson.dumps(v)) is None else _unspelled(v, search) for v in value]
    else:
        return REDACTED
    return REDACTED if search(orjson.dumps(value)) is not None else value


def _json_number(value: float) -> str:
    """A number as the event line spells it (orjson writes ``1e16`` where ``repr`` writes ``1e+16``)."""
    return str(value) if type(value) is int else orjson.dumps(value).decode()


def _holds_secret_key(value: Any, depth: int = 0) -> bool:
    """Whether a secret key may sit anywhere in ``value``; True for what the walk cannot see
    into, and past a depth the encoder itself would give up at (cycles included)."""
    if depth > _MAX_DEPTH:
        return True
    kind = type(value)
    if kind is dict:
        # Most dicts repeat keys seen before: one subset test in C instead of a lookup each.
        if not _plain_keys.issuperset(value) and _new_secret_key(value):
            return True
        for v in value.values():
            if type(v) not in _LEAVES and _holds_secret_key(v, depth + 1):
                return True
        return False
    if kind is list or kind is tuple:
        for v in value:
            if type(v) not in _LEAVES and _holds_secret_key(v, depth + 1):
                return True
        return False
    return kind not in _LEAVES


def _new_secret_key(d: dict[Any, Any]) -> bool:
    """Whether one of ``d``'s keys may be secret; the others join the keys known to be plain.

    Only a ``str``, or a number or ``None``, is plain: orjson writes a ``str`` subclass or an
    ``Enum`` key as its text, which the key rule must then see (on the decoded line).
    """
    plain = [k for k in d if (not is_secret_key(k) if type(k) is str else type(k) in _PLAIN_NON_STR)]
    if len(plain) < len(d):
        return True
    if len(_plain_keys) < _MAX_CACHED:
        _plain_keys.update(plain)
    return False


#: Hides secret keys only; for callers that know no secret values.
KEYS_ONLY = Redactor()
