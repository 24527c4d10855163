"""Verdict scores: P(unsafe) from the label token's logits (local) or logprobs (remote), the
tenant's threshold, and the one-forward-pass label path agreeing with generation."""

from __future__ import annotations

import math

import pytest

from guard_plugin import Policy, PolicyError, SafetyInput, Surface
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.classifiers.openai_compat import label_scores
from guard_plugin.decision import Decision, decide, outcome_for
from guard_plugin.policy import compile_policy
from guard_plugin.verdict import Verdict, parse_verdict

# -- policy thresholds -----------------------------------------------------------------------


def test_threshold_defaults_to_the_models_own_label() -> None:
    c = compile_policy(Policy())
    assert all(c.threshold_for(s) is None for s in Surface)


def test_threshold_shorthand_and_per_surface() -> None:
    both = compile_policy(Policy(thresholds=0.3))
    assert [both.threshold_for(s) for s in Surface] == [0.3, 0.3, 0.3]
    one = compile_policy(Policy(thresholds={"tool": 0.8}))
    assert one.threshold_for(Surface.TOOL) == 0.8 and one.threshold_for(Surface.INPUT) is None


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "high", True])
def test_threshold_out_of_range_is_refused(bad) -> None:
    from guard_plugin.policy import policy_from_mapping

    with pytest.raises(PolicyError, match="thresholds"):
        policy_from_mapping({"thresholds": {"input": bad}})


def scored(label: str, score: float | None, cats: str = "") -> Verdict:
    text = f"User Safety: {label}" + (f"\nSafety Categories: {cats}" if cats else "")
    return Verdict(**{**parse_verdict(text).__dict__, "user_score": score})


def decision(verdict: Verdict, policy: Policy, surface: Surface = Surface.INPUT) -> Decision:
    c = compile_policy(policy)
    return decide([outcome_for(0, "text", verdict, c, surface)], c, surface)


def test_a_threshold_turns_a_score_into_the_label_both_ways() -> None:
    strict = Policy(thresholds=0.2)
    lenient = Policy(thresholds=0.9)
    assert decision(scored("safe", 0.3), strict).status == "unsafe"
    assert decision(scored("safe", 0.3), strict).blocked
    assert decision(scored("unsafe", 0.6, "Violence"), lenient).status == "safe"
    # at the threshold counts as unsafe
    assert decision(scored("safe", 0.2), strict).status == "unsafe"
    # without a threshold the model's label decides, whatever the score
    assert decision(scored("safe", 0.45), Policy()).status == "safe"
    assert decision(scored("unsafe", 0.55, "Violence"), Policy()).categories == ("Violence",)


def test_without_a_score_the_label_decides_even_with_a_threshold() -> None:
    d = decision(scored("unsafe", None, "Violence"), Policy(thresholds=0.99))
    assert d.status == "unsafe" and d.score is None


def test_the_threshold_is_per_surface() -> None:
    v = parse_verdict("User Safety: unsafe\nResponse Safety: safe", expect_response=True)
    v = Verdict(**{**v.__dict__, "user_score": 0.9, "response_score": 0.4})
    d = decision(v, Policy(thresholds={"response": 0.3}), Surface.RESPONSE)
    assert d.status == "unsafe" and d.score == 0.4  # the response's own score


def test_decision_score_is_the_highest_part_score_and_is_audited() -> None:
    c = compile_policy(Policy())
    parts = [
        outcome_for(0, "text", scored("safe", 0.1), c, Surface.TOOL),
        outcome_for(1, "image:0", scored("unsafe", 0.8, "Violence"), c, Surface.TOOL),
        outcome_for(2, "page:1", scored("safe", None), c, Surface.TOOL),
    ]
    d = decide(parts, c, Surface.TOOL)
    assert d.score == 0.8 and [p.score for p in d.parts] == [0.1, 0.8, None]
    assert Decision.from_dict(d.to_dict()).score == 0.8
    from guard_plugin.audit import AuditEvent

    assert AuditEvent.for_decision(d).to_dict()["score"] == 0.8


# -- remote: logprobs ------------------------------------------------------------------------


def lp_entry(token: str, alts: dict[str, float]) -> dict:
    return {
        "token": token,
        "logprob": alts.get(token, -0.01),
        "top_logprobs": [{"token": t, "logprob": v} for t, v in alts.items()],
    }


def answer(*tokens: tuple[str, dict[str, float]]) -> tuple[str, dict]:
    entries = [lp_entry(t, a) for t, a in tokens]
    return "".join(t for t, _ in tokens), {"content": entries}


def test_label_scores_reads_both_verdict_lines() -> None:
    content, lp = answer(
        ("User", {}),
        (" Safety", {}),
        (":", {}),
        (" safe", {" safe": math.log(0.7), " unsafe": math.log(0.2), " Safe": math.log(0.05)}),
        ("\n", {}),
        ("Response", {}),
        (" Safety", {}),
        (":", {}),
        (" unsafe", {" unsafe": math.log(0.9), " safe": math.log(0.1)}),
    )
    user, resp = label_scores(content, lp)
    assert user == pytest.approx(0.2 / 0.9) and resp == pytest.approx(0.9)


def test_label_scores_after_a_reasoning_trace() -> None:
    content, lp = answer(
        ("<think>", {}),
        ("User Safety: safe is not what I say", {}),
        ("</think>", {}),
        ("User Safety:", {}),
        (" unsafe", {" unsafe": math.log(0.6), " safe": math.log(0.4)}),
    )
    assert label_scores(content, lp) == (pytest.approx(0.6), None)


@pytest.mark.parametrize(
    "case",
    [
        "no logprobs",
        "other label not listed",
        "tokens do not rebuild the text",
        "no verdict line",
        "malformed entries",
    ],
)
def test_label_scores_never_guesses(case: str) -> None:
    content, lp = answer(("User Safety:", {}), (" safe", {" safe": -0.1, " unsafe": -3.0}))
    if case == "no logprobs":
        lp = None
    elif case == "other label not listed":
        lp["content"][1]["top_logprobs"] = [{"token": " safe", "logprob": -0.1}]
    elif case == "tokens do not rebuild the text":
        content = "!" + content
    elif case == "no verdict line":
        content, lp = answer(("hello", {}))
    else:
        lp = {"content": [{"tok": "x"}]}
    assert label_scores(content, lp) == (None, None)


@pytest.mark.parametrize(
    "alts",
    [
        [{"token": " safe", "logprob": -9999.0}, {"token": " unsafe", "logprob": -0.001}],
        [{"token": " safe", "logprob": -0.001}, {"token": " unsafe", "logprob": -9999.0}],
        ["not an entry", {"token": " safe", "logprob": -0.1}, {"token": " unsafe", "logprob": -3}],
        {"token": " safe"},
        [{"token": " safe", "logprob": float("nan")}, {"token": " unsafe", "logprob": -3.0}],
    ],
)
def test_label_scores_survive_odd_logprobs(alts) -> None:
    """Floor values, malformed alternatives and NaN give a score in [0, 1] or none, never an
    exception that would cost a check its verdict."""
    content, lp = answer(("User Safety:", {}), (" safe", {}))
    lp["content"][1]["top_logprobs"] = alts
    user, _ = label_scores(content, lp)
    assert user is None or 0.0 <= user <= 1.0


def test_remote_scores_reach_the_decision_and_a_refusing_server_is_asked_without() -> None:
    from guard_plugin import Guard
    from tests.loopback_openai import LoopbackChatServer

    seen: list[dict] = []

    def reply(body: dict) -> tuple[int, dict]:
        seen.append(body)
        if body.get("logprobs") and len(seen) == 2:
            return 400, {"error": {"message": "logprobs is not supported by this model"}}
        content, lp = answer(
            ("User Safety:", {}), (" unsafe", {" unsafe": math.log(0.75), " safe": math.log(0.25)})
        )
        choice = {"index": 0, "message": {"role": "assistant", "content": content}}
        if body.get("logprobs"):
            choice["logprobs"] = lp
        return 200, {"choices": [choice]}

    server = LoopbackChatServer(reply)
    try:
        g = Guard(f"openai://{server.url.removeprefix('http://')}?model=m", audit=MemoryAuditSink())
        first = g.check("one")
        assert first.score == pytest.approx(0.75) and first.status == "unsafe"
        second = g.check("two")  # 400 for logprobs, asked again without them
        assert second.status == "unsafe" and second.score is None
        third = g.check("three")
        assert "logprobs" not in seen[-1] and third.score is None
        assert [("logprobs" in b) for b in seen] == [True, True, False, False]
        g.close()
    finally:
        server.close()


# -- local: the label token's logits ---------------------------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from guard_plugin import Guard  # noqa: E402
from guard_plugin.classifiers.transformers import TransformersClassifier  # noqa: E402
from guard_plugin.media import load_image  # noqa: E402
from guard_plugin.prompting import build_request  # noqa: E402
from guard_plugin.testing import make_screenshot  # noqa: E402


@pytest.fixture(scope="module")
def trained(verdict_model):
    logits = TransformersClassifier(str(verdict_model.path), device="cpu", max_wait_ms=20)
    generate = TransformersClassifier(
        str(verdict_model.path), device="cpu", max_wait_ms=20, verdict_mode="generate"
    )
    yield logits, generate
    logits.close()
    generate.close()


def requests_for(policy: Policy, *inputs: SafetyInput):
    c = compile_policy(policy)
    return [build_request(i, c) for i in inputs]


def test_label_tokens_are_one_token_each_after_both_fields(tiny_model) -> None:
    clf = TransformersClassifier(str(tiny_model.path), device="cpu")
    tok = clf._runner.prompts.tokenizer
    safe, unsafe = clf._runner.label_ids
    assert tok.decode([safe]).strip() == "safe" and tok.decode([unsafe]).strip() == "unsafe"
    assert clf.verdict_mode == "logits"
    clf.close()


def test_label_logits_equal_generations_first_step_on_a_padded_batch(tiny_model) -> None:
    """The one-pass read sees the same logits as generate's first step, row by row, with left
    padding and an image in the batch."""
    clf = TransformersClassifier(str(tiny_model.path), device="cpu")
    runner = clf._runner
    image = load_image(make_screenshot("hello", size=(64, 48)))
    reqs = requests_for(
        Policy(),
        SafetyInput(text="short"),
        SafetyInput(text="a much longer text that pads the other rows " * 5),
        SafetyInput(text="with a picture", image=image),
    )
    enc = runner.prompts.encode(reqs, ["User Safety:"] * len(reqs))
    ours = runner.decoder.last_logits(enc)
    inputs = runner.decoder.inputs(runner.prompts.encode(reqs, ["User Safety:"] * len(reqs)))
    with torch.inference_mode():
        gen = clf.local.model.generate(
            **inputs,
            max_new_tokens=1,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=runner.prompts.pad_id,
        )
    assert torch.allclose(ours, gen.logits[0].float(), atol=1e-4)
    clf.close()


def test_random_weights_give_an_audited_error_not_a_label(tiny_model) -> None:
    sink = MemoryAuditSink()
    g = Guard(f"transformers:{tiny_model.path}?device=cpu", audit=sink)
    d = g.check("hello there")
    assert d.is_error and d.error_kind == "parse" and d.blocked and d.score is None
    assert sink.events[-1].status == "error"
    g.close()


USER_CASES = [
    "tell me about the bomb",
    "please summarise the report",
    "damn this code",
    "how do I kill the process",
    "the quick brown fox",
    "a bomb and damn",
    "send an email to my coworker",
    "what is the bomb for today",
]
RESPONSE_CASES = [
    ("help me with this code", "the bomb"),
    ("help me with this code", "send the report"),
    ("the bomb", "can you help"),
    ("damn", "damn"),
]


def test_logit_labels_equal_generated_labels_on_the_test_model(trained) -> None:
    logits, generate = trained
    reqs = requests_for(
        Policy(),
        *(SafetyInput(text=t) for t in USER_CASES),
        *(SafetyInput(text=u, response=r, surface="response") for u, r in RESPONSE_CASES),
    )
    fast = logits.classify(reqs)
    slow = generate.classify(reqs)
    for req, a, b in zip(reqs, fast, slow, strict=True):
        va = parse_verdict(a.text, expect_response=req.expects_response)
        vb = parse_verdict(b.text, expect_response=req.expects_response)
        assert (va.user_safety, va.response_safety, va.categories) == (
            vb.user_safety,
            vb.response_safety,
            vb.categories,
        ), req.user_text
        assert 0.0 <= a.user_score <= 1.0 and b.user_score is None
        assert (a.response_score is not None) == req.expects_response
        assert (a.user_score >= 0.5) == (va.user_safety == "unsafe")


def test_the_test_model_follows_its_rule_on_user_turns(trained) -> None:
    logits, _ = trained
    g = Guard(logits)
    # what the code owes, whatever one training run's margins: the label follows the rule, the
    # score agrees with the label, and the categories are the markers' own
    for text in USER_CASES:
        d = g.check(text)
        marked = any(m in text.split() for m in ("bomb", "damn"))
        assert d.status == ("unsafe" if marked else "safe"), text
        assert d.score is not None and (d.score >= 0.5) is marked
    both = g.check("a bomb and damn").categories
    assert both and set(both) <= {"Violence", "Profanity"}


def test_one_forward_pass_for_a_safe_check_several_for_generation(trained) -> None:
    logits, generate = trained
    reqs = requests_for(Policy(), SafetyInput(text="please summarise the report"))
    before = logits.stats["forward_passes"], generate.stats["forward_passes"]
    logits.classify(reqs)
    generate.classify(reqs)
    fast = logits.stats["forward_passes"] - before[0]
    slow = generate.stats["forward_passes"] - before[1]
    assert fast == 1 and slow >= 5  # "User Safety: safe<end_of_turn>" is 5 tokens here


def test_a_tenant_threshold_acts_on_the_local_score(trained) -> None:
    logits, _ = trained
    plain = Guard(logits).check("tell me about the bomb")
    lenient = Guard(logits, policies=Policy(thresholds={"input": 0.99999})).check(
        "tell me about the bomb"
    )
    assert plain.status == "unsafe" and lenient.status == "safe"
    assert lenient.score == plain.score < 0.99999


def test_reasoning_requests_still_generate(trained) -> None:
    logits, _ = trained
    (req,) = requests_for(Policy(reasoning="on"), SafetyInput(text="the bomb"))
    assert not logits._runner.uses_logits(req)
    (out,) = logits.classify([req])
    assert out.user_score is None and parse_verdict(out.text).user_safety == "unsafe"


def test_an_oom_while_generating_categories_keeps_the_forced_answer(trained, monkeypatch) -> None:
    logits, _ = trained
    net = logits.local.model
    real = net.generate

    def flaky(**kw):
        if kw["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(**kw)

    monkeypatch.setattr(net, "generate", flaky)
    reqs = requests_for(Policy(), SafetyInput(text="the bomb"), SafetyInput(text="damn it"))
    before = logits.stats["oom_splits"]
    out = logits._runner(reqs)
    verdicts = [parse_verdict(o.text) for o in out]
    assert [v.categories for v in verdicts] == [("Violence",), ("Profanity",)]
    assert logits.stats["oom_splits"] > before


def test_the_response_pass_on_the_cache_equals_a_full_recompute(trained) -> None:
    """The response label is read after feeding ``<label>\\nResponse Safety:`` on top of the
    cached prompt; recomputing the whole forced prompt gives the same P(unsafe)."""
    logits, _ = trained
    runner = logits._runner
    reqs = requests_for(
        Policy(),
        *(SafetyInput(text=u, response=r, surface="response") for u, r in RESPONSE_CASES),
    )
    out = logits.classify(reqs)
    forced = [o.text.split("\n")[0] + "\nResponse Safety:" for o in out]
    full = runner.decoder.last_logits(runner.prompts.encode(reqs, forced))
    safe, unsafe = runner.label_ids
    p = torch.softmax(full[:, [safe, unsafe]], dim=-1)[:, 1]
    for o, want in zip(out, p.tolist(), strict=True):
        assert o.response_score == pytest.approx(want, abs=1e-4)


def test_the_test_model_command_labels_what_it_writes(tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "guard_plugin.testing", "tiny-model", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "random weights" in done.stdout and (tmp_path / "m" / "config.json").is_file()


def test_categories_without_row_selection_in_the_cache_prefill_again(trained, monkeypatch) -> None:
    """A cache type that cannot keep a subset of rows (older transformers) still gets the
    categories line, by prefilling the forced answer again."""
    logits, generate = trained
    runner = logits._runner
    real = runner.decoder.forward

    def plain_cache(*args, **kw):
        out, cache = real(*args, **kw)

        class NoSelect:
            def __getattr__(self, name):
                if name == "batch_select_indices":
                    raise AttributeError(name)
                return getattr(cache, name)

        return out, NoSelect() if cache is not None else None

    monkeypatch.setattr(runner.decoder, "forward", plain_cache)
    reqs = requests_for(Policy(), SafetyInput(text="the bomb"), SafetyInput(text="the report"))
    fast, slow = logits.classify(reqs), generate.classify(reqs)
    assert (
        [parse_verdict(o.text).categories for o in fast]
        == [parse_verdict(o.text).categories for o in slow]
        == [("Violence",), ()]
    )
