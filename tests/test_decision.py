"""decide(): the action table per surface, aggregation over parts, errors through on_error."""

from __future__ import annotations

import pytest

from guard_plugin import Action, Policy, Surface
from guard_plugin.decision import decide, error_decision, outcome_for
from guard_plugin.errors import ClassifierTimeout, VerdictParseError
from guard_plugin.policy import compile_policy
from guard_plugin.verdict import parse_verdict

SAFE = parse_verdict("User Safety: safe")
UNSAFE = parse_verdict("User Safety: unsafe\nSafety Categories: Violence")
RESP_UNSAFE = parse_verdict(
    "User Safety: safe\nResponse Safety: unsafe\nSafety Categories: Harassment",
    expect_response=True,
)
RESP_SAFE_USER_UNSAFE = parse_verdict(
    "User Safety: unsafe\nResponse Safety: safe\nSafety Categories: Violence", expect_response=True
)


def one(verdict, policy: Policy, surface: Surface):
    c = compile_policy(policy)
    return decide([outcome_for(0, "text", verdict, c, surface)], c, surface)


@pytest.mark.parametrize("surface", list(Surface))
@pytest.mark.parametrize("action", list(Action))
def test_every_action_on_every_surface(surface: Surface, action: Action) -> None:
    policy = Policy(actions={s.value: action.value for s in Surface})
    verdict = RESP_UNSAFE if surface is Surface.RESPONSE else UNSAFE
    d = one(verdict, policy, surface)
    assert d.action is action and d.surface is surface and d.status == "unsafe"
    msgs = policy.messages
    expected = {
        Action.ALLOW: None,
        Action.REWRITE: {
            Surface.INPUT: msgs.rewrite_note,
            Surface.TOOL: msgs.redaction,
            Surface.RESPONSE: msgs.refusal,
        }[surface],
        Action.BLOCK: msgs.tool_refusal if surface is Surface.TOOL else msgs.refusal,
        Action.ESCALATE: msgs.tool_refusal if surface is Surface.TOOL else msgs.refusal,
    }[action]
    assert d.replacement == expected
    assert d.withheld_parts == (() if action is Action.ALLOW else (0,))


@pytest.mark.parametrize("surface", list(Surface))
def test_safe_is_allowed_everywhere(surface: Surface) -> None:
    v = parse_verdict("User Safety: safe\nResponse Safety: safe", expect_response=True)
    d = one(v, Policy(), surface)
    assert d.allowed and d.status == "safe" and d.replacement is None


def test_response_check_reads_only_response_safety() -> None:
    # an unsafe user turn must not block a safe refusal
    assert one(RESP_SAFE_USER_UNSAFE, Policy(), Surface.RESPONSE).allowed
    assert not one(RESP_SAFE_USER_UNSAFE, Policy(), Surface.INPUT).allowed


def test_verdict_missing_the_surface_label_is_an_error() -> None:
    d = one(SAFE, Policy(), Surface.RESPONSE)
    assert d.status == "error" and d.blocked and d.error_kind == "parse"


@pytest.mark.parametrize("on_error", ["block", "allow", "escalate"])
@pytest.mark.parametrize(
    "err", [ClassifierTimeout("slow"), VerdictParseError("bad", "xx"), RuntimeError("boom")]
)
def test_errors_go_through_on_error_and_never_read_as_safe(on_error: str, err: Exception) -> None:
    c = compile_policy(Policy(on_error=on_error))
    d = error_decision(err, c, Surface.INPUT)
    assert d.action is Action(on_error)
    assert d.status == "error" and d.error and d.error_kind
    assert d.is_error


def test_aggregation_any_unsafe_part_makes_whole_unsafe() -> None:
    c = compile_policy(Policy(actions={"tool": "rewrite"}))
    v2 = parse_verdict("User Safety: unsafe\nSafety Categories: Profanity, Violence")
    parts = [
        outcome_for(0, "text", SAFE, c, Surface.TOOL),
        outcome_for(1, "page:1", UNSAFE, c, Surface.TOOL),
        outcome_for(2, "page:2", SAFE, c, Surface.TOOL),
        outcome_for(3, "image:0", v2, c, Surface.TOOL),
    ]
    d = decide(parts, c, Surface.TOOL)
    assert d.action is Action.REWRITE and d.status == "unsafe"
    assert d.categories == ("Violence", "Profanity")
    assert d.withheld_parts == (1, 3)


def test_error_part_with_unsafe_part_takes_strictest() -> None:
    c = compile_policy(Policy(actions={"tool": "rewrite"}, on_error="block"))
    parts = [
        outcome_for(0, "a", UNSAFE, c, Surface.TOOL),
        outcome_for(1, "b", ClassifierTimeout("t"), c, Surface.TOOL),
    ]
    d = decide(parts, c, Surface.TOOL)
    assert d.action is Action.BLOCK and d.status == "error" and d.withheld_parts == (0, 1)
    lenient = compile_policy(Policy(actions={"tool": "rewrite"}, on_error="allow"))
    parts = [
        outcome_for(0, "a", UNSAFE, lenient, Surface.TOOL),
        outcome_for(1, "b", ClassifierTimeout("t"), lenient, Surface.TOOL),
    ]
    d = decide(parts, lenient, Surface.TOOL)
    assert d.action is Action.REWRITE and d.withheld_parts == (0,)


def test_suppressed_only_categories_become_safe_and_are_reported() -> None:
    c = compile_policy(Policy(categories_off=["Violence"]))
    d = decide([outcome_for(0, "text", UNSAFE, c, Surface.INPUT)], c, Surface.INPUT)
    assert d.allowed and d.status == "safe" and d.suppressed == ("Violence",)
    mixed = parse_verdict("User Safety: unsafe\nSafety Categories: violence, Threat")
    d = decide([outcome_for(0, "text", mixed, c, Surface.INPUT)], c, Surface.INPUT)
    assert d.blocked and d.categories == ("Threat",) and d.suppressed == ("Violence",)


def test_unsafe_without_categories_stays_unsafe_under_suppression() -> None:
    c = compile_policy(Policy(categories_off=["Violence"]))
    v = parse_verdict("User Safety: unsafe")
    assert decide([outcome_for(0, "t", v, c, Surface.INPUT)], c, Surface.INPUT).blocked


def test_category_aliases_are_canonicalised() -> None:
    c = compile_policy(Policy())
    v = parse_verdict("User Safety: unsafe\nSafety Categories: controlled substances, hate")
    d = decide([outcome_for(0, "t", v, c, Surface.INPUT)], c, Surface.INPUT)
    assert d.categories == ("Controlled/Regulated Substances", "Hate/Identity Hate")


def test_empty_parts() -> None:
    c = compile_policy(Policy())
    d = decide([], c, Surface.INPUT)
    assert d.allowed and d.status == "empty"


def test_decision_to_dict_is_json_ready() -> None:
    import json

    d = one(UNSAFE, Policy(), Surface.INPUT)
    data = json.loads(json.dumps(d.to_dict()))
    assert data["action"] == "block" and data["parts"][0]["categories"] == ["Violence"]


def test_decision_round_trips_through_json_without_verdicts() -> None:
    import dataclasses
    import json

    from guard_plugin import Decision

    d = one(RESP_UNSAFE, Policy(actions={"response": "escalate"}), Surface.RESPONSE)
    back = Decision.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back.action is Action.ESCALATE and back.surface is Surface.RESPONSE
    assert back.categories == ("Harassment",) and back.withheld_parts == (0,)
    # equal but for the verdict objects, which are not serialised
    assert back == dataclasses.replace(
        d, parts=tuple(dataclasses.replace(p, verdict=None) for p in d.parts)
    )
    assert back.parts[0].categories == ("Harassment",)
