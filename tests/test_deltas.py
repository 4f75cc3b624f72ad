"""``ReplyStream``: how streamed fragments become ``llm/delta`` events (coalescing, secrets, bounds).

The stream is fed by hand with a clock the test moves, ticked as the flusher would tick it
(once per interval), into a real ``EventLog`` (which redacts as it writes), so what is
asserted is what a run's log would hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentctl.events.fold import fold
from agentctl.events.log import open_event_log
from agentctl.events.reader import read_events
from agentctl.redact import Redactor
from agentctl.services.deltas import MAX_DELTA_CHARS, ReplyStream

SECRET = "sk-live-0123456789abcdef"


class Clock:
    """The stream's clock; :meth:`advance` also ticks the stream at every interval it passes,
    as the plane's flusher does."""

    def __init__(self) -> None:
        self.now = self.start = 100.0
        self.ticks = 0
        self.stream: ReplyStream | None = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.start + (self.ticks + 1) * 0.1 <= end + 1e-9:
            self.ticks += 1
            self.now = self.start + self.ticks * 0.1
            assert self.stream is not None
            self.stream.tick()
        self.now = end


def logged(tmp_path: Path, feed: Any, *, secrets: tuple[str, ...] = (SECRET,)) -> list[dict[str, Any]]:
    """Run ``feed(stream, clock)`` against a real log; the ``llm/delta`` events written."""
    path = tmp_path / "events.jsonl"
    redactor = Redactor(secrets)

    async def main() -> None:
        async with open_event_log(path, "r", redactor=redactor) as log:
            clock = Clock()
            stream = clock.stream = ReplyStream(log.emit, "a", "l1", redactor=redactor, clock=clock)
            feed(stream, clock)
            stream.close()

    anyio.run(main)
    return [e for e in read_events(path) if e["type"] == "llm/delta"]


def test_first_delta_once_the_call_is_an_interval_old_then_at_most_one_per_interval_plus_the_final_flush(
        tmp_path: Path) -> None:
    """A fragment is only put aside as it comes; the flusher's tick, once per interval, logs them."""
    def feed(stream: ReplyStream, clock: Clock) -> None:
        for i in range(100):          # one fragment every 10 ms for a second
            stream.feed(f"{i} ", "")
            clock.advance(0.01)

    deltas = logged(tmp_path, feed)
    assert "".join(d["content"] for d in deltas) == "".join(f"{i} " for i in range(100))
    # 0.00 .. 0.09 s waited for the first interval to end; the tick at 0.10 s took them out.
    assert deltas[0]["content"] == "".join(f"{i} " for i in range(10))
    assert all(d["content"] for d in deltas) and 9 <= len(deltas) <= 11  # 0.9 s left / 100 ms, plus the final flush


def test_a_reply_whole_within_the_first_interval_logs_no_delta(tmp_path: Path) -> None:
    """Its llm/result comes right after with the whole text: a delta would only repeat it."""
    def quick(stream: ReplyStream, clock: Clock) -> None:
        for word in ("all ", "of ", "it"):
            stream.feed(word, "")
            clock.advance(0.03)     # the last fragment at 0.06 s, the end at 0.09 s

    assert logged(tmp_path, quick) == []
    (tmp_path / "empty").mkdir()
    assert logged(tmp_path / "empty", lambda stream, clock: stream.feed("", "")) == []


def test_a_reply_that_ends_after_its_first_interval_logs_all_of_it(tmp_path: Path) -> None:
    def slow(stream: ReplyStream, clock: Clock) -> None:
        stream.feed("all ", "")
        clock.advance(0.1)          # the first interval ends: its tick logs "all "
        stream.feed("of it", "")    # and the final flush the rest

    def late(stream: ReplyStream, clock: Clock) -> None:
        clock.advance(0.5)          # the model thought; its one fragment goes out at once
        stream.feed("all of it", "")

    assert [d["content"] for d in logged(tmp_path, slow)] == ["all ", "of it"]
    (tmp_path / "late").mkdir()
    assert [d["content"] for d in logged(tmp_path / "late", late)] == ["all of it"]


@pytest.mark.parametrize("split", range(1, len(SECRET)))
def test_a_secret_split_across_fragments_never_reaches_the_log(tmp_path: Path, split: int) -> None:
    def feed(stream: ReplyStream, clock: Clock) -> None:
        # The secret cut at `split`, each part its own fragment, an interval apart: every
        # fragment is a chance to log.
        for part in ("the key is ", SECRET[:split], SECRET[split:], " and again ", SECRET[:split], SECRET[split:] + " bye"):
            stream.feed(part, "")
            clock.advance(0.2)

    deltas = logged(tmp_path, feed)
    raw = (tmp_path / "events.jsonl").read_text()
    for n in range(8, len(SECRET) + 1):   # no 8-character piece of it, anywhere
        assert all(SECRET[i:i + n] not in raw for i in range(len(SECRET) - n + 1)), n
    joined = "".join(d["content"] for d in deltas)
    assert joined == "the key is *** and again *** bye"


def test_the_start_of_a_secret_that_goes_another_way_is_logged_as_it_is(tmp_path: Path) -> None:
    def feed(stream: ReplyStream, clock: Clock) -> None:
        for part in ("say ", SECRET[:10], "... no", " more"):
            stream.feed(part, "")
            clock.advance(0.2)

    deltas = logged(tmp_path, feed)
    assert "".join(d["content"] for d in deltas) == f"say {SECRET[:10]}... no more"
    assert deltas[0]["content"] == "say "  # held back: the start of the secret, until it went another way


def test_tool_call_fragments_are_redacted_too(tmp_path: Path) -> None:
    def feed(stream: ReplyStream, clock: Clock) -> None:
        for part in ("\nshell/run ", '{"cmd": "curl -H ', SECRET[:5], SECRET[5:], '"}'):
            stream.feed("", part)
            clock.advance(0.2)

    deltas = logged(tmp_path, feed)
    assert SECRET[:8] not in (tmp_path / "events.jsonl").read_text()
    assert "".join(d["tool_calls"] for d in deltas) == '\nshell/run {"cmd": "curl -H ***"}'


def test_a_flood_is_cut_to_a_bounded_tail_and_counted(tmp_path: Path) -> None:
    def feed(stream: ReplyStream, clock: Clock) -> None:
        stream.feed("start ", "")
        clock.advance(0.1)            # a tick logs "start "
        for _ in range(50):           # 50 x 1000 characters within one interval
            stream.feed("x" * 999 + "y", "")

    deltas = logged(tmp_path, feed)
    assert [len(d["content"]) for d in deltas] == [6, MAX_DELTA_CHARS]
    assert deltas[1]["cut"] == 50_000 - MAX_DELTA_CHARS and deltas[1]["content"].endswith("y")
    assert max(len(json.dumps(d)) for d in deltas) < MAX_DELTA_CHARS + 400


def test_deltas_change_no_state_resume_or_replay_reads(tmp_path: Path) -> None:
    """The fold with and without ``llm/delta`` events: the same journals and counts."""
    def feed(stream: ReplyStream, clock: Clock) -> None:
        for i in range(30):
            stream.feed(f"w{i} ", "")
            clock.advance(0.05)

    deltas = logged(tmp_path, feed)
    base = [
        {"seq": 1, "t": 1, "type": "agent/spawned", "agent_id": "a", "parent_id": None, "depth": 0, "model": "m",
         "kind": "llm", "tools": [], "budget": {}, "restart": "temporary"},
        {"seq": 2, "t": 2, "type": "llm/requested", "agent_id": "a", "call_id": "l1", "provider": "p", "model": "m",
         "messages": 1, "tools": []},
    ]
    result = {"seq": 99, "t": 9, "type": "llm/result", "agent_id": "a", "call_id": "l1", "provider": "p", "ok": True,
              "error": None, "error_type": None, "reply": {"role": "assistant", "content": "x"}, "prompt_tokens": 1,
              "completion_tokens": 1, "duration_ms": 1.0}
    with_deltas, without = fold([*base, *deltas, result]), fold([*base, result])
    assert with_deltas.journals == without.journals
    assert with_deltas.counts == without.counts
    assert with_deltas.agents["a"].saying and without.agents["a"].saying is None
    # A run killed mid-stream: the call is unanswered either way, so resume asks again.
    mid, none = fold([*base, *deltas]), fold(base)
    assert mid.journals == none.journals and mid.pending_calls == none.pending_calls


def test_text_held_back_as_a_possible_secret_is_logged_at_the_end(tmp_path: Path) -> None:
    """A reply whose only fragment ends like the start of a secret: nothing may be lost."""
    def feed(stream: ReplyStream, clock: Clock) -> None:
        clock.advance(0.2)
        stream.feed(SECRET[:9], "")

    deltas = logged(tmp_path, feed)
    assert [d["content"] for d in deltas] == [SECRET[:9]]


def test_a_streaming_call_that_times_out_ends_with_no_delta() -> None:
    from agentctl.events.log import EventLog
    from agentctl.services.llm.base import ChatRequest
    from agentctl.services.llm.scripted import ScriptedProvider
    from agentctl.services.tools import default_registry
    from agentctl.services.workers import LocalWorkPlane

    seen: list[dict[str, Any]] = []
    log = EventLog(None, "r")
    log.subscribe(seen.append)
    plane = LocalWorkPlane(log.emit, tools=default_registry(), llm_timeout=0.3,
                           providers={"p": ScriptedProvider(["late"], latency=30, stream=True)}, default_provider="p")

    async def main() -> Any:
        async with anyio.create_task_group() as tg:
            tg.start_soon(plane.serve)
            with anyio.fail_after(10):  # the call's own timeout ends it
                out = await plane.call_llm("a", ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
            tg.cancel_scope.cancel()
        return out

    out = anyio.run(main)
    assert (out.ok, out.error_type) == (False, "timeout")
    assert [e["type"] for e in seen] == ["llm/requested", "llm/result"]


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_a_streamed_tool_call_shows_its_name_never_its_arguments(kind: str) -> None:
    """Argument pieces are partial JSON: a value under a secret-looking key could not be
    redacted in them, so the providers stream a call's name only (real server, both wires)."""
    from llm_servers import Behaviour, running_server

    from agentctl.services.llm.base import ChatRequest, ToolSpec
    from agentctl.services.llm.ollama import OllamaProvider
    from agentctl.services.llm.openai import OpenAIProvider

    fragments: list[tuple[str, str]] = []
    write = ToolSpec("fs/write", "Write a file", {"type": "object"})

    async def main() -> Any:
        async with running_server() as server:
            server.then(Behaviour(content="on it", tool_calls=[("fs__write", {"path": "a", "token": "tok-9f8e7d"})]))
            base = server.url + ("/v1" if kind == "openai" else "")
            provider = (OpenAIProvider if kind == "openai" else OllamaProvider)(base, stream=True)
            request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], tools=(write,))
            try:
                return await provider.chat(request, on_delta=lambda text, tools: fragments.append((text, tools)))
            finally:
                await provider.aclose()

    reply = anyio.run(main)
    assert dict(reply.tool_calls[0].arguments)["token"] == "tok-9f8e7d"  # the reply itself is whole
    assert "".join(tools for _, tools in fragments) == "fs/write\n"
    assert "tok-9f8e7d" not in json.dumps(fragments)


@pytest.mark.parametrize("kind", [pytest.param("ollama", marks=pytest.mark.slow), "openai"])  # suite time
def test_a_quick_reply_logs_no_delta_and_a_slow_one_shows_its_text_as_it_comes(kind: str) -> None:
    """Through the work plane and a real server on 127.0.0.1 (an interval of 1 s, so that
    "quick" holds on a loaded machine): a reply sent at once is in its ``llm/result`` only;
    one whose server holds the rest until a delta is logged has its text shown mid-call."""
    import threading

    from llm_servers import Behaviour, running_server

    from agentctl.events.log import EventLog
    from agentctl.services.llm.base import ChatRequest
    from agentctl.services.llm.ollama import OllamaProvider
    from agentctl.services.llm.openai import OpenAIProvider
    from agentctl.services.tools import default_registry
    from agentctl.services.workers import LocalWorkPlane

    text = "".join(f"w{i:02d} " for i in range(20))
    shown = threading.Event()  # the server sends the slow reply's rest only once a delta is logged
    seen: list[dict[str, Any]] = []
    log = EventLog(None, "r")
    log.subscribe(seen.append)
    log.subscribe(lambda e: shown.set() if e["type"] == "llm/delta" else None)

    async def main() -> None:
        async with running_server() as server:
            server.then(Behaviour(content="warm"), Behaviour(content=text),
                        Behaviour(content=text, piece=4, hold=shown, hold_after=3))
            base = server.url + ("/v1" if kind == "openai" else "")
            provider = (OpenAIProvider if kind == "openai" else OllamaProvider)(base, stream=True, retries=0)
            plane = LocalWorkPlane(log.emit, tools=default_registry(), providers={"p": provider}, default_provider="p",
                                   delta_interval=1.0)
            request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(plane.serve)  # as the runtime runs it
                    with anyio.fail_after(30):
                        for call_id in ("warm", "quick", "slow"):
                            assert (await plane.call_llm("a", request, call_id=call_id)).ok
                    tg.cancel_scope.cancel()
            finally:
                await plane.aclose()

    anyio.run(main)
    assert [e["type"] for e in seen if e.get("call_id") == "quick"] == ["llm/requested", "llm/result"]
    slow = [e for e in seen if e.get("call_id") == "slow"]
    deltas = [e for e in slow if e["type"] == "llm/delta"]
    assert "".join(d["content"] for d in deltas) == text == slow[-1]["reply"]["content"]
    # The first delta went out while the server held the rest: only the first pieces are in it.
    assert len(deltas) >= 2 and text.startswith(deltas[0]["content"]) and len(deltas[0]["content"]) <= 12


def test_one_flusher_logs_what_paused_calls_hold_and_ends_with_its_task_group() -> None:
    """Three calls whose models said a word and then paused: the flusher's one task logs
    each call's word while all three still wait, and is cancelled with its task group."""
    from agentctl.events.log import EventLog
    from agentctl.services.deltas import Flusher

    seen: list[dict[str, Any]] = []
    log = EventLog(None, "r")
    log.subscribe(seen.append)
    flusher = Flusher(0.05)
    resume = anyio.Event()

    async def paused_model(stream: ReplyStream, word: str) -> str:
        stream.feed(word, "")       # within the call's first interval: held
        await resume.wait()
        stream.feed(" more", "")
        return word + " more"

    async def main() -> list[str]:
        replies: list[str] = []

        async def call(n: int) -> None:
            stream = ReplyStream(log.emit, "a", f"l{n}", interval=flusher.interval)
            replies.append(await flusher.follow(stream, paused_model(stream, f"word{n}")))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(flusher.run)
                async with anyio.create_task_group() as calls:
                    for n in range(3):
                        calls.start_soon(call, n)
                    while len([e for e in seen if e["type"] == "llm/delta"]) < 3:
                        await anyio.sleep(0.01)
                    resume.set()
                tg.cancel_scope.cancel()
        return replies

    assert sorted(anyio.run(main)) == [f"word{n} more" for n in range(3)]
    by_call = {n: [e["content"] for e in seen if e["call_id"] == f"l{n}"] for n in range(3)}
    # Each call's word came out while it paused; the rest with its final flush.
    assert by_call == {n: [f"word{n}", " more"] for n in range(3)}


def test_a_fragment_costs_no_clock_read_and_no_copy_of_what_came_before(tmp_path: Path) -> None:
    """Per fragment only an append: the clock is read by the flusher's tick and the final
    flush, never by ``feed`` (a reply comes in thousands of fragments)."""
    reads = 0

    def clock() -> float:
        nonlocal reads
        reads += 1
        return 100.0 + reads  # always past the first interval

    from agentctl.events.log import EventLog

    seen: list[dict[str, Any]] = []
    log = EventLog(None, "r")
    log.subscribe(seen.append)
    stream = ReplyStream(log.emit, "a", "l1", clock=clock)
    before = reads
    for i in range(10_000):
        stream.feed(f"{i} ", "" if i % 100 else "shell/run\n")
    assert reads == before and seen == []
    stream.tick()  # one event for all of it: the tail, the rest counted
    stream.close()
    assert reads == before + 1
    text = "".join(f"{i} " for i in range(10_000))
    assert [(d["content"], d["tool_calls"], d["cut"]) for d in seen] == [
        (text[-MAX_DELTA_CHARS:], "shell/run\n" * 100, len(text) - MAX_DELTA_CHARS)]


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_a_reply_whose_text_is_not_a_string_fails_its_call_not_the_flusher(kind: str) -> None:
    """Model output is untrusted: a chunk whose text is a number, then a pause long enough for
    the flusher to tick, ends that call with an error; the flusher and the next call go on."""
    from llm_servers import Behaviour, running_server

    from agentctl.events.log import EventLog
    from agentctl.services.llm.base import ChatRequest
    from agentctl.services.llm.ollama import OllamaProvider
    from agentctl.services.llm.openai import OpenAIProvider
    from agentctl.services.tools import default_registry
    from agentctl.services.workers import LocalWorkPlane

    if kind == "openai":
        bad = 'data: {"choices": [{"delta": {"content": "ok "}}]}\n\ndata: {"choices": [{"delta": {"content": 5}}]}\n\n'
        bad += 'data: {"choices": [{"delta": {"content": "x"}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    else:
        bad = '{"message": {"content": "ok "}}\n{"message": {"content": 5}}\n{"message": {"content": "x"}, "done": true}\n'
    seen: list[dict[str, Any]] = []
    log = EventLog(None, "r")
    log.subscribe(seen.append)

    async def main() -> list[Any]:
        async with running_server() as server:
            # Each line its own transfer chunk, 0.3 s apart: the flusher ticks between them.
            cuts = [len(line) + 1 for line in bad.split("\n")]
            server.then(Behaviour(body=bad, cut=min(cuts[:2]) if kind == "ollama" else len(bad) // 4, gap=0.3),
                        Behaviour(content="fine"))
            base = server.url + ("/v1" if kind == "openai" else "")
            provider = (OpenAIProvider if kind == "openai" else OllamaProvider)(base, stream=True, retries=0)
            plane = LocalWorkPlane(log.emit, tools=default_registry(), providers={"p": provider}, default_provider="p",
                                   delta_interval=0.05)
            request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(plane.serve)
                    with anyio.fail_after(30):
                        outs = [await plane.call_llm("a", request, call_id=c) for c in ("bad", "good")]
                    tg.cancel_scope.cancel()
            finally:
                await plane.aclose()
        return outs

    bad_out, good_out = anyio.run(main)
    assert (bad_out.ok, bad_out.error_type, good_out.ok) == (False, "llm_error", True)
    assert "Expected `str | null`, got `int` - at `$." in bad_out.error and ".content`" in bad_out.error
    assert all(isinstance(e.get("content", ""), str) for e in seen if e["type"] == "llm/delta")
