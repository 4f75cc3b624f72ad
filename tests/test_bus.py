"""Tests for the message bus: routing rules, events, inboxes, backpressure, threads."""

from __future__ import annotations

import anyio
import pytest

from agentctl.errors import BusError
from agentctl.services.bus import Bus, Inbox, Message, SendStatus, Topology


@pytest.fixture
def bus(recorder) -> Bus:
    """A tree: root -> (a, b), a -> a1; b may talk to peers directly, a relays via root."""
    bus = Bus(recorder, inbox_size=4)
    bus.register("root", None)
    bus.register("a", "root", Topology(peer_via_parent=True))
    bus.register("b", "root", Topology(allow_peer=True))
    bus.register("a1", "a", Topology(peer_via_parent=False))
    return bus


def ids(inbox: Inbox | None) -> list[tuple[str, str, object]]:
    assert inbox is not None
    return [(m.sender, m.to, m.body) for m in inbox.drain()]


def test_self_parent_to_child_and_child_to_parent_are_delivered(bus, recorder):
    assert bus.send("a", "a", body=1).status is SendStatus.OK
    assert bus.send("root", "a", body=2).status is SendStatus.OK
    assert bus.send("a1", "a", body=3).status is SendStatus.OK
    assert ids(bus.inbox("a")) == [("a", "a", 1), ("root", "a", 2), ("a1", "a", 3)]
    events = recorder.of_type("agent/message")
    assert [e["agent_id"] for e in events] == ["a", "a", "a"]
    assert all(e["delivered"] and e["via"] is None for e in events)


def test_message_event_has_contract_fields_and_matches_inbox_message(bus, recorder):
    result = bus.send("root", "a", kind="goal", body={"x": 1}, thread_id="t1")
    (event,) = recorder.events
    assert event["type"] == "agent/message"
    assert {k: event[k] for k in ("msg_id", "from", "to", "kind", "thread_id", "body", "delivered", "via", "signal")} == {
        "msg_id": result.msg_id,
        "from": "root",
        "to": "a",
        "kind": "goal",
        "thread_id": "t1",
        "body": {"x": 1},
        "delivered": True,
        "via": None,
        "signal": False,
    }
    (msg,) = bus.inbox("a").drain()
    assert msg == Message(result.msg_id, "root", "a", "goal", {"x": 1}, "t1", event["t"], None)


def test_sibling_is_denied_without_peer_via_parent(bus, recorder):
    bus.register("a2", "a", Topology(peer_via_parent=False))
    result = bus.send("a1", "a2", kind="chat", body="hi")
    assert result.status is SendStatus.TOPOLOGY_DENIED and not result.ok and result.msg_id is None
    assert recorder.events == [
        {
            "seq": 1,
            "t": 0,
            "run_id": "test",
            "type": "bus/denied",
            "agent_id": "a1",
            "from": "a1",
            "to": "a2",
            "kind": "chat",
            "reason": "topology",
        }
    ]
    assert len(bus.inbox("a2")) == 0 and len(bus.inbox("a")) == 0


def test_sibling_relay_is_forwarded_to_the_addressee_through_the_parent(bus, recorder):
    result = bus.send("a", "b", body="psst")
    assert result.status is SendStatus.RELAYED and result.ok
    assert (result.to, result.via) == ("b", "root")
    assert len(bus.inbox("root")) == 0
    (msg,) = bus.inbox("b").drain()
    assert (msg.sender, msg.to, msg.via, msg.body) == ("a", "b", "root", "psst")
    (event,) = recorder.events
    assert (event["type"], event["agent_id"], event["to"], event["via"], event["delivered"]) == (
        "agent/message", "b", "b", "root", True,
    )


def test_a_parent_that_intercepts_relays_gets_them_in_its_own_inbox(recorder):
    bus = Bus(recorder)
    bus.register("root", None, Topology(intercept_relays=True))
    bus.register("a", "root")
    bus.register("b", "root")
    assert bus.send("a", "b", body="psst").via == "root"
    assert len(bus.inbox("b")) == 0
    (msg,) = bus.inbox("root").drain()
    assert (msg.sender, msg.to, msg.via) == ("a", "b", "root")


def test_a_relay_to_a_cousin_climbs_to_the_common_ancestor(recorder):
    bus = Bus(recorder)
    bus.register("root", None)
    for mid in ("a", "b"):
        bus.register(mid, "root")
        bus.register(mid + "1", mid)
    result = bus.send("a1", "b1", body="hi")
    assert (result.status, result.via) == (SendStatus.RELAYED, "root")
    assert ids(bus.inbox("b1")) == [("a1", "b1", "hi")]
    assert len(bus.inbox("a")) == len(bus.inbox("root")) == 0


def test_a_relay_no_ancestor_can_forward_is_denied_with_an_event(recorder):
    bus = Bus(recorder)
    bus.register("root", None)
    bus.register("a", "root", Topology(peer_via_parent=False))
    bus.register("b", "root")
    bus.register("a1", "a")
    bus.register("b1", "b")
    result = bus.send("a1", "b1", body="hi")  # a may not pass it up to root
    assert result.status is SendStatus.RELAY_DENIED and not result.ok
    (event,) = recorder.events
    assert (event["type"], event["from"], event["to"], event["reason"]) == ("bus/denied", "a1", "b1", "relay")
    assert all(len(bus.inbox(x)) == 0 for x in ("root", "a", "b", "b1"))


def test_allow_peer_delivers_directly(bus):
    result = bus.send("b", "a1", body="x")
    assert result.status is SendStatus.OK and result.via is None
    assert ids(bus.inbox("a1")) == [("b", "a1", "x")]


def test_unknown_target_is_denied_and_logged(bus, recorder):
    result = bus.send("root", "ghost", kind="chat")
    assert result.status is SendStatus.UNKNOWN_TARGET
    (event,) = recorder.events
    assert (event["type"], event["agent_id"], event["reason"], event["to"]) == (
        "bus/denied",
        "root",
        "unknown_target",
        "ghost",
    )


def test_user_may_message_any_agent(bus):
    assert bus.send("user", "a1", body="hello").status is SendStatus.OK
    assert ids(bus.inbox("a1")) == [("user", "a1", "hello")]


def test_full_inbox_refuses_and_logs_undelivered(bus, recorder):
    for i in range(4):
        assert bus.send("root", "a", body=i).ok
    result = bus.send("root", "a", body="overflow")
    assert result.status is SendStatus.INBOX_FULL and not result.ok and result.msg_id
    last = recorder.events[-1]
    assert (last["type"], last["delivered"], last["msg_id"], last["body"]) == (
        "agent/message",
        False,
        result.msg_id,
        "overflow",
    )
    assert [m.body for m in bus.inbox("a").drain()] == [0, 1, 2, 3]


def test_every_outcome_is_exactly_one_event(bus, recorder):
    bus.register("a2", "a", Topology(peer_via_parent=False))
    outcomes = [
        bus.send("root", "a"),  # ok
        bus.send("a", "b"),  # relayed
        bus.send("a1", "a2"),  # denied
        bus.send("a", "nobody"),  # unknown
    ]
    for _ in range(4):
        bus.send("root", "b")
    outcomes.append(bus.send("root", "b"))  # full
    assert len(recorder.events) == 9
    assert [o.status for o in outcomes] == [
        SendStatus.OK,
        SendStatus.RELAYED,
        SendStatus.TOPOLOGY_DENIED,
        SendStatus.UNKNOWN_TARGET,
        SendStatus.INBOX_FULL,
    ]
    msg_ids = [e["msg_id"] for e in recorder.of_type("agent/message")]
    assert len(set(msg_ids)) == len(msg_ids) == 7


def test_open_thread_allows_otherwise_denied_route_until_closed(bus):
    bus.register("a2", "a", Topology(peer_via_parent=False))
    bus.open_thread("t9", ["a1", "a2"])
    assert bus.send("a1", "a2", thread_id="t9").status is SendStatus.OK
    assert bus.send("a1", "a2", thread_id="other").status is SendStatus.TOPOLOGY_DENIED
    assert bus.send("a1", "a2").status is SendStatus.TOPOLOGY_DENIED
    bus.close_thread("t9")
    assert bus.send("a1", "a2", thread_id="t9").status is SendStatus.TOPOLOGY_DENIED
    assert [m.thread_id for m in bus.inbox("a2").drain()] == ["t9"]


def test_route_is_pure_and_reports_relay_owner(bus, recorder):
    assert bus.route("a", "b") == (SendStatus.RELAYED, "b", "root")
    assert bus.route("a1", "b") == (SendStatus.TOPOLOGY_DENIED, None, None)
    assert bus.route("root", "zzz") == (SendStatus.UNKNOWN_TARGET, None, None)
    assert recorder.events == []


def test_on_put_callback_fires_once_per_delivery(recorder):
    bus = Bus(recorder)
    woken: list[int] = []
    inbox = Inbox(2, on_put=lambda: woken.append(len(inbox)))
    bus.register("p", None)
    assert bus.register("c", "p", inbox=inbox) is inbox
    bus.send("p", "c")
    bus.send("p", "c")
    bus.send("p", "c")  # full: no wake-up
    assert woken == [1, 2]


def test_drain_with_limit_returns_oldest_first(bus):
    for i in range(3):
        bus.send("root", "a", body=i)
    inbox = bus.inbox("a")
    assert [m.body for m in inbox.drain(2)] == [0, 1]
    assert len(inbox) == 1 and not inbox.full()


def test_reregister_replaces_entry_and_unregister_makes_unknown(bus):
    bus.send("root", "a")
    fresh = bus.register("a", "b")
    assert bus.inbox("a") is fresh and len(fresh) == 0 and bus.parent_of("a") == "b"
    bus.unregister("a")
    assert bus.inbox("a") is None
    assert bus.send("root", "a").status is SendStatus.UNKNOWN_TARGET


def test_send_or_raise_raises_bus_error(bus):
    with pytest.raises(BusError):
        bus.send_or_raise("root", "ghost")
    assert bus.send_or_raise("root", "a").ok


@pytest.mark.anyio
async def test_send_wait_delivers_once_a_concurrent_task_drains(bus, recorder):
    for i in range(4):
        bus.send("root", "a", body=i)
    inbox = bus.inbox("a")
    drained: list[object] = []

    async def consumer() -> None:
        await anyio.sleep(0)
        drained.extend(m.body for m in inbox.drain())

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        result = await bus.send_wait("root", "a", body="late", timeout=5)
    assert result.status is SendStatus.OK
    assert drained == [0, 1, 2, 3]
    assert [m.body for m in inbox.drain()] == ["late"]
    late = recorder.events[-1]
    assert late["body"] == "late" and late["delivered"] is True
    assert len(recorder.of_type("agent/message")) == 5  # the wait itself logged nothing


@pytest.mark.anyio
async def test_send_wait_times_out_as_inbox_full(bus, recorder):
    for i in range(4):
        bus.send("root", "a", body=i)
    result = await bus.send_wait("root", "a", body="late", timeout=0.01)
    assert result.status is SendStatus.INBOX_FULL
    assert recorder.events[-1]["delivered"] is False
    assert len(bus.inbox("a")) == 4


@pytest.mark.anyio
async def test_send_wait_on_unregistered_target_reports_unknown(bus, recorder):
    for i in range(4):
        bus.send("root", "a", body=i)

    async def remove() -> None:
        await anyio.sleep(0)
        bus.unregister("a")

    async with anyio.create_task_group() as tg:
        tg.start_soon(remove)
        result = await bus.send_wait("root", "a", timeout=5)
    assert result.status is SendStatus.UNKNOWN_TARGET
    assert recorder.events[-1]["type"] == "bus/denied"


def test_statistics_count_outcomes_and_queue(bus):
    bus.register("a2", "a", Topology(peer_via_parent=False))
    bus.send("root", "a")
    bus.send("a", "b")  # relayed to root
    bus.send("a1", "a2")  # denied
    bus.send("root", "ghost")  # unknown
    for _ in range(5):
        bus.send("a", "a1")  # 4 delivered, 1 full
    stats = bus.statistics()
    assert (stats.agents, stats.sent, stats.delivered, stats.relayed) == (5, 9, 6, 1)
    assert (stats.denied, stats.inbox_full, stats.queued) == (2, 1, 6)
    bus.inbox("a1").drain()
    assert bus.statistics().queued == 2


@pytest.mark.anyio
async def test_inbox_wait_space_wakes_on_drain_and_times_out():
    inbox = Inbox(1)
    assert inbox.put_nowait(Message("m1", "p", "c", "chat", None, None, 0))
    assert not inbox.put_nowait(Message("m2", "p", "c", "chat", None, None, 0))
    assert await inbox.wait_space(0.01) is False
    results: list[bool] = []

    async def wait() -> None:
        results.append(await inbox.wait_space(5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        assert results == []
        inbox.drain()
    assert results == [True, True]


@pytest.mark.anyio
async def test_send_wait_follows_a_restart_to_the_new_inbox(bus, recorder):
    for i in range(4):
        bus.send("root", "a", body=i)

    async def restart() -> None:
        await anyio.wait_all_tasks_blocked()
        bus.register("a", "root")

    async with anyio.create_task_group() as tg:
        tg.start_soon(restart)
        result = await bus.send_wait("root", "a", body="after", timeout=5)
    assert result.status is SendStatus.OK
    assert [m.body for m in bus.inbox("a").drain()] == ["after"]
