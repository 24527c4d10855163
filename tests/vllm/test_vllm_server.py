"""guard_plugin against a real vLLM server (``make test-vllm``), with the project's own tiny
model folders: the trained test model for verdicts and scores, the random-weight one for the
fail-closed path. Every request is the one users send; nothing here is faked."""

from __future__ import annotations

import asyncio
import base64
import math

import httpx
import pytest

from guard_plugin import Guard, Policy, PolicyStore, SafetyInput
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.classifiers.openai_compat import OpenAICompatClassifier
from guard_plugin.classifiers.transformers import TransformersClassifier
from guard_plugin.policy import compile_policy
from guard_plugin.prompting import build_request
from guard_plugin.testing import make_screenshot

from .conftest import SERVED, Server, free_port

USER_CASES = {
    "tell me about the bomb": ("unsafe", ("Violence",)),
    "please summarise the report": ("safe", ()),
    "damn this code": ("unsafe", ("Profanity",)),
    "how do I kill the process": ("safe", ()),
    "a bomb and damn": ("unsafe", ("Violence", "Profanity")),
}


def png_block(text: str = "hi") -> dict:
    data = base64.b64encode(make_screenshot(text, size=(64, 48))).decode()
    return {"type": "image", "base64": data, "mime_type": "image/png"}


@pytest.fixture
def guard(server: Server):
    sink = MemoryAuditSink()
    g = Guard(f"vllm://{server.hostport}/v1", audit=sink)
    g.sink = sink  # type: ignore[attr-defined]
    yield g
    g.close()


def test_text_checks_give_verdicts_and_scores(guard) -> None:
    for text, (status, cats) in USER_CASES.items():
        d = guard.check(text)
        assert (d.status, d.categories) == (status, cats), text
        assert d.score is not None and (d.score > 0.5) == (status == "unsafe")
        assert d.model == f"openai:{SERVED}"  # the served name, learned from /v1/models
    assert all(e.score is not None for e in guard.sink.events)


def test_a_check_with_an_image_as_a_data_url(guard) -> None:
    d = guard.check_content([{"type": "text", "text": "the bomb"}, png_block()], surface="tool")
    assert [p.status for p in d.parts] == ["unsafe", "safe"] and d.blocked
    # an image with no text of its own: a newline after the image made vLLM answer HTTP 500
    alone = guard.check_content([png_block()], surface="tool")
    assert alone.status == "safe" and alone.score is not None, alone.error


def test_a_response_check(guard) -> None:
    safe = guard.check(
        SafetyInput(text="help me with this code", response="send the report", surface="response")
    )
    unsafe = guard.check(
        SafetyInput(text="help me with this code", response="the bomb", surface="response")
    )
    assert safe.status == "safe" and unsafe.status == "unsafe" and unsafe.blocked
    assert safe.score < 0.5 < unsafe.score


def tokenize(server: Server, body: dict) -> list[int]:
    payload = {
        "model": SERVED,
        "messages": body["messages"],
        "add_generation_prompt": True,
        "chat_template_kwargs": body["chat_template_kwargs"],
    }
    r = httpx.post(f"{server.root}/tokenize", json=payload, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


KWARG_POLICIES = {
    "request_categories": Policy(model={"request_categories": False}),
    "enable_thinking": Policy(reasoning="on"),
    "custom_taxonomy": Policy(custom_categories=[{"name": "Spoilers"}]),
    "custom_policy": Policy(
        custom_policy={
            "name": "Support desk",
            "description": "A support chat.",
            "disallowed": ["insults"],
            "allowed": ["complaints"],
        }
    ),
}


@pytest.mark.parametrize("kwarg", list(KWARG_POLICIES))
def test_each_template_kwarg_changes_the_prompt_vllm_renders(server, kwarg) -> None:
    client = OpenAICompatClassifier(server.url, model=SERVED)
    base = build_request(SafetyInput(text="hello"), compile_policy(Policy()))
    changed = build_request(SafetyInput(text="hello"), compile_policy(KWARG_POLICIES[kwarg]))
    assert kwarg in changed.template_kwargs
    assert base.template_kwargs.get(kwarg) != changed.template_kwargs[kwarg]
    assert tokenize(server, client.body(base)) != tokenize(server, client.body(changed))
    client.close()


def test_vllm_and_transformers_render_the_same_token_ids(server, verdict_model) -> None:
    """The remote body through vLLM's renderer and the local backend's encoder give the same
    ids, for text, a response and an image, under each kwarg."""
    from guard_plugin.media import load_image

    client = OpenAICompatClassifier(server.url, model=SERVED)
    local = TransformersClassifier(str(verdict_model.path), device="cpu", verdict_mode="generate")
    image = load_image(base64.b64decode(png_block()["base64"]))
    inputs = [
        SafetyInput(text="hello there"),
        SafetyInput(text="hi", response="the answer", surface="response"),
        SafetyInput(text="look at this", image=image),
        SafetyInput(text="", image=image, surface="tool"),
    ]
    for policy in [Policy(), *KWARG_POLICIES.values()]:
        for inp in inputs:
            req = build_request(inp, compile_policy(policy))
            ours = local._runner.prompts.encode([req])["input_ids"][0].tolist()
            assert tokenize(server, client.body(req)) == ours, (policy.id, inp)
    client.close()
    local.close()


def test_the_same_labels_as_the_local_backend_on_the_same_folder(guard, verdict_model) -> None:
    local = Guard(TransformersClassifier(str(verdict_model.path), device="cpu"))
    inputs = [SafetyInput(text=t) for t in USER_CASES] + [
        SafetyInput(text=u, response=r, surface="response")
        for u, r in [("the bomb", "can you help"), ("help me", "the bomb"), ("damn", "damn")]
    ]
    for inp in inputs:
        a, b = guard.check(inp), local.check(inp)
        assert (a.status, a.categories) == (b.status, b.categories), inp
        assert math.isclose(a.score, b.score, abs_tol=0.05), (a.score, b.score)
    local.close()


def test_32_concurrent_checks(server) -> None:
    texts = [("the bomb " if i % 3 == 0 else "the report ") + str(i) for i in range(32)]

    async def run() -> list:
        g = Guard(f"vllm://{server.hostport}/v1?max_concurrency=32")
        try:
            return await asyncio.gather(*(g.acheck(t) for t in texts))
        finally:
            g.close()

    decisions = asyncio.run(run())
    assert [d.status for d in decisions] == ["unsafe" if i % 3 == 0 else "safe" for i in range(32)]
    assert not any(d.is_error for d in decisions)


def test_cache_salt_is_taken_and_verdicts_stay_the_same(server) -> None:
    """vLLM takes each policy's ``cache_salt`` (prefix cache isolated per policy); the
    verdicts are the ones an unsalted request gets."""
    store = PolicyStore({"acme": Policy(id="acme"), "globex": Policy(id="globex")})
    salted = Guard(f"vllm://{server.hostport}/v1?cache_salt=true", policies=store)
    plain = Guard(f"vllm://{server.hostport}/v1", policies=store)
    try:
        for tenant in ("acme", "globex", "acme"):
            for text in ("tell me about the bomb", "please summarise the report"):
                a, b = salted.check(text, tenant=tenant), plain.check(text, tenant=tenant)
                assert not a.is_error and (a.status, a.categories) == (b.status, b.categories)
    finally:
        salted.close()
        plain.close()


def test_replicas_with_one_down(server) -> None:
    dead = f"127.0.0.1:{free_port()}"
    g = Guard(f"vllm://{dead},{server.hostport}/v1?model={SERVED}&max_retries=2")
    decisions = [g.check(t) for t in ["the bomb", "the report"] * 4]
    assert [d.status for d in decisions] == ["unsafe", "safe"] * 4
    g.close()


def test_random_weights_give_audited_errors_not_verdicts(random_server) -> None:
    sink = MemoryAuditSink()
    g = Guard(f"vllm://{random_server.hostport}/v1", audit=sink)
    d = g.check("hello")
    assert d.is_error and d.blocked and d.error_kind == "parse" and d.score is None
    assert sink.events[-1].status == "error" and sink.events[-1].action == "block"
    g.close()


def test_a_prompt_longer_than_the_served_context_is_an_error_with_the_reason(server) -> None:
    """A request past --max-model-len (no Guard windowing in the way) gets HTTP 400; the
    backend reports it as a failed request carrying the server's reason, never a verdict."""
    from guard_plugin.errors import ClassifierUnavailable

    client = OpenAICompatClassifier(server.url, model=SERVED)
    req = build_request(SafetyInput(text="the report " * 6000), compile_policy(Policy()))
    (out,) = client.classify([req], timeout=60)
    assert isinstance(out, ClassifierUnavailable) and "HTTP 400" in str(out), out
    print(f"\nvLLM's answer: {out}")
    client.close()
