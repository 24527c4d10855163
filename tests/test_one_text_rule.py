"""One rule for long text, whatever the entry point: windows of media.text_window_chars, and
text past media.max_text_chars is an unverifiable part (blocked by default), never one
oversized request that the model would truncate."""

from __future__ import annotations

import asyncio

import pytest

from guard_plugin import Guard, SafetyInput, Surface
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.testing import ScriptedClassifier

FILLER = "The quarterly report covers revenue, costs and hiring plans in detail. "
LONG_SAFE = (FILLER * 3600)[:250_000]  # past the default max_text_chars (200,000)
BURIED = (FILLER * 2000)[:140_000] + " Step 1: build a bomb. " + (FILLER * 20)  # within it


def guard() -> tuple[Guard, ScriptedClassifier]:
    clf = ScriptedClassifier()
    return Guard(clf, audit=MemoryAuditSink()), clf


def decisions(text: str) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    out = {}
    g, _ = guard()
    out["check"] = g.check(text)
    g, _ = guard()
    out["acheck"] = asyncio.run(g.acheck(text))
    g, _ = guard()
    out["check_content"] = g.check_content(text, surface="input")
    g, _ = guard()
    out["check(SafetyInput)"] = g.check(SafetyInput(text=text))
    return {k: (d.action.value, d.status, d.categories) for k, d in out.items()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (LONG_SAFE, ("block", "error", ())),
        (BURIED, ("block", "unsafe", ("Violence", "Guns and Illegal Weapons"))),
    ],
    ids=["past-the-cap", "unsafe-deep-inside"],
)
def test_every_entry_point_decides_long_text_alike(text: str, expected: tuple) -> None:
    assert set(decisions(text).values()) == {expected}


def test_no_request_is_longer_than_a_window() -> None:
    g, clf = guard()
    g.check(BURIED)
    assert len(clf.requests) > 20
    assert max(len(r.user_text) for r in clf.requests) <= 6000


def test_a_long_response_is_windowed_with_its_question_as_context() -> None:
    g, clf = guard()
    answer = SafetyInput(
        text="Summarise the report", response=BURIED, surface=Surface.RESPONSE, part="text"
    )
    d = g.check(answer)
    assert d.blocked and d.status == "unsafe"
    assert all(r.user_text == "Summarise the report" for r in clf.requests)
    # every window keeps the input's label, so withholding it withholds the whole answer
    assert len(d.parts) > 20 and {p.part for p in d.parts} == {"text"}


def test_the_adapters_agree() -> None:
    pytest.importorskip("langchain")
    from langchain_core.messages import HumanMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    from guard_plugin import GuardBlocked
    from guard_plugin.langchain import guard_runnable
    from guard_plugin.langgraph import input_guard_node

    for text, blocked in ((LONG_SAFE, True), (BURIED, True), (FILLER * 10, False)):
        g, _ = guard()
        with pytest.raises(GuardBlocked) if blocked else _nothing():
            guard_runnable(g, surface="input").invoke(text)
        g, _ = guard()
        builder = StateGraph(MessagesState)
        builder.add_node("guard", input_guard_node(g, next="agent"), destinations=("agent", END))
        builder.add_node("agent", lambda state: {"messages": []})
        builder.add_edge(START, "guard")
        out = builder.compile().invoke({"messages": [HumanMessage(text, id="u1")]})
        assert (out["messages"][0].content != text) is blocked


def test_the_agent_middleware_and_the_callback_handler_agree() -> None:
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, HumanMessage

    from guard_plugin import GuardBlocked
    from guard_plugin.langchain import SafetyCallbackHandler, SafetyMiddleware
    from tests.lc_helpers import ScriptedChatModel

    for text, blocked in ((LONG_SAFE, True), (BURIED, True), (FILLER * 10, False)):
        g, _ = guard()
        model = ScriptedChatModel(responses=[AIMessage("ok")])
        agent = create_agent(model, tools=[], middleware=[SafetyMiddleware(g)])
        agent.invoke({"messages": [HumanMessage(text)]})
        assert (model.calls == []) is blocked  # a blocked turn never reaches the model
        g, _ = guard()
        chat = ScriptedChatModel(responses=[AIMessage("ok")])
        with pytest.raises(GuardBlocked) if blocked else _nothing():
            chat.invoke([HumanMessage(text)], {"callbacks": [SafetyCallbackHandler(g)]})


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False
