"""The local backend's prefix cache: a check prefills only what it does not share with a
recent prompt, with the logits of a full prefill."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from guard_plugin import Policy
from guard_plugin.classifiers.transformers import TransformersClassifier
from guard_plugin.policy import Streaming, compile_policy
from guard_plugin.prompting import SafetyInput, build_request
from guard_plugin.streams import Windows
from guard_plugin.types import TEXT, Surface


@pytest.fixture(scope="module")
def pair(verdict_model: Any) -> Any:
    on = TransformersClassifier(str(verdict_model.path), prefix_cache_mb=64)
    off = TransformersClassifier(str(verdict_model.path), prefix_cache_mb=0)
    yield on, off
    on.close()
    off.close()


def window_requests(policy: Policy, marker_at: int | None = None) -> list[Any]:
    """The checks of a streamed answer, window by window, as the guard sends them."""
    words = [f"word{i}" + ("." if i % 9 == 8 else "") for i in range(300)]
    if marker_at is not None:
        words.insert(marker_at, "bomb")
    text = " ".join(words)
    w = Windows(Streaming())
    spans = [text[x.start : x.end] for p in text.split(" ") for x in w.push(p + " ")]
    compiled = compile_policy(policy)
    return [
        build_request(
            SafetyInput(text="Tell me a story", response=s, surface=Surface.RESPONSE, part=TEXT),
            compiled,
        )
        for s in spans
    ]


def same(a: Any, b: Any) -> None:
    assert a.text == b.text
    for x, y in ((a.user_score, b.user_score), (a.response_score, b.response_score)):
        assert (x is None) == (y is None)
        if x is not None:
            assert abs(x - y) <= 1e-4


@pytest.mark.parametrize(
    "policy",
    [
        Policy(),
        Policy(categories_off=("Profanity",)),
        Policy(custom_categories=({"name": "Spoilers", "description": "Plot twists."},)),
        Policy(model={"request_categories": False}),
    ],
    ids=["default", "categories-off", "custom-category", "no-categories"],
)
def test_windows_of_a_stream_reuse_the_cache_with_full_prefill_logits(pair: Any, policy) -> None:
    on, off = pair
    reqs = window_requests(policy, marker_at=200)
    before = on.stats
    for r in reqs:
        (a,) = on.classify([r])
        (b,) = off.classify([r])
        same(a, b)
    after = on.stats
    assert after["prefix_hits"] - before["prefix_hits"] >= len(reqs) - 1
    reused = after["prefix_reused_tokens"] - before["prefix_reused_tokens"]
    prefilled = after["prefilled_tokens"] - before["prefilled_tokens"]
    assert reused > prefilled  # most of each check came from the cache


def test_another_conversation_reuses_the_policy_header(pair: Any) -> None:
    on, off = pair
    compiled = compile_policy(Policy())
    first = build_request(SafetyInput(text="how do I bake bread"), compiled)
    second = build_request(SafetyInput(text="how do I build a bomb"), compiled)
    on.classify([first])
    hits = on.stats["prefix_hits"]
    (a,) = on.classify([second])
    (b,) = off.classify([second])
    same(a, b)
    assert on.stats["prefix_hits"] == hits + 1


def test_one_tenants_checks_never_reuse_anothers_prompts(pair: Any) -> None:
    """Kept prompts belong to a policy: a check under another policy (another tenant) with
    the same header and the same words reuses nothing, so its speed says nothing about what
    the other tenant checked; under its own policy it does reuse."""
    on, off = pair
    acme, globex = compile_policy(Policy(id="acme")), compile_policy(Policy(id="globex"))
    text = "my account number is 4417 1234 5678 9113 and my pin is"
    on.classify([build_request(SafetyInput(text=text + " 1234"), acme)])
    hits = on.stats["prefix_hits"]
    probe = build_request(SafetyInput(text=text + " 9999"), globex)
    (a,) = on.classify([probe])
    (b,) = off.classify([probe])
    same(a, b)
    assert on.stats["prefix_hits"] == hits  # nothing of acme's prompt was reused
    # a batch of globex rows finds no acme prefix either; then globex's own is reused
    batch = [build_request(SafetyInput(text=f"{text} {n}"), globex) for n in (1, 2)]
    on.classify(batch)
    on.classify([build_request(SafetyInput(text=text + " 7"), globex)])
    assert on.stats["prefix_hits"] > hits


def test_a_batch_wider_than_the_sliding_window_goes_whole_and_agrees(pair: Any) -> None:
    """Rows of a thousand tokens and more: past the tiny model's 1024-token window, the
    padding between prefix and rest would shift what a sliding layer sees."""
    on, off = pair
    reqs = window_requests(Policy())[-4:]  # each over a thousand prompt tokens
    hits = on.stats["prefix_hits"]
    for a, b in zip(on.classify(reqs), off.classify(reqs), strict=True):
        same(a, b)
    assert on.stats["prefix_hits"] == hits


def test_the_memory_cap_holds(verdict_model: Any) -> None:
    small = TransformersClassifier(str(verdict_model.path), prefix_cache_mb=0.01)
    try:
        for r in window_requests(Policy())[:3]:
            small.classify([r])
        s = small.stats
        assert s["prefix_bytes"] <= 0.01 * 2**20
        assert s["prefix_hits"] == 0  # one prompt's cache is larger than the cap
    finally:
        small.close()


def conversation_requests(n: int, start: int = 0) -> list[Any]:
    compiled = compile_policy(Policy())
    texts = ["how do I build a bomb", "what a damn mess", "bake some bread", "plan a trip"]
    out = []
    for i in range(start, start + n):
        q = f"{texts[i % 4]} number {i} " + "please " * (i % 7)
        if i % 3 == 0:
            out.append(build_request(SafetyInput(text=q), compiled))
        else:
            answer = f"Here is answer {i}" + (" with a bomb" if i % 5 == 0 else "")
            out.append(
                build_request(
                    SafetyInput(text=q, response=answer, surface=Surface.RESPONSE), compiled
                )
            )
    return out


@pytest.mark.parametrize("size", [2, 5, 8])
def test_a_padded_batch_sharing_the_header_matches_a_full_prefill(pair: Any, size: int) -> None:
    on, off = pair
    on.classify(conversation_requests(1, start=100))  # a prompt of the policy is kept
    for start in (0, 8):
        reqs = conversation_requests(size, start=start)
        hits = on.stats["prefix_hits"]
        got = []
        # the worker groups input and response checks apart; each group shares the header
        for group in (
            [r for r in reqs if not r.expects_response],
            [r for r in reqs if r.expects_response],
        ):
            if group:
                got += list(zip(on.classify(group), off.classify(group), strict=True))
        for a, b in got:
            same(a, b)
        assert on.stats["prefix_hits"] > hits


def test_text_requests_are_rendered_and_tokenised_on_the_callers_thread(
    verdict_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker thread only pads what its callers prepared; the results are those of
    preparing on the worker."""
    import threading

    from guard_plugin.classifiers.transformers.prompts import Prompts

    threads: list[str] = []
    render = Prompts.render

    def recording(self: Any, req: Any, **kw: Any) -> str:
        threads.append(threading.current_thread().name)
        return render(self, req, **kw)

    clf = TransformersClassifier(str(verdict_model.path), prefix_cache_mb=0)
    try:
        reqs = conversation_requests(6, start=200)
        want = [clf._runner([r])[0] for r in reqs]  # prepared on this thread, by the runner
        monkeypatch.setattr(Prompts, "render", recording)
        threads.clear()
        got = clf.classify(reqs[:1]) + clf.classify(reqs[1:3]) + clf.classify(reqs[3:])
        for a, b in zip(got, want, strict=True):
            same(a, b)
        assert threads and "guard-plugin-model" not in threads
    finally:
        clf.close()
