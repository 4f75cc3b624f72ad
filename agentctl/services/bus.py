"""The message bus: topology-aware routing of one-way messages into bounded inboxes.

Called by the runtime's action interpreter (a ``send`` action), by the supervisor (to
register and unregister agents as they start, restart and stop) and by the CLI
(``agentctl send``, sender ``"user"``). Every routing outcome is exactly one event:
``agent/message`` (delivered or refused for a full inbox) or ``bus/denied``.

The send path is synchronous and allocation-light on purpose: it is a couple of dict
lookups, one ``emit`` and a ``list.append``. Inboxes wake their owner through a plain
callback (the runtime schedules the agent), so no task, stream or await sits between a
sender and an inbox. Backpressure is opt-in through :meth:`Bus.send_wait`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import anyio
import msgspec

from ..errors import BusError, UsageError

__all__ = [
    "USER",
    "Bus",
    "BusStatistics",
    "Emit",
    "Inbox",
    "Message",
    "SendResult",
    "SendStatus",
    "Topology",
]

Emit = Callable[..., dict[str, Any]]

#: The sender name of a person talking through the CLI; it may message any agent.
USER = "user"


@dataclass(frozen=True, slots=True)
class Topology:
    """Who an agent may message besides its parent, its children and its threads.

    Attributes:
        allow_peer: may message any registered agent.
        peer_via_parent: a message to a peer it may not reach goes to its own parent
            instead (a relay), rather than being denied.
    """

    allow_peer: bool = False
    peer_via_parent: bool = True


DEFAULT_TOPOLOGY = Topology()


class Message(msgspec.Struct, frozen=True):
    """A message as it lands in an inbox.

    ``to`` is always the original addressee; ``via`` names the parent that received it
    in place of that addressee (a relay), else ``None``. ``t`` is the ``t`` of the
    ``agent/message`` event that logged it (ms since the epoch).
    """

    id: str
    sender: str
    to: str
    kind: str
    body: Any
    thread_id: str | None
    t: int
    via: str | None = None


class Inbox:
    """A bounded FIFO of :class:`Message`; its owner is woken by a callback, not a task.

    Attributes:
        capacity: the most messages it holds; ``put_nowait`` refuses beyond that.
        on_put: called after every successful put (the runtime sets it to schedule the
            owning agent); must not block.
    """

    __slots__ = ("_q", "_space", "capacity", "on_put")

    def __init__(self, capacity: int = 256, on_put: Callable[[], None] | None = None) -> None:
        if capacity < 1:
            raise UsageError(f"inbox capacity must be at least 1, got {capacity}")
        # A list, not a deque: an empty deque costs ~600 bytes, and 100,000 idle agents
        # each have an inbox; drains swap the whole list out anyway.
        self._q: list[Message] = []
        # Allocated only while a sender waits for space, so the common path never touches it.
        self._space: anyio.Event | None = None
        self.capacity = capacity
        self.on_put = on_put

    def __len__(self) -> int:
        return len(self._q)

    def full(self) -> bool:
        """Whether a put would be refused now."""
        return len(self._q) >= self.capacity

    def put_nowait(self, msg: Message) -> bool:
        """Append ``msg``; return False (and change nothing) when the inbox is full."""
        q = self._q
        if len(q) >= self.capacity:
            return False
        q.append(msg)
        cb = self.on_put
        if cb is not None:
            cb()
        return True

    def drain(self, limit: int | None = None) -> list[Message]:
        """Remove and return up to ``limit`` messages (all when None), oldest first.

        Wakes senders blocked in :meth:`wait_space` when room was made.
        """
        q = self._q
        if limit is None or limit >= len(q):
            out, self._q = q, []
        else:
            n = max(limit, 0)
            out, self._q = q[:n], q[n:]
        if out:
            self._wake()
        return out

    async def wait_space(self, timeout: float | None = None) -> bool:
        """Wait until the inbox is not full, up to ``timeout`` seconds (None: no limit).

        Returns:
            True when there is room now, False when the wait timed out.
        """
        with anyio.move_on_after(timeout):
            while len(self._q) >= self.capacity:
                await self._woken()
        return len(self._q) < self.capacity

    async def _woken(self) -> None:
        """Wait for the next drain (or for the bus to detach this inbox)."""
        if self._space is None:
            self._space = anyio.Event()
        await self._space.wait()

    def _wake(self) -> None:
        # Every waiter re-checks after waking, so one shared event per "full" episode is enough.
        ev = self._space
        if ev is not None:
            self._space = None
            ev.set()


class SendStatus(StrEnum):
    """The outcome of routing one message."""

    OK = "ok"
    RELAYED = "relayed"
    UNKNOWN_TARGET = "unknown_target"
    TOPOLOGY_DENIED = "topology_denied"
    INBOX_FULL = "inbox_full"


class SendResult(msgspec.Struct, frozen=True):
    """What became of a send: status, the message id (None when denied), addressee, relay."""

    status: SendStatus
    msg_id: str | None = None
    to: str = ""
    via: str | None = None

    @property
    def ok(self) -> bool:
        """True when the message landed in an inbox (directly or relayed)."""
        return self.status is SendStatus.OK or self.status is SendStatus.RELAYED


@dataclass(frozen=True, slots=True)
class BusStatistics:
    """Counters of a :class:`Bus`.

    Attributes:
        agents: registered agents.
        sent: send attempts, whatever their outcome.
        delivered: messages that landed in an inbox (relayed ones included).
        relayed: of those, messages that went to the sender's parent instead.
        denied: sends refused for topology or an unknown target.
        inbox_full: sends refused because the inbox was full.
        queued: messages waiting in inboxes now.
    """

    agents: int
    sent: int
    delivered: int
    relayed: int
    denied: int
    inbox_full: int
    queued: int


class _Entry:
    __slots__ = ("inbox", "parent", "topology")

    def __init__(self, parent: str | None, topology: Topology, inbox: Inbox) -> None:
        self.parent = parent
        self.topology = topology
        self.inbox = inbox


_OK = SendStatus.OK
_RELAYED = SendStatus.RELAYED
_UNKNOWN = SendStatus.UNKNOWN_TARGET
_DENIED = SendStatus.TOPOLOGY_DENIED
_FULL = SendStatus.INBOX_FULL
_DENY_REASON = {_UNKNOWN: "unknown_target", _DENIED: "topology"}


class Bus:
    """Routes messages between registered agents according to their topology.

    Args:
        emit: the event sink, ``emit(type, agent_id=None, fields=None, /, **more) -> event``
            (fields as one dict, as keywords, or both).
        inbox_size: capacity of the inboxes :meth:`register` creates.
    """

    def __init__(self, emit: Emit, *, inbox_size: int = 256, id_prefix: str = "") -> None:
        self._emit = emit
        self._inbox_size = inbox_size
        self._entries: dict[str, _Entry] = {}
        self._threads: dict[str, frozenset[str]] = {}
        self._n = 0
        # A resumed run numbers its messages afresh under a new prefix, so ids stay unique in the log.
        self._id_prefix = id_prefix + "m"
        self._sent = 0
        self._delivered = 0
        self._relayed = 0
        self._denied = 0
        self._full = 0

    # -- registry ----------------------------------------------------------------

    def register(
        self,
        agent_id: str,
        parent_id: str | None,
        topology: Topology = DEFAULT_TOPOLOGY,
        inbox: Inbox | None = None,
    ) -> Inbox:
        """Add ``agent_id`` (or replace its entry, on a restart) and return its inbox."""
        if inbox is None:
            inbox = Inbox(self._inbox_size)
        old = self._entries.get(agent_id)
        self._entries[agent_id] = _Entry(parent_id, topology, inbox)
        if old is not None and old.inbox is not inbox:
            # Senders waiting on the replaced inbox must re-resolve to the new one.
            old.inbox._wake()
        return inbox

    def unregister(self, agent_id: str) -> None:
        """Remove ``agent_id``; later messages to it are ``unknown_target``."""
        old = self._entries.pop(agent_id, None)
        if old is not None:
            old.inbox._wake()

    def inbox(self, agent_id: str) -> Inbox | None:
        """The inbox of ``agent_id``, or None when it is not registered."""
        e = self._entries.get(agent_id)
        return None if e is None else e.inbox

    def parent_of(self, agent_id: str) -> str | None:
        """The parent of ``agent_id`` (None for a root or an unknown agent)."""
        e = self._entries.get(agent_id)
        return None if e is None else e.parent

    def open_thread(self, thread_id: str, members: Iterable[str]) -> None:
        """Let ``members`` message each other on ``thread_id`` whatever their topology."""
        self._threads[thread_id] = frozenset(members)

    def close_thread(self, thread_id: str) -> None:
        """Forget ``thread_id``; its members fall back to their topology."""
        self._threads.pop(thread_id, None)

    # -- routing -----------------------------------------------------------------

    def route(self, sender: str, to: str, thread_id: str | None = None) -> tuple[SendStatus, str | None]:
        """Decide where a message from ``sender`` to ``to`` goes, without sending it.

        Returns:
            ``(status, owner)``: owner is the agent whose inbox gets the message (``to``
            for OK, the sender's parent for RELAYED) and None when denied.
        """
        entries = self._entries
        dst = entries.get(to)
        if dst is None:
            return _UNKNOWN, None
        if dst.parent == sender or sender == to or sender == USER:
            return _OK, to
        src = entries.get(sender)
        if src is not None and src.parent == to:
            return _OK, to
        if thread_id is not None:
            members = self._threads.get(thread_id)
            if members is not None and sender in members and to in members:
                return _OK, to
        if src is None:
            return _DENIED, None
        topo = src.topology
        if topo.allow_peer:
            return _OK, to
        parent = src.parent
        if topo.peer_via_parent and parent is not None and parent in entries:
            return _RELAYED, parent
        return _DENIED, None

    def send(
        self, sender: str, to: str, kind: str = "chat", body: Any = None, thread_id: str | None = None
    ) -> SendResult:
        """Route and deliver one message now, never waiting; log the outcome as one event."""
        self._sent += 1
        status, owner = self.route(sender, to, thread_id)
        if owner is None:
            return self._deny(sender, to, kind, status)
        return self._deliver(sender, to, kind, body, thread_id, status, owner)

    async def send_wait(
        self,
        sender: str,
        to: str,
        kind: str = "chat",
        body: Any = None,
        thread_id: str | None = None,
        *,
        timeout: float | None = None,
    ) -> SendResult:
        """Like :meth:`send`, but wait up to ``timeout`` seconds for room in a full inbox.

        Only the final outcome is logged, so a send that waited and then got through
        is one ``agent/message`` event with ``delivered`` true.
        """
        self._sent += 1
        status, owner = self.route(sender, to, thread_id)
        with anyio.move_on_after(timeout):
            while owner is not None:
                inbox = self._entries[owner].inbox
                if not inbox.full():
                    break
                await inbox._woken()
                # Re-route: the target may have been unregistered or restarted meanwhile.
                status, owner = self.route(sender, to, thread_id)
        if owner is None:
            return self._deny(sender, to, kind, status)
        return self._deliver(sender, to, kind, body, thread_id, status, owner)

    def send_or_raise(
        self, sender: str, to: str, kind: str = "chat", body: Any = None, thread_id: str | None = None
    ) -> SendResult:
        """Like :meth:`send`, but raise :class:`BusError` when the message did not land."""
        result = self.send(sender, to, kind, body, thread_id)
        if not result.ok:
            raise BusError(f"message from {sender!r} to {to!r} not delivered: {result.status.value}")
        return result

    def _deny(self, sender: str, to: str, kind: str, status: SendStatus) -> SendResult:
        self._denied += 1
        self._emit("bus/denied", sender, {"from": sender, "to": to, "kind": kind, "reason": _DENY_REASON[status]})
        return SendResult(status, None, to, None)

    def _deliver(
        self,
        sender: str,
        to: str,
        kind: str,
        body: Any,
        thread_id: str | None,
        status: SendStatus,
        owner: str,
    ) -> SendResult:
        # The hot path of every message: the inbox's list and callback are used directly
        # (this module owns Inbox), and the event's fields go as one dict, built once.
        inbox = self._entries[owner].inbox
        queue = inbox._q
        via = owner if status is _RELAYED else None
        self._n += 1
        msg_id = f"{self._id_prefix}{self._n}"
        delivered = len(queue) < inbox.capacity
        # Log first so the message carries its event's timestamp; nothing can run in
        # between, so the fullness checked above still holds when we put.
        event = self._emit("agent/message", owner, {"msg_id": msg_id, "from": sender, "to": to, "kind": kind,
                                                    "thread_id": thread_id, "body": body, "delivered": delivered,
                                                    "via": via})
        if not delivered:
            self._full += 1
            return SendResult(_FULL, msg_id, to, via)
        queue.append(Message(msg_id, sender, to, kind, body, thread_id, event["t"], via))
        if inbox.on_put is not None:
            inbox.on_put()
        self._delivered += 1
        if via is not None:
            self._relayed += 1
        return SendResult(status, msg_id, to, via)

    def statistics(self) -> BusStatistics:
        """Current counters; ``queued`` is summed over the registered inboxes."""
        return BusStatistics(
            agents=len(self._entries),
            sent=self._sent,
            delivered=self._delivered,
            relayed=self._relayed,
            denied=self._denied,
            inbox_full=self._full,
            queued=sum(len(e.inbox) for e in self._entries.values()),
        )
