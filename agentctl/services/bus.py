"""The message bus: topology-aware routing of one-way messages into bounded inboxes.

Called by the runtime's action interpreter (a ``send`` action), by the supervisor (to
register and unregister agents as they start, restart and stop) and by the CLI
(``agentctl send``, sender ``"user"``). Every routing outcome is exactly one event:
``agent/message`` (delivered or refused for a full inbox) or ``bus/denied``.

Runtime signals (an agent's end reported to its parent, restart notices, plan wake-ups,
lock-conflict notices) go through :meth:`Bus.signal`: like exit signals in Erlang/OTP they
bypass the inbox bound and the topology, so they are never refused for room and never
lost, whatever the size of the tree. Only chat between agents is bounded (``inbox_full``).

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
from ..events.emit import Emit
from ..policy import USER

__all__ = [
    "USER",
    "Bus",
    "BusStatistics",
    "Inbox",
    "Message",
    "Route",
    "SendResult",
    "SendStatus",
    "Topology",
]




@dataclass(frozen=True, slots=True)
class Topology:
    """Who an agent may message besides its parent, its children and its threads.

    Attributes:
        allow_peer: may message any registered agent.
        peer_via_parent: a message to a peer it may not reach is relayed through its
            parent (forwarded to the peer, see :meth:`Bus.route`) rather than denied.
        intercept_relays: relays passing through this agent land in its own inbox (its
            step reads them, ``Message.via`` set) instead of being forwarded.
    """

    allow_peer: bool = False
    peer_via_parent: bool = True
    intercept_relays: bool = False


DEFAULT_TOPOLOGY = Topology()


class Message(msgspec.Struct, frozen=True):
    """A message as it lands in an inbox.

    ``to`` is always the original addressee; ``via`` names the ancestor that relayed it
    (forwarded it, or kept it when it intercepts relays), else ``None``. ``t`` is the ``t`` of the
    ``agent/message`` event that logged it (ms since the epoch). ``signal`` marks a
    runtime signal, which does not count against the inbox bound.
    """

    id: str
    sender: str
    to: str
    kind: str
    body: Any
    thread_id: str | None
    t: int
    via: str | None = None
    signal: bool = False


class Inbox:
    """A FIFO of :class:`Message`, bounded for chat; its owner is woken by a callback, not a task.

    Attributes:
        capacity: the most chat messages it holds; ``put_nowait`` refuses a chat message
            beyond that. Signals (``Message.signal``) are always taken.
        on_put: called after every successful put (the runtime sets it to schedule the
            owning agent); must not block.
        steps: the steps its owner has taken since the inbox was made (its latest start),
            counted by the scheduler; each delivery logs it (``agent/message``'s ``step``),
            so a resumed agent can be handed the message at the step that read it.
        held: while its owner replays its past after a crash (:meth:`hold`), the messages
            that came live meanwhile: they came after everything it replays, so its steps
            read them only once the replay is over (:meth:`release`). None otherwise.
    """

    __slots__ = ("_chat", "_q", "_space", "capacity", "held", "on_put", "steps")

    def __init__(self, capacity: int = 256, on_put: Callable[[], None] | None = None) -> None:
        if capacity < 1:
            raise UsageError(f"inbox capacity must be at least 1, got {capacity}")
        # A list, not a deque: an empty deque costs ~600 bytes, and 100,000 idle agents
        # each have an inbox; drains swap the whole list out anyway.
        self._q: list[Message] = []
        self._chat = 0  # the messages in _q that count against the bound
        # Allocated only while a sender waits for space, so the common path never touches it.
        self._space: anyio.Event | None = None
        self.capacity = capacity
        self.on_put = on_put
        self.steps = 0
        self.held: list[Message] | None = None

    def __len__(self) -> int:
        return len(self._q)

    def first_t(self) -> int | None:
        """The ``t`` of the oldest message it holds (None: it is empty)."""
        return self._q[0].t if self._q else None

    def last_t(self) -> int | None:
        """The ``t`` of the newest message it holds (None: it is empty)."""
        return self._q[-1].t if self._q else None

    def full(self) -> bool:
        """Whether a chat message would be refused now."""
        return self._chat >= self.capacity

    def put_nowait(self, msg: Message) -> bool:
        """Append ``msg``; return False (and change nothing) when it is chat and the inbox is full."""
        if not msg.signal:
            if self._chat >= self.capacity:
                return False
            self._chat += 1
        self._q.append(msg)
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
            out, self._q, self._chat = q, [], 0
        else:
            n = max(limit, 0)
            out, self._q = q[:n], q[n:]
            self._chat = sum(not m.signal for m in self._q)
        if self.held:
            self._chat += sum(not m.signal for m in self.held)  # they count against the bound too
        if out:
            self._wake()
        return out

    def hold(self, held: list[Message]) -> None:
        """From now on, keep messages that come live aside (its owner replays its past),
        after ``held``: those that came while an earlier resume replayed the same past."""
        self.held = held
        self._chat += sum(not m.signal for m in held)

    def release(self) -> int:
        """Its owner's replay is over: the messages kept aside come after those it replayed.
        How many there were."""
        held, self.held = self.held or [], None
        if held:
            self._q.extend(held)
            if self.on_put is not None:
                self.on_put()
        return len(held)

    async def wait_space(self, timeout: float | None = None) -> bool:
        """Wait until the inbox is not full, up to ``timeout`` seconds (None: no limit).

        Returns:
            True when there is room now, False when the wait timed out.
        """
        with anyio.move_on_after(timeout):
            while self._chat >= self.capacity:
                await self._woken()
        return self._chat < self.capacity

    async def _woken(self) -> None:
        """Wait for the next drain (or for the bus to detach this inbox)."""
        if self._space is None:
            self._space = anyio.Event()
        await self._space.wait()

    def unread(self) -> dict[str, int]:
        """How many messages are waiting, per sender (what an agent that ends leaves unread)."""
        counts: dict[str, int] = {}
        for m in (*self._q, *(self.held or ())):
            counts[m.sender] = counts.get(m.sender, 0) + 1
        return counts

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
    RELAY_DENIED = "relay_denied"


class SendResult(msgspec.Struct, frozen=True):
    """What became of a send: status, the message id (None when denied), addressee, relaying ancestor."""

    status: SendStatus
    msg_id: str | None = None
    to: str = ""
    via: str | None = None

    @property
    def ok(self) -> bool:
        """True when the message landed in an inbox (directly, relayed or as a signal)."""
        return self.status is SendStatus.OK or self.status is SendStatus.RELAYED


@dataclass(frozen=True, slots=True)
class BusStatistics:
    """Counters of a :class:`Bus`.

    Attributes:
        agents: registered agents.
        sent: send attempts, whatever their outcome.
        delivered: messages that landed in an inbox (relayed ones and signals included).
        relayed: of those, messages that went through the sender's parent.
        signals: of those, runtime signals (never refused for room).
        denied: sends refused for topology or an unknown target.
        inbox_full: sends refused because the inbox was full.
        queued: messages waiting in inboxes now.
    """

    agents: int
    sent: int
    delivered: int
    relayed: int
    signals: int
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
_UNRELAYABLE = SendStatus.RELAY_DENIED
_DENY_REASON = {_UNKNOWN: "unknown_target", _DENIED: "topology", _UNRELAYABLE: "relay"}

#: ``(status, owner, via)``, see :meth:`Bus.route`.
Route = tuple[SendStatus, str | None, str | None]


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
        self._signals = 0
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

    def route(self, sender: str, to: str, thread_id: str | None = None) -> Route:
        """Decide where a message from ``sender`` to ``to`` goes, without sending it.

        A message to a peer the sender may not reach is relayed (``peer_via_parent``): it
        climbs the sender's ancestors to the first that may reach ``to`` itself (an
        ancestor of ``to``, its child, or an ``allow_peer`` agent), which forwards it to
        ``to`` (``via``: that ancestor), unless an ancestor on the way
        intercepts relays (its topology's ``intercept_relays``): then it lands in that
        ancestor's inbox. When no ancestor can forward it, the relay is denied.

        Returns:
            ``(status, owner, via)``: owner is the agent whose inbox gets the message
            (None when denied), via the ancestor that relayed it (None when direct).
        """
        entries = self._entries
        dst = entries.get(to)
        if dst is None:
            return _UNKNOWN, None, None
        if dst.parent == sender or sender == to or sender == USER:
            return _OK, to, None
        src = entries.get(sender)
        if src is not None and src.parent == to:
            return _OK, to, None
        if thread_id is not None:
            members = self._threads.get(thread_id)
            if members is not None and sender in members and to in members:
                return _OK, to, None
        if src is None:
            return _DENIED, None, None
        topo = src.topology
        if topo.allow_peer:
            return _OK, to, None
        if not topo.peer_via_parent or src.parent is None or src.parent not in entries:
            return _DENIED, None, None
        return self._relay(src.parent, to, dst)

    def _relay(self, hop: str, to: str, dst: _Entry) -> Route:
        entries = self._entries
        above = self._ancestors(dst)
        while True:
            e = entries[hop]
            if e.topology.intercept_relays:
                return _RELAYED, hop, hop
            # An ancestor of the addressee hands it down its own line of children.
            if hop in above or e.parent == to or e.topology.allow_peer:
                return _RELAYED, to, hop
            if not e.topology.peer_via_parent or e.parent is None or e.parent not in entries:
                return _UNRELAYABLE, None, None
            hop = e.parent

    def _ancestors(self, entry: _Entry) -> set[str]:
        out: set[str] = set()
        parent = entry.parent
        while parent is not None and parent not in out:
            out.add(parent)
            up = self._entries.get(parent)
            parent = up.parent if up is not None else None
        return out

    def send(
        self, sender: str, to: str, kind: str = "chat", body: Any = None, thread_id: str | None = None
    ) -> SendResult:
        """Route and deliver one message now, never waiting; log the outcome as one event."""
        self._sent += 1
        status, owner, via = self.route(sender, to, thread_id)
        if owner is None:
            return self._deny(sender, to, kind, status)
        return self._deliver(sender, to, kind, body, thread_id, status, owner, via, False)

    def signal(self, sender: str, to: str, kind: str, body: Any = None, thread_id: str | None = None) -> SendResult:
        """Deliver a runtime signal to ``to`` now: never refused for a full inbox or for topology.

        Only an addressee that is not registered (it has ended) makes it ``unknown_target``.
        """
        self._sent += 1
        if to not in self._entries:
            return self._deny(sender, to, kind, _UNKNOWN)
        self._signals += 1
        return self._deliver(sender, to, kind, body, thread_id, _OK, to, None, True)

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
        status, owner, via = self.route(sender, to, thread_id)
        with anyio.move_on_after(timeout):
            while owner is not None:
                inbox = self._entries[owner].inbox
                if not inbox.full():
                    break
                await inbox._woken()
                # Re-route: the target may have been unregistered or restarted meanwhile.
                status, owner, via = self.route(sender, to, thread_id)
        if owner is None:
            return self._deny(sender, to, kind, status)
        return self._deliver(sender, to, kind, body, thread_id, status, owner, via, False)

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
        via: str | None,
        signal: bool,
    ) -> SendResult:
        # The hot path of every message: the inbox's list, count and callback are used
        # directly (this module owns Inbox), and the event's fields go as one dict, built once.
        inbox = self._entries[owner].inbox
        self._n += 1
        msg_id = f"{self._id_prefix}{self._n}"
        delivered = signal or inbox._chat < inbox.capacity
        # Log first so the message carries its event's timestamp; nothing can run in
        # between, so the fullness checked above still holds when we put.
        event = self._emit("agent/message", owner, {"msg_id": msg_id, "from": sender, "to": to, "kind": kind,
                                                    "thread_id": thread_id, "body": body, "delivered": delivered,
                                                    "via": via, "signal": signal, "step": inbox.steps})
        if not delivered:
            self._full += 1
            return SendResult(_FULL, msg_id, to, via)
        if not signal:
            inbox._chat += 1
        msg = Message(msg_id, sender, to, kind, body, thread_id, event["t"], via, signal)
        if inbox.held is not None:
            inbox.held.append(msg)  # its owner replays its past: read once that is over
        else:
            inbox._q.append(msg)
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
            signals=self._signals,
            denied=self._denied,
            inbox_full=self._full,
            queued=sum(len(e.inbox) for e in self._entries.values()),
        )
