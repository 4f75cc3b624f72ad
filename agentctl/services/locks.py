"""Hierarchical read/write locks on workspace paths, held by agents.

Called by the runtime's action interpreter (``acquire_lock`` / ``release_lock`` actions)
and by the supervisor, which frees everything an agent held when it stops, finishes or
crashes (:meth:`LockService.release_all`).

A lock on a directory covers everything under it, and the workspace root (``"."``)
covers the whole workspace: two locks conflict when one path equals or is an ancestor
of the other, at least one of them is a write, and they belong to different agents.
Locks are reentrant per agent and a reader may upgrade to a writer. Waiters queue in
FIFO order and are handed the lock by the release that frees it (no polling), which
keeps the event order honest: ``lock/released`` then the waiter's ``lock/acquired``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from ..errors import LockError
from ..events.emit import Emit

__all__ = ["ROOT", "Conflict", "LockResult", "LockService", "LockStatistics", "normalize_path"]


#: How the workspace root is spelled in results and events.
ROOT = "."
_MODES = ("read", "write")


@dataclass(frozen=True, slots=True)
class Conflict:
    """A lock request refused because another agent holds an overlapping lock."""

    id: str
    path: str
    mode: str
    holder: str
    holder_path: str
    holder_mode: str


@dataclass(frozen=True, slots=True)
class LockResult:
    """The answer to an acquire: ``count`` is the holder's hold count when ``ok``."""

    ok: bool
    path: str
    mode: str
    conflict: Conflict | None = None
    count: int = 0


@dataclass(frozen=True, slots=True)
class LockStatistics:
    """Counters of a :class:`LockService`.

    Attributes:
        held: (path, agent) holds now.
        waiting: acquires waiting now.
        acquired: successful acquires, reentrant ones included.
        conflicts: ``lock/conflict`` events emitted.
        released: holds freed (by release or ``release_all``).
    """

    held: int
    waiting: int
    acquired: int
    conflicts: int
    released: int


def normalize_path(path: str) -> str:
    """Normalise a workspace-relative path to ``a/b`` form (``"."`` for the root).

    Raises:
        LockError: for an absolute path or one with a ``..`` component.
    """
    text = str(path).replace("\\", "/")
    if text.startswith("/") or (len(text) >= 2 and text[1] == ":"):
        raise LockError(f"lock path must be relative to the workspace, got {path!r}")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LockError(f"lock path may not contain '..', got {path!r}")
    return "/".join(parts) or ROOT


def _ancestors(path: str) -> list[str]:
    """``path`` and every ancestor of it, the root included."""
    if path == ROOT:
        return [ROOT]
    out = [ROOT, path]
    i = path.rfind("/")
    while i > 0:
        out.append(path[:i])
        i = path.rfind("/", 0, i)
    return out


def _overlap(a: str, b: str) -> bool:
    return a == b or a == ROOT or b == ROOT or b.startswith(a + "/") or a.startswith(b + "/")


class _Hold:
    __slots__ = ("count", "mode")

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.count = 0


class _Waiter:
    __slots__ = ("agent", "by", "event", "granted", "mode", "on_granted", "path", "queued_at")

    def __init__(self, agent: str, path: str, mode: str, by: str, queued_at: float,
                 on_granted: Callable[[], None] | None) -> None:
        self.queued_at = queued_at
        self.on_granted = on_granted
        self.agent = agent
        self.path = path
        self.mode = mode
        self.by = by
        self.event = anyio.Event()
        self.granted: LockResult | None = None


class LockService:
    """Grants, queues and frees path locks; every change is an event.

    Args:
        emit: the event sink, ``emit(type, agent_id=None, fields=None, /, **more) -> event``
            (fields as one dict, as keywords, or both).
    """

    def __init__(self, emit: Emit, *, id_prefix: str = "") -> None:
        self._emit = emit
        self._held: dict[str, dict[str, _Hold]] = {}  # path -> agent -> hold
        self._by_agent: dict[str, dict[str, _Hold]] = {}  # agent -> path -> hold
        self._waiters: deque[_Waiter] = deque()
        self._n_conflicts = 0
        self._id_prefix = id_prefix + "c"
        self._acquired = 0
        self._released = 0

    # -- queries -----------------------------------------------------------------

    def held_by(self, agent_id: str) -> dict[str, str]:
        """The paths ``agent_id`` holds, with their modes."""
        return {p: h.mode for p, h in self._by_agent.get(agent_id, {}).items()}

    def holders(self) -> dict[str, dict[str, str]]:
        """Every held path, with its holders and their modes."""
        return {p: {a: h.mode for a, h in hs.items()} for p, hs in self._held.items()}

    def statistics(self) -> LockStatistics:
        """Current counters."""
        return LockStatistics(
            held=sum(len(hs) for hs in self._held.values()),
            waiting=len(self._waiters),
            acquired=self._acquired,
            conflicts=self._n_conflicts,
            released=self._released,
        )

    # -- acquire -----------------------------------------------------------------

    def try_acquire(self, agent_id: str, path: str, mode: str = "write", *, by: str = "step") -> LockResult:
        """Take the lock now or report the conflict (emitting ``lock/conflict``). ``by``: who
        takes it, ``step`` (an agent's lock action) or ``tool`` (a tool holding the path
        while it writes); crash resume replays only the first kind.

        Raises:
            LockError: for a bad path or mode.
        """
        path, mode = self._check(path, mode)
        return self._try(agent_id, path, mode, by)

    async def acquire(
        self, agent_id: str, path: str, mode: str = "write", *, timeout: float = 0.0,
        on_conflict: Callable[[Conflict], None] | None = None, by: str = "step", queued_at: float | None = None,
        on_granted: Callable[[], None] | None = None,
    ) -> LockResult:
        """Take the lock, waiting up to ``timeout`` seconds for it (0: answer at once).

        The conflict is logged once, when first seen (and handed to ``on_conflict``); the
        wait ends when a release hands the lock over, never by polling. On timeout the
        result carries that conflict. Waiters are served in the order of ``queued_at``
        (wall-clock seconds, default now): a wait that a crash resume carries on keeps
        its place ahead of those that began after it. ``on_granted`` is called as the lock
        is granted (with its ``lock/acquired``), which for a waiter is before its wait ends.

        Raises:
            LockError: for a bad path or mode.
        """
        path, mode = self._check(path, mode)
        first = self._try(agent_id, path, mode, by)
        if not first.ok and on_conflict is not None and first.conflict is not None:
            on_conflict(first.conflict)
        if first.ok and on_granted is not None:
            on_granted()
        if first.ok or timeout <= 0:
            return first
        waiter = _Waiter(agent_id, path, mode, by, time.time() if queued_at is None else queued_at, on_granted)
        self._queue(waiter)
        try:
            with anyio.move_on_after(timeout):
                await waiter.event.wait()
        except BaseException:
            # Cancelled from outside: give back a lock handed over in the meantime.
            if waiter.granted is not None and self._release_one(agent_id, path, "release", by, force=False):
                self._grant_waiters()
            raise
        finally:
            if waiter.granted is None:
                self._waiters.remove(waiter)
                # Waiters queued behind this one may have been held back only by it.
                self._grant_waiters()
        return waiter.granted or first

    def _queue(self, waiter: _Waiter) -> None:
        waiters = self._waiters
        at = len(waiters)
        while at and waiters[at - 1].queued_at > waiter.queued_at:
            at -= 1
        waiters.insert(at, waiter)

    def restore(self, agent_id: str, path: str, mode: str, count: int = 1) -> None:
        """Give ``agent_id`` back a lock it held ``count`` times when the run died (crash
        resume, before any agent runs, so nothing can conflict); one ``lock/acquired`` says
        ``by: resume`` and the count."""
        path, mode = self._check(path, mode)
        self._grant(agent_id, path, mode, "resume", count)

    def _check(self, path: str, mode: str) -> tuple[str, str]:
        if mode not in _MODES:
            raise LockError(f"lock mode must be 'read' or 'write', got {mode!r}")
        return normalize_path(path), mode

    def _try(self, agent_id: str, path: str, mode: str, by: str) -> LockResult:
        found = self._find_conflict(agent_id, path, mode)
        if found is None:
            return self._grant(agent_id, path, mode, by)
        holder, holder_path, holder_mode = found
        self._n_conflicts += 1
        conflict = Conflict(f"{self._id_prefix}{self._n_conflicts}", path, mode, holder, holder_path, holder_mode)
        self._emit(
            "lock/conflict",
            agent_id,
            conflict_id=conflict.id,
            path=path,
            mode=mode,
            holder=holder,
            holder_path=holder_path,
            holder_mode=holder_mode,
        )
        return LockResult(False, path, mode, conflict, 0)

    def _find_conflict(self, agent_id: str, path: str, mode: str) -> tuple[str, str, str] | None:
        held = self._held
        for anc in _ancestors(path):
            hs = held.get(anc)
            if hs:
                for holder, h in hs.items():
                    if holder != agent_id and (mode == "write" or h.mode == "write"):
                        return holder, anc, h.mode
        prefix = "" if path == ROOT else path + "/"
        # Descendants: a prefix scan over held paths, O(held), which stays small in practice.
        for p, hs in held.items():
            if p != path and p.startswith(prefix):
                for holder, h in hs.items():
                    if holder != agent_id and (mode == "write" or h.mode == "write"):
                        return holder, p, h.mode
        return None

    def _grant(self, agent_id: str, path: str, mode: str, by: str, times: int = 1) -> LockResult:
        mine = self._by_agent.setdefault(agent_id, {})
        hold = mine.get(path)
        if hold is None:
            hold = mine[path] = _Hold(mode)
            self._held.setdefault(path, {})[agent_id] = hold
        elif mode == "write":
            # An upgrade (already checked against other agents); a write never downgrades.
            hold.mode = "write"
        hold.count += times
        self._acquired += 1
        self._emit("lock/acquired", agent_id, path=path, mode=hold.mode, count=hold.count, by=by)
        return LockResult(True, path, hold.mode, None, hold.count)

    def _grant_waiters(self) -> None:
        """Hand freed locks to waiters, oldest first, never past an earlier blocked one."""
        blocked: list[_Waiter] = []
        for w in list(self._waiters):
            if any(_blocks(b, w) for b in blocked) or self._find_conflict(w.agent, w.path, w.mode):
                blocked.append(w)
                continue
            self._waiters.remove(w)
            w.granted = self._grant(w.agent, w.path, w.mode, w.by)
            if w.on_granted is not None:
                w.on_granted()
            w.event.set()

    # -- release -----------------------------------------------------------------

    def release(self, agent_id: str, path: str, *, by: str = "step") -> bool:
        """Count one hold of ``path`` down (``lock/released`` with the holds left); free it at
        zero. ``by`` as for :meth:`try_acquire`.

        Returns:
            True when the lock was freed, False when the agent still holds it.

        Raises:
            LockError: when ``agent_id`` does not hold ``path``.
        """
        path = normalize_path(path)
        if path not in self._by_agent.get(agent_id, {}):
            raise LockError(f"{agent_id!r} does not hold a lock on {path!r}")
        freed = self._release_one(agent_id, path, "release", by, force=False)
        if freed:
            self._grant_waiters()
        return freed

    def release_all(self, agent_id: str) -> list[str]:
        """Free every lock ``agent_id`` holds, whatever the counts (it stopped or crashed).

        Returns:
            The freed paths, sorted.
        """
        paths = sorted(self._by_agent.get(agent_id, {}))
        for p in paths:
            self._release_one(agent_id, p, "holder_ended", "step", force=True)
        if paths:
            self._grant_waiters()
        return paths

    def _release_one(self, agent_id: str, path: str, reason: str, by: str, *, force: bool) -> bool:
        mine = self._by_agent[agent_id]
        hold = mine[path]
        hold.count -= 1
        if hold.count > 0 and not force:
            # Logged too: a resumed agent's replay must know how often it still holds the path.
            self._emit("lock/released", agent_id, path=path, reason=reason, by=by, count=hold.count)
            return False
        del mine[path]
        if not mine:
            del self._by_agent[agent_id]
        hs = self._held[path]
        del hs[agent_id]
        if not hs:
            del self._held[path]
        self._released += 1
        self._emit("lock/released", agent_id, path=path, reason=reason, by=by, count=0)
        return True


def _blocks(earlier: _Waiter, later: _Waiter) -> bool:
    """Whether a still-waiting ``earlier`` request must go before ``later`` (FIFO fairness)."""
    return (
        earlier.agent != later.agent
        and (earlier.mode == "write" or later.mode == "write")
        and _overlap(earlier.path, later.path)
    )
