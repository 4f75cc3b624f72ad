"""Tests for hierarchical path locks: sharing, conflicts, reentrancy, waiting, release."""

from __future__ import annotations

import anyio
import pytest

from agentctl.errors import LockError
from agentctl.services.locks import LockService, normalize_path


@pytest.fixture
def locks(recorder) -> LockService:
    return LockService(recorder)


def test_read_locks_are_shared(locks, recorder):
    assert locks.try_acquire("a", "src", "read").ok
    assert locks.try_acquire("b", "src", "read").ok
    assert locks.holders() == {"src": {"a": "read", "b": "read"}}
    assert [e["type"] for e in recorder.events] == ["lock/acquired", "lock/acquired"]


@pytest.mark.parametrize(("first", "second"), [("read", "write"), ("write", "read"), ("write", "write")])
def test_write_conflicts_across_agents(locks, recorder, first, second):
    assert locks.try_acquire("a", "src/x.py", first).ok
    result = locks.try_acquire("b", "src/x.py", second)
    assert not result.ok and result.count == 0
    c = result.conflict
    assert (c.path, c.mode, c.holder, c.holder_path, c.holder_mode) == ("src/x.py", second, "a", "src/x.py", first)
    event = recorder.events[-1]
    assert event["type"] == "lock/conflict" and event["agent_id"] == "b"
    assert (event["conflict_id"], event["holder"], event["holder_mode"]) == (c.id, "a", first)
    assert locks.held_by("b") == {}


def test_ancestor_lock_covers_descendants(locks):
    assert locks.try_acquire("a", "src", "write").ok
    result = locks.try_acquire("b", "src/pkg/mod.py", "read")
    assert not result.ok and result.conflict.holder_path == "src"
    assert locks.try_acquire("b", "srcfoo/x.py", "write").ok  # a sibling name sharing a prefix


def test_descendant_lock_blocks_ancestor(locks):
    assert locks.try_acquire("a", "src/pkg/mod.py", "read").ok
    result = locks.try_acquire("b", "src", "write")
    assert not result.ok and result.conflict.holder_path == "src/pkg/mod.py"
    assert locks.try_acquire("b", "src", "read").ok  # reads still share


def test_root_covers_everything(locks):
    assert locks.try_acquire("a", "deep/file.txt", "read").ok
    result = locks.try_acquire("b", ".", "write")
    assert not result.ok and result.path == "."
    locks.release("a", "deep/file.txt")
    assert locks.try_acquire("b", "", "write").ok
    assert not locks.try_acquire("c", "anything", "read").ok


def test_conflict_ids_are_unique(locks):
    locks.try_acquire("a", "f", "write")
    ids = {locks.try_acquire("b", "f").conflict.id for _ in range(3)}
    assert len(ids) == 3


def test_reentrant_holds_count_up_and_down(locks, recorder):
    assert locks.try_acquire("a", "f").count == 1
    assert locks.try_acquire("a", "./f/").count == 2
    assert locks.release("a", "f") is False
    assert locks.held_by("a") == {"f": "write"}
    assert locks.release("a", "f") is True
    assert locks.held_by("a") == {}
    types = [(e["type"], e.get("count")) for e in recorder.events]
    assert types == [("lock/acquired", 1), ("lock/acquired", 2), ("lock/released", 1), ("lock/released", 0)]


def test_read_upgrades_to_write_only_when_alone(locks):
    assert locks.try_acquire("a", "f", "read").ok
    up = locks.try_acquire("a", "f", "write")
    assert up.ok and up.mode == "write" and up.count == 2
    assert not locks.try_acquire("b", "f", "read").ok

    assert locks.try_acquire("b", "g", "read").ok
    assert locks.try_acquire("c", "g", "read").ok
    denied = locks.try_acquire("b", "g", "write")
    assert not denied.ok and denied.conflict.holder == "c"
    assert locks.held_by("b") == {"g": "read"}


def test_release_of_unheld_lock_raises(locks):
    with pytest.raises(LockError):
        locks.release("a", "f")
    locks.try_acquire("b", "f")
    with pytest.raises(LockError):
        locks.release("a", "f")


def test_release_all_frees_everything_and_emits_holder_ended(locks, recorder):
    locks.try_acquire("a", "x")
    locks.try_acquire("a", "x")
    locks.try_acquire("a", "y/z", "read")
    assert locks.release_all("a") == ["x", "y/z"]
    assert locks.holders() == {}
    released = recorder.of_type("lock/released")
    assert [(e["agent_id"], e["path"], e["reason"]) for e in released] == [
        ("a", "x", "holder_ended"),
        ("a", "y/z", "holder_ended"),
    ]
    assert locks.try_acquire("b", ".", "write").ok
    assert locks.release_all("nobody") == []


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside", "src/../../x", "a/..", "C:/x"])
def test_absolute_and_parent_paths_are_rejected(locks, bad):
    with pytest.raises(LockError):
        locks.try_acquire("a", bad)


def test_paths_are_normalised():
    assert normalize_path("./src//pkg/") == "src/pkg"
    assert normalize_path("src\\pkg\\m.py") == "src/pkg/m.py"
    assert normalize_path("") == normalize_path(".") == normalize_path("./") == "."


def test_bad_mode_is_rejected(locks):
    with pytest.raises(LockError):
        locks.try_acquire("a", "f", "exclusive")


@pytest.mark.anyio
async def test_waiting_acquire_gets_lock_when_holder_releases(locks, recorder):
    assert locks.try_acquire("a", "src").ok
    got = []

    async def waiter() -> None:
        got.append(await locks.acquire("b", "src/m.py", "write", timeout=5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert locks.statistics().waiting == 1
        locks.release("a", "src")
    (result,) = got
    assert result.ok and result.path == "src/m.py" and result.count == 1
    seen = [(e["type"], e["agent_id"]) for e in recorder.events]
    assert seen == [
        ("lock/acquired", "a"),
        ("lock/conflict", "b"),
        ("lock/released", "a"),
        ("lock/acquired", "b"),
    ]
    assert locks.holders() == {"src/m.py": {"b": "write"}}


@pytest.mark.anyio
async def test_waiting_acquire_times_out_with_the_conflict(locks, recorder):
    locks.try_acquire("a", "f", "read")
    result = await locks.acquire("b", "f", "write", timeout=0.01)
    assert not result.ok and result.conflict.holder == "a"
    assert len(recorder.of_type("lock/conflict")) == 1
    assert result.conflict.id == recorder.of_type("lock/conflict")[0]["conflict_id"]
    assert locks.statistics().waiting == 0
    assert locks.held_by("b") == {}


@pytest.mark.anyio
async def test_waiters_are_served_in_fifo_order(locks, recorder):
    locks.try_acquire("a", "f", "write")
    order: list[str] = []

    async def want(agent: str, mode: str) -> None:
        result = await locks.acquire(agent, "f", mode, timeout=5)
        assert result.ok
        order.append(agent)
        await anyio.wait_all_tasks_blocked()
        locks.release(agent, "f")

    async with anyio.create_task_group() as tg:
        for agent, mode in (("w1", "write"), ("r1", "read"), ("w2", "write")):
            tg.start_soon(want, agent, mode)
            await anyio.wait_all_tasks_blocked()
        locks.release("a", "f")
    assert order == ["w1", "r1", "w2"]
    acquired = [e["agent_id"] for e in recorder.of_type("lock/acquired")]
    assert acquired == ["a", "w1", "r1", "w2"]


@pytest.mark.anyio
async def test_later_waiter_does_not_jump_an_earlier_conflicting_one(locks):
    assert locks.try_acquire("r0", "src", "read").ok
    assert locks.try_acquire("x", "lib", "write").ok
    granted: list[str] = []

    async def want(agent: str, path: str, mode: str) -> None:
        if (await locks.acquire(agent, path, mode, timeout=5)).ok:
            granted.append(agent)

    async with anyio.create_task_group() as tg:
        tg.start_soon(want, "w1", ".", "write")  # blocked by r0 and x
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(want, "r2", "lib/b", "read")  # blocked by x
        await anyio.wait_all_tasks_blocked()
        locks.release("x", "lib")
        await anyio.wait_all_tasks_blocked()
        # r2 would fit now, but w1 asked first for an overlapping write.
        assert granted == [] and locks.statistics().waiting == 2
        locks.release("r0", "src")
        await anyio.wait_all_tasks_blocked()
        assert granted == ["w1"]
        locks.release("w1", ".")
    assert granted == ["w1", "r2"]


@pytest.mark.anyio
async def test_cancelled_waiter_leaves_the_queue(locks):
    locks.try_acquire("a", "f")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: locks.acquire("b", "f", "write", timeout=5))
        await anyio.wait_all_tasks_blocked()
        assert locks.statistics().waiting == 1
        tg.cancel_scope.cancel()
    assert locks.statistics().waiting == 0
    locks.release("a", "f")
    assert locks.holders() == {}


def test_statistics(locks):
    locks.try_acquire("a", "f")
    locks.try_acquire("a", "f")
    locks.try_acquire("b", "f")
    locks.try_acquire("b", "g", "read")
    locks.release_all("a")
    stats = locks.statistics()
    assert (stats.held, stats.waiting, stats.acquired, stats.conflicts, stats.released) == (1, 0, 3, 1, 1)
