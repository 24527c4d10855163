"""A server is not trusted either: scores are read only where the server's answer is consistent
with the label it chose, a replica that refuses logprobs loses scores alone and for a while,
and a tenant that needs a score for its threshold gets an error, not the model's label."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from guard_plugin import Guard, Policy, PolicyStore
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.classifiers.openai_compat import OpenAICompatClassifier, label_scores

LOG_75 = {" unsafe": math.log(0.75), " safe": math.log(0.25)}


def entry(token: str, alts: dict[str, float]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": alts.get(token, -0.01),
        "top_logprobs": [{"token": t, "logprob": v} for t, v in alts.items()],
    }


def answer(*tokens: tuple[str, dict[str, float]]) -> tuple[str, dict[str, Any]]:
    return "".join(t for t, _ in tokens), {"content": [entry(t, a) for t, a in tokens]}


@pytest.mark.parametrize(
    "tokens",
    [
        # the label split over two tokens: the alternatives at ' un' say nothing about it
        [("User Safety:", {}), (" un", {" safe": -0.1, " unsafe": -2.5}), ("safe", {})],
        # the alternatives disagree with the token chosen
        [("User Safety:", {}), (" unsafe", {" safe": -0.1, " unsafe": -2.5})],
        # both labels at +inf (their difference is NaN)
        [("User Safety:", {}), (" unsafe", {" safe": math.inf, " unsafe": math.inf})],
        [("User Safety:", {}), (" unsafe", {" safe": math.nan, " unsafe": -0.1})],
        [("User Safety:", {}), (" unsafe", {" safe": -math.inf, " unsafe": -0.1})],
        # the label shares its token with other text
        [("User Safety:", {}), (" unsafeX", {" safe": -3.0, " unsafe": -0.1})],
    ],
    ids=["split", "inconsistent", "both-inf", "nan", "minus-inf", "glued"],
)
def test_a_score_inconsistent_with_the_chosen_token_is_no_score(tokens: list) -> None:
    content, lp = answer(*tokens)
    assert label_scores(content, lp) == (None, None)


def test_a_consistent_score_is_read() -> None:
    content, lp = answer(("User Safety:", {}), (" unsafe", LOG_75))
    assert label_scores(content, lp)[0] == pytest.approx(0.75)


def server(status_for: Any, seen: list[tuple[str, dict]]) -> httpx.MockTransport:
    """Replies 'unsafe' with P 0.75 (logprobs when asked); ``status_for(host, body)`` may
    answer otherwise."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.host, body))
        special = status_for(request.url.host, body)
        if special is not None:
            # as a server sends it: json.dumps writes Infinity and NaN
            raw = json.dumps(special[1]).encode()
            return httpx.Response(
                special[0], content=raw, headers={"content-type": "application/json"}
            )
        content, lp = answer(("User Safety:", {}), (" unsafe", LOG_75))
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}}
        if body.get("logprobs"):
            choice["logprobs"] = lp
        return httpx.Response(200, json={"choices": [choice]})

    return httpx.MockTransport(handle)


REFUSAL = (400, {"error": {"message": "logprobs exceeds --max-logprobs"}})


def test_one_replica_refusing_logprobs_loses_scores_alone_and_is_asked_again_later() -> None:
    seen: list[tuple[str, dict]] = []
    refused = {"n": 0}

    def status_for(host: str, body: dict) -> Any:
        if host == "a" and body.get("logprobs") and refused["n"] == 0:
            refused["n"] += 1
            return REFUSAL
        return None

    clf = OpenAICompatClassifier(
        ["http://a/v1", "http://b/v1"],
        model="m",
        transport=server(status_for, seen),
        logprob_retry_s=3600,
    )
    g = Guard(clf, audit=[])
    scores = [g.check(f"text {i}").score for i in range(6)]
    assert clf.asks_logprobs("http://b/v1") and not clf.asks_logprobs("http://a/v1")
    by_host = {h: [("logprobs" in b) for hh, b in seen if hh == h] for h in ("a", "b")}
    assert all(by_host["b"]) and by_host["a"][0] and not any(by_host["a"][1:])
    assert None in scores and 0.75 in [s and round(s, 2) for s in scores]
    clf.logprob_retry_s = 0.0
    clf._no_logprobs_until["http://a/v1"] = 0.0  # the window is over: asked again
    assert clf.asks_logprobs("http://a/v1")
    g.close()
    clf.close()


def test_a_tenant_that_requires_scores_blocks_a_check_without_one() -> None:
    seen: list[tuple[str, dict]] = []

    def status_for(host: str, body: dict) -> Any:
        return REFUSAL if body.get("logprobs") else None

    clf = OpenAICompatClassifier(
        "http://a/v1", model="m", transport=server(status_for, seen), logprob_retry_s=3600
    )
    sink = MemoryAuditSink()
    store = PolicyStore(
        {
            "kids": Policy(id="kids", thresholds={"input": 0.3, "require_score": True}),
            "lenient": Policy(id="lenient", thresholds=0.3, actions={"input": "allow"}),
        }
    )
    g = Guard(clf, policies=store, audit=sink)
    strict = g.check("hello", tenant="kids")
    assert strict.blocked and strict.status == "error" and strict.error_kind == "no_score"
    lenient = g.check("hello there", tenant="lenient")
    assert lenient.score is None and lenient.threshold_unapplied
    events = {e.tenant: e for e in sink.events}
    assert events["lenient"].threshold_unapplied and events["kids"].error_kind == "no_score"
    g.close()
    clf.close()


def test_no_score_reaches_a_decision_or_the_audit_as_nan() -> None:
    seen: list[tuple[str, dict]] = []

    def status_for(host: str, body: dict) -> Any:
        content, lp = answer(
            ("User Safety:", {}), (" unsafe", {" safe": math.inf, " unsafe": math.inf})
        )
        choice = {"index": 0, "message": {"content": content}, "logprobs": lp}
        return 200, {"choices": [choice]}

    clf = OpenAICompatClassifier("http://a/v1", model="m", transport=server(status_for, seen))
    sink = MemoryAuditSink()
    g = Guard(clf, policies=Policy(thresholds=0.5), audit=sink)
    d = g.check("x")
    assert d.score is None and d.status == "unsafe" and d.threshold_unapplied
    json.dumps(sink.events[0].to_dict(), allow_nan=False)  # standard JSON
    g.close()
    clf.close()
