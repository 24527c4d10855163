"""Streamed answers, checked as they stream: the windowing rule, the moderators, and
``Guard.stream`` / ``Guard.astream``."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from guard_plugin import Guard, Policy
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.errors import ConfigError
from guard_plugin.policy import Streaming, policy_from_mapping
from guard_plugin.streams import StreamModerator, Windows, count_units
from guard_plugin.testing import ScriptedClassifier
from guard_plugin.types import Action

REFUSAL = Policy().messages.refusal
UNSAFE = "you worthless idiot"


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def answer_with(at: int, total: int = 300) -> str:
    """A long answer in sentences with the unsafe phrase after word ``at``."""
    parts = []
    for i in range(total):
        parts.append(f"w{i}" + ("." if i % 11 == 10 else ""))
        if i == at:
            parts.append(UNSAFE)
    return " ".join(parts)


def pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def guard(**policy: object) -> Guard:
    return Guard(ScriptedClassifier(), policies=Policy(**policy), audit=[])  # type: ignore[arg-type]


def assert_held_prefix(shown: str, original: str) -> str:
    """``shown`` is a prefix of ``original`` without the unsafe phrase, then the refusal."""
    assert shown.endswith(REFUSAL), shown[-200:]
    prefix = shown[: -len(REFUSAL)]
    if prefix:
        assert prefix.endswith("\n\n")
        prefix = prefix[:-2]
    assert original.startswith(prefix)
    assert "worthless" not in prefix and "idiot" not in prefix
    return prefix


# -- the rule -------------------------------------------------------------------------------------


def cut(text: str, settings: Streaming, size: int = 4) -> list[tuple[str, str]]:
    w = Windows(settings)
    out = []
    for p in pieces(text, size):
        out += w.push(p)
    last = w.close()
    full = text
    return [(full[x.start : x.new_from], full[x.new_from : x.end]) for x in [*out, last] if x]


def test_windows_cover_the_text_once_in_order() -> None:
    text = answer_with(40, 200)
    for unit in ("tokens", "chars"):
        s = Streaming(unit=unit, chunk_size=16, first_chunk_size=3, context_size=8)
        ws = cut(text, s)
        assert "".join(new for _, new in ws) == text
        assert len(ws) > 5


def test_first_window_is_small_and_edges_fall_between_words() -> None:
    s = Streaming(chunk_size=12, first_chunk_size=3)
    ws = cut("Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi", s)
    assert ws[0][1] == "Alpha beta gamma"
    for _, new in ws[1:]:
        assert new.startswith(" ")  # never cut inside a word


def test_window_prefers_a_sentence_end_in_its_second_half() -> None:
    s = Streaming(chunk_size=10, first_chunk_size=10)
    ws = cut("One two three four five six seven. Eight nine ten eleven twelve", s)
    assert ws[0][1] == "One two three four five six seven."


def test_a_word_still_arriving_is_not_cut() -> None:
    w = Windows(Streaming(first_chunk_size=2))
    assert w.push("Hello wor") == []  # "wor" may go on
    (first,) = w.push("ld and more")
    assert first.end == len("Hello world")


def test_cjk_counts_characters() -> None:
    assert count_units("日本語のテキスト") == 8
    s = Streaming(chunk_size=4, first_chunk_size=2)
    ws = cut("これは長い日本語の文章です。次の文です。", s, size=2)
    assert ws[0][1] == "これ"
    assert "".join(n for _, n in ws) == "これは長い日本語の文章です。次の文です。"


def test_checks_keep_context_and_stay_bounded() -> None:
    s = Streaming(chunk_size=10, first_chunk_size=10, context_size=20)
    text = words(2000)
    w = Windows(s)
    for p in pieces(text, 7):
        for x in w.push(p):
            before = count_units(text[x.start : x.new_from])
            if x.new_from > 200:
                assert before >= 20  # at least context_size units of what came before
            assert before <= 2 * 20 + 10
    assert len(w._buf) < 1000  # only recent text is kept


def test_streaming_policy_is_validated() -> None:
    p = policy_from_mapping({"streaming": {"mode": "first", "chunk_size": 32}})
    assert p.streaming.mode == "first" and p.streaming.chunk_size == 32
    for bad in ({"mode": "later"}, {"chunk_size": 0}, {"window": 3}):
        with pytest.raises(ConfigError):
            policy_from_mapping({"streaming": bad})


# -- the moderator --------------------------------------------------------------------------------


def test_hold_shows_nothing_before_its_check() -> None:
    gate = threading.Event()
    seen: list[str] = []

    def slow(req: object) -> str:
        gate.wait(5)
        seen.append(str(req))
        return "User Safety: safe\nResponse Safety: safe"

    g = Guard(ScriptedClassifier(fn=slow), audit=[])
    with StreamModerator(g, context="hi") as mod:
        out = "".join(mod.push(p) for p in pieces(words(40)))
        assert out == ""  # the first check has not answered
        gate.set()
        out += mod.finish()
    assert out == words(40)


def test_first_shows_at_once_and_audits_what_was_shown_unchecked() -> None:
    sink = MemoryAuditSink()
    g = Guard(
        ScriptedClassifier(delay=0.05),
        policies=Policy(streaming=Streaming(mode="first")),
        audit=sink,
    )
    text = answer_with(5, 60)
    out = "".join(g.stream(pieces(text), context="hi"))
    assert out.endswith(REFUSAL)
    assert "worthless" in out  # shown before its check: the tenant chose `first`
    overrides = [e for e in sink.events if e.event == "override"]
    assert overrides and "shown unchecked" in str(overrides[0].reason)


def test_classifier_error_ends_the_stream_with_the_failure_text() -> None:
    g = Guard(
        ScriptedClassifier(error=RuntimeError("down")),
        policies=Policy(messages={"failure": "Checks are down; try later."}),
        audit=[],
    )
    s = g.stream(pieces(words(30)), context="hi")
    assert "".join(s) == "Checks are down; try later."
    assert s.stopped is not None and s.stopped.error is not None


def test_stream_reads_the_source_no_further_after_a_stop() -> None:
    read: list[str] = []

    def source():
        for p in pieces(answer_with(3, 400)):
            read.append(p)
            time.sleep(0.002)  # a model producing tokens
            yield p

    g = guard()
    out = "".join(g.stream(source(), context="hi"))
    assert out.endswith(REFUSAL)
    assert len(read) < len(pieces(answer_with(3, 400))) // 2


def test_a_consumer_that_stops_reading_leaves_no_thread() -> None:
    g = Guard(ScriptedClassifier(delay=0.01), audit=[])
    it = iter(g.stream(pieces(words(500)), context="hi"))
    next(it)
    it.close()  # type: ignore[attr-defined]
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "guard-plugin-stream"]


@pytest.mark.parametrize("seed", range(50))
def test_unsafe_text_anywhere_never_reaches_the_consumer(seed: int) -> None:
    rng = random.Random(seed)
    text = answer_with(rng.randrange(0, 299))
    size = rng.choice([1, 2, 5, 13])
    out = "".join(guard().stream(pieces(text, size), context="hi"))
    assert_held_prefix(out, text)


def test_safe_text_passes_whole_sync_and_async() -> None:
    text = words(300) + "."
    g = guard()
    assert "".join(g.stream(pieces(text), context="hi")) == text

    async def run() -> str:
        return "".join([t async for t in g.astream(pieces(text), context="hi")])

    assert asyncio.run(run()) == text


@pytest.mark.parametrize("seed", range(10))
def test_async_unsafe_text_never_reaches_the_consumer(seed: int) -> None:
    rng = random.Random(100 + seed)
    text = answer_with(rng.randrange(0, 299))

    async def source():
        for p in pieces(text, 4):
            await asyncio.sleep(0)
            yield p

    async def run() -> tuple[str, object]:
        s = guard().astream(source(), context="hi")
        return "".join([t async for t in s]), s.stopped

    out, stopped = asyncio.run(run())
    assert_held_prefix(out, text)
    assert getattr(stopped, "action", None) is Action.BLOCK


def test_async_release_does_not_wait_for_the_next_piece() -> None:
    """Text is handed out when its check passes, even while the source is silent."""

    async def run() -> float:
        g = guard()

        async def source():
            yield "Hello there friend, "
            yield "this is fine."
            await asyncio.sleep(1.0)  # the model pauses
            yield " More."

        t0 = time.perf_counter()
        async for _text in g.astream(source(), context="hi"):
            return time.perf_counter() - t0
        return 99.0

    assert asyncio.run(run()) < 0.5


def test_a_hundred_thousand_token_answer_keeps_a_bounded_window() -> None:
    s = Streaming(chunk_size=256, first_chunk_size=4, context_size=256)
    w = Windows(s)
    biggest = 0
    for i in range(0, 100_000, 50):
        w.push(" " + words(50, i))
        biggest = max(biggest, len(w._buf))
    assert biggest < 20_000  # characters kept, whatever the answer's length


def test_the_checks_of_one_stream_share_a_request_id_in_the_audit() -> None:
    sink = MemoryAuditSink()
    g = Guard(ScriptedClassifier(), audit=sink)
    list(g.stream(pieces(words(200)), context="hi"))
    list(g.stream(pieces(words(200)), context="hi", request_id="turn-7"))
    ids = [e.request_id for e in sink.events if e.event == "decision"]
    first = {i.rsplit(":w", 1)[0] for i in ids if not i.startswith("turn-7")}
    assert len(first) == 1 and next(iter(first)).startswith("stream-")
    assert [i for i in ids if i.startswith("turn-7")][:2] == ["turn-7:w1", "turn-7:w2"]
