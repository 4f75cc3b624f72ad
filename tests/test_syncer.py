"""Tests of the event log's fsync helper process (agentctl.events.syncer), with real processes."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import anyio
import psutil
import pytest

from agentctl.events.syncer import Syncer

pytestmark = pytest.mark.anyio


@pytest.fixture
def fd(tmp_path: Path):
    fd = os.open(tmp_path / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    yield fd
    os.close(fd)


async def test_syncs_run_in_a_helper_process_that_holds_the_same_file(fd: int, tmp_path: Path) -> None:
    syncer = Syncer(fd)
    os.write(fd, b"x\n")
    await syncer.sync()
    assert syncer.pid is not None and syncer.pid != os.getpid()
    child = psutil.Process(syncer.pid)
    assert str(tmp_path / "events.jsonl") in [f.path for f in child.open_files()]
    await syncer.aclose()


async def test_an_fsync_error_in_the_helper_reaches_the_caller_with_its_errno() -> None:
    read_end, write_end = os.pipe()  # fsync on a pipe fails with EINVAL
    try:
        syncer = Syncer(write_end)
        with pytest.raises(OSError) as info:
            await syncer.sync()
        assert info.value.errno == errno.EINVAL
        assert syncer.pid is not None  # the helper survives an error and serves the next request
        with pytest.raises(OSError):
            await syncer.sync()
        await syncer.aclose()
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_a_killed_helper_is_replaced_by_a_worker_thread(fd: int) -> None:
    syncer = Syncer(fd)
    await syncer.start()
    pid = syncer.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await syncer.sync()
    assert syncer.pid is None
    await syncer.sync()
    await syncer.aclose()


async def test_ctrl_c_does_not_kill_the_helper(fd: int) -> None:
    syncer = Syncer(fd)
    await syncer.sync()
    pid = syncer.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)  # what the terminal sends to the whole foreground group
    await anyio.sleep(0.05)
    await syncer.sync()
    assert syncer.pid == pid
    await syncer.aclose()


async def test_aclose_ends_and_reaps_the_helper(fd: int) -> None:
    syncer = Syncer(fd)
    await syncer.sync()
    pid = syncer.pid
    assert pid is not None
    await syncer.aclose()
    assert syncer.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert pid not in [c.pid for c in psutil.Process().children()]


async def test_concurrent_and_cancelled_syncs_leave_the_helper_serving(fd: int) -> None:
    syncer = Syncer(fd)
    done: list[int] = []

    async def one(i: int) -> None:
        os.write(fd, b"%d\n" % i)
        await syncer.sync()
        done.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)
    assert sorted(done) == list(range(20))
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, 100 + i)
        await anyio.sleep(0)
        tg.cancel_scope.cancel()  # a sync under way finishes (shielded); the waiting ones give up
    pid = syncer.pid
    await syncer.sync()
    assert syncer.pid == pid is not None
    await syncer.aclose()
