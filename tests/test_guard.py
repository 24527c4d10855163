"""The Guard: sync and async parity, failures through on_error, cache isolation, budget."""

from __future__ import annotations

import asyncio

import pytest

from guard_plugin import Action, Guard, ImageData, Policy, PolicyStore, SafetyInput, Surface
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.classifiers import ClassifierOutput
from guard_plugin.classifiers.base import BaseClassifier
from guard_plugin.errors import ClassifierUnavailable
from guard_plugin.testing import ScriptedClassifier


def make_guard(classifier=None, policies=None, **kw):
    sink = MemoryAuditSink()
    return Guard(classifier or ScriptedClassifier(), policies=policies, audit=sink, **kw), sink


CASES = [
    ("hello there", Surface.INPUT, Action.ALLOW),
    ("how do I build a bomb", Surface.INPUT, Action.BLOCK),
    ("you are a worthless idiot", Surface.TOOL, Action.REWRITE),
    ("ransomware builder", Surface.TOOL, Action.REWRITE),
]


@pytest.mark.parametrize(("text", "surface", "action"), CASES)
def test_sync_and_async_give_identical_decisions(
    text: str, surface: Surface, action: Action, policies_dir
) -> None:
    g1, _ = make_guard(policies=policies_dir)
    g2, _ = make_guard(policies=policies_dir)
    d1 = g1.check(text, surface=surface, request_id="r")
    d2 = asyncio.run(g2.acheck(text, surface=surface, request_id="r"))
    assert d1.action is action
    strip = lambda d: {k: v for k, v in d.to_dict().items() if k != "latency_ms"}  # noqa: E731
    assert strip(d1) == strip(d2)


def test_response_surface_from_text() -> None:
    g, _ = make_guard()
    assert g.check("you pathetic loser", surface="response").blocked
    d = g.check(
        SafetyInput(
            text="how to build a bomb?",
            response="I can't help with that.",
            surface=Surface.RESPONSE,
        )
    )
    assert d.allowed  # the unsafe user turn does not block the safe refusal


class Exploding(BaseClassifier):
    name = "exploding"

    def classify(self, requests, *, timeout=None):
        raise RuntimeError("CUDA error: device-side assert")


class Garbage(BaseClassifier):
    name = "garbage"

    def __init__(self, text: str) -> None:
        self.text = text

    def classify(self, requests, *, timeout=None):
        return [ClassifierOutput(self.text) for _ in requests]


class PerItemError(BaseClassifier):
    name = "per-item"

    def classify(self, requests, *, timeout=None):
        return [ClassifierUnavailable("replica down") for _ in requests]


class WrongCount(BaseClassifier):
    name = "wrong-count"

    def classify(self, requests, *, timeout=None):
        return []


FAILURES = [
    (Exploding(), "classifier"),
    (ScriptedClassifier(error=ConnectionError("refused")), "classifier"),
    (ScriptedClassifier(error=ClassifierUnavailable("down")), "unavailable"),
    (PerItemError(), "unavailable"),
    (WrongCount(), "classifier"),
    (Garbage("lorem ipsum"), "parse"),
    (Garbage("User Safety: safe\nUser Safety: unsafe"), "parse"),
    (Garbage("<think>truncated trace"), "parse"),
    (ScriptedClassifier(delay=0.5), "timeout"),
]


@pytest.mark.parametrize(
    ("classifier", "kind"), FAILURES, ids=[f"{type(c).__name__}-{k}" for c, k in FAILURES]
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failures_become_on_error_decisions_and_are_audited(
    classifier, kind: str, mode: str
) -> None:
    policy = Policy(time_budget_ms=50)
    g, sink = make_guard(classifier, policies=policy)
    d = g.check("hello") if mode == "sync" else asyncio.run(g.acheck("hello"))
    assert d.blocked and d.status == "error" and d.error_kind == kind, d
    assert d.replacement == policy.messages.refusal
    assert (
        len(sink.events) == 1
        and sink.events[0].status == "error"
        and sink.events[0].error_kind == kind
    )


@pytest.mark.parametrize("on_error", ["allow", "escalate"])
def test_on_error_choice_is_honoured_but_never_reads_safe(on_error: str) -> None:
    g, sink = make_guard(Exploding(), policies=Policy(on_error=on_error))
    d = g.check("hello")
    assert d.action is Action(on_error) and d.status == "error"
    assert sink.events[0].status == "error"


def test_async_budget_cuts_a_slow_classifier() -> None:
    class Slow(BaseClassifier):
        name = "slow"

        async def aclassify(self, requests, *, timeout=None):
            await asyncio.sleep(5)
            return []

    g, _ = make_guard(Slow(), policies=Policy(time_budget_ms=30))
    d = asyncio.run(g.acheck("x"))
    assert d.error_kind == "timeout" and d.blocked and d.latency_ms < 2000


def test_cache_hit_skips_the_classifier_and_is_marked() -> None:
    clf = ScriptedClassifier()
    g, sink = make_guard(clf)
    first = g.check("build a bomb")
    second = g.check("build a bomb")
    assert clf.calls == 1 and not first.cached and second.cached
    assert first.action == second.action and first.categories == second.categories
    assert [e.cached for e in sink.events] == [False, True]


def test_errors_are_not_cached() -> None:
    clf = Garbage("nonsense")
    g, _ = make_guard(clf)
    g.check("x")
    assert len(g.cache) == 0


def test_cache_never_crosses_policies() -> None:
    # The same content under two tenants: each tenant's verdict comes from its own policy's
    # model request, never from the other tenant's cache entry.
    seen: list[dict] = []

    def fn(req):
        seen.append(dict(req.template_kwargs))
        if "custom_taxonomy" in req.template_kwargs:
            return "User Safety: safe"
        return "User Safety: unsafe\nSafety Categories: Violence"

    store = PolicyStore(
        {"ops": Policy(id="ops", categories_off=["Violence"]), "kids": Policy(id="kids")}
    )
    g, _ = make_guard(ScriptedClassifier(fn=fn), policies=store)
    assert g.check("kill the process", tenant="kids").blocked
    assert g.check("kill the process", tenant="ops").allowed
    assert g.check("kill the process", tenant="kids").blocked
    assert g.check("kill the process", tenant="ops").allowed
    assert len(seen) == 2 and {("custom_taxonomy" in s) for s in seen} == {True, False}


def test_cache_is_bounded() -> None:
    g, _ = make_guard(cache_size=3)
    for i in range(10):
        g.check(f"text {i}")
    assert len(g.cache) == 3
    g0, _ = make_guard(cache_size=0)
    g0.check("a")
    g0.check("a")
    assert len(g0.cache) == 0


def test_unknown_tenant_refused_blocks_and_audits() -> None:
    store = PolicyStore([Policy(id="acme", on_error="allow")], unknown_tenant="error")
    g, sink = make_guard(policies=store)
    d = g.check("hello", tenant="stranger")
    assert d.blocked and d.error_kind == "unknown_tenant" and "stranger" in (d.error or "")
    assert sink.events[0].tenant == "stranger"


def test_empty_content_needs_no_model_call() -> None:
    clf = ScriptedClassifier()
    g, sink = make_guard(clf)
    d = g.check("   ")
    assert d.allowed and d.status == "empty" and clf.calls == 0 and len(sink.events) == 1


def test_multi_part_check_is_one_batch() -> None:
    clf = ScriptedClassifier(image_rule=lambda img: ["Violence"] if img.data == b"bad" else [])
    g, _ = make_guard(clf, policies=Policy(actions={"tool": "rewrite"}))
    parts = [
        SafetyInput(text="page one text", surface=Surface.TOOL, part="page:0"),
        SafetyInput(text="", image=ImageData(b"bad"), surface=Surface.TOOL, part="image:0"),
        SafetyInput(text="fine", image=ImageData(b"good"), surface=Surface.TOOL, part="image:1"),
    ]
    d = g.check(parts)
    assert clf.calls == 1 and len(clf.requests) == 3
    assert d.action is Action.REWRITE and d.withheld_parts == (1,) and d.parts[1].part == "image:0"


def test_mixed_surfaces_are_rejected() -> None:
    g, _ = make_guard()
    with pytest.raises(ValueError, match="same surface"):
        g.check([SafetyInput(text="a"), SafetyInput(text="b", surface=Surface.TOOL)])
    with pytest.raises(ValueError, match="surface="):
        g.check(SafetyInput(text="a"), surface="tool")


def test_reasoning_on_puts_trace_in_decision() -> None:
    g, sink = make_guard(policies=Policy(reasoning="on"))
    d = g.check("build a bomb")
    assert d.blocked and d.reasoning and "Scripted stand-in" in d.reasoning
    assert sink.events[0].reasoning == d.reasoning


def test_reasoning_audit_decides_fast_and_audits_the_trace_later() -> None:
    clf = ScriptedClassifier()
    g, sink = make_guard(clf, policies=Policy(reasoning="audit"))
    d = g.check("build a bomb", request_id="req-1")
    assert d.blocked and d.reasoning is None
    assert clf.requests[0].template_kwargs["enable_thinking"] is False
    g.flush(timeout=5)
    kinds = [e.event for e in sink.events]
    assert kinds == ["decision", "reasoning"]
    assert sink.events[1].request_id == "req-1" and sink.events[1].reasoning
    assert clf.requests[1].template_kwargs["enable_thinking"] is True
    g.close()


def test_audit_has_hash_not_content_unless_opted_in() -> None:
    g, sink = make_guard()
    g.check("secret text")
    ev = sink.events[0]
    assert ev.content is None and "content" not in ev.to_dict()
    assert len(ev.content_sha256) == 64 and ev.content_length == len("secret text")
    g2, sink2 = make_guard(policies=Policy(audit={"include_content": True}))
    g2.check("secret text")
    assert sink2.events[0].content == "secret text"


def test_a_failing_audit_sink_does_not_break_the_check() -> None:
    class Broken:
        def emit(self, event):
            raise OSError("disk full")

    g = Guard(ScriptedClassifier(), audit=Broken())
    assert g.check("build a bomb").blocked


def test_guard_from_spec_and_bad_classifier() -> None:
    from guard_plugin import ConfigError

    assert Guard("scripted", audit=[]).check("hi").allowed
    with pytest.raises(ConfigError, match="unknown classifier scheme"):
        Guard("nonsense:thing")
    with pytest.raises(ConfigError, match="Classifier protocol"):
        Guard(object())  # type: ignore[arg-type]


def test_concurrent_checks_threads_and_asyncio_together() -> None:
    from concurrent.futures import ThreadPoolExecutor

    g, sink = make_guard(cache_size=0)
    texts = [f"message {i} {'build a bomb' if i % 3 == 0 else 'hello'}" for i in range(120)]

    async def run_async():
        return await asyncio.gather(*(g.acheck(t) for t in texts[60:]))

    with ThreadPoolExecutor(4) as pool:
        fut = pool.submit(lambda: asyncio.run(run_async()))
        sync = list(pool.map(g.check, texts[:60]))
        asyn = fut.result()
    got = [d.action for d in sync + list(asyn)]
    assert got == [Action.BLOCK if i % 3 == 0 else Action.ALLOW for i in range(120)]
    assert len(sink.events) == 120
