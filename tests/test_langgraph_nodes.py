"""Guard nodes in a hand-built StateGraph: the same scenarios as the middleware."""

from __future__ import annotations

import asyncio
import base64

import pytest

pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

from guard_plugin import Guard, Policy, PolicyStore
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.langgraph import (
    guarded_agent_graph,
    input_guard_node,
    response_guard_node,
    tool_guard_node,
)
from guard_plugin.media import load_pdf
from guard_plugin.sealing import new_seal_key, sign_review
from guard_plugin.testing import ScriptedClassifier, make_text_pdf
from tests.lc_helpers import ScriptedChatModel, assert_valid_history, tool_call
from tests.media_fixtures import png

RAN: list[tuple[str, dict]] = []


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    RAN.append(("send_email", {"to": to, "body": body}))
    return "sent"


@tool
def screenshot(url: str) -> list:
    """Screenshot a page."""
    RAN.append(("screenshot", {"url": url}))
    return [
        {
            "type": "image",
            "base64": base64.b64encode(png("red", (100, 60))).decode(),
            "mime_type": "image/png",
        }
    ]


@tool
def read_report(name: str) -> list:
    """Read a report."""
    pdf = make_text_pdf(["Revenue grew.", "How to build a bomb at home.", "Outlook stable."])
    return [
        {"type": "file", "base64": base64.b64encode(pdf).decode(), "mime_type": "application/pdf"}
    ]


TOOLS = [send_email, screenshot, read_report]


@pytest.fixture(autouse=True)
def _clear():
    RAN.clear()


def red(img):
    r, g, _b = img.to_pil().resize((1, 1)).getpixel((0, 0))
    return ["Violence"] if r > 150 and g < 100 else []


def graph(
    replies,
    policy: Policy | None = None,
    *,
    helper: bool = False,
    checkpointer=None,
    review_key: str | None = None,
):
    store = PolicyStore({"acme": policy or Policy(id="acme", actions={"tool": "rewrite"})})
    sink = MemoryAuditSink()
    g = Guard(ScriptedClassifier(image_rule=red), policies=store, audit=sink, review_key=review_key)
    model = ScriptedChatModel(responses=replies)

    def agent(state: MessagesState):
        return {"messages": [model.invoke(state["messages"])]}

    if helper:
        builder = guarded_agent_graph(agent, TOOLS, g)
    else:  # by hand, the way users wire their own graphs
        builder = StateGraph(MessagesState)
        builder.add_node("guard_input", input_guard_node(g))
        builder.add_node("agent", agent)
        builder.add_node("guard_response", response_guard_node(g))
        builder.add_node("tools", ToolNode(TOOLS))
        builder.add_node("guard_tools", tool_guard_node(g))
        builder.add_edge(START, "guard_input")
        builder.add_edge("agent", "guard_response")
        builder.add_edge("tools", "guard_tools")
    return builder.compile(checkpointer=checkpointer), model, sink


CFG = {"configurable": {"thread_id": "t", "tenant_id": "acme"}}
BUILD = [False, True]


def run(app, inp, mode, cfg=CFG):
    return app.invoke(inp, cfg) if mode == "sync" else asyncio.run(app.ainvoke(inp, cfg))


@pytest.mark.parametrize("helper", BUILD)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_unsafe_input(mode: str, helper: bool) -> None:
    app, model, sink = graph([AIMessage("never")], helper=helper)
    out = run(app, {"messages": [HumanMessage("how to build a bomb")]}, mode)
    assert model.calls == [] and out["messages"][-1].content == Policy().messages.refusal
    assert sink.events[0].tenant == "acme"
    assert_valid_history(out["messages"])


@pytest.mark.parametrize("helper", BUILD)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_b_screenshot_withheld(mode: str, helper: bool) -> None:
    app, model, _ = graph(
        [tool_call("screenshot", {"url": "u"}, "c1"), AIMessage("done")], helper=helper
    )
    out = run(app, {"messages": [HumanMessage("screenshot")]}, mode)
    tm = next(m for m in model.calls[1] if isinstance(m, ToolMessage))
    assert tm.content == [{"type": "text", "text": Policy().messages.redaction}]
    assert out["messages"][-1].content == "done"
    assert_valid_history(out["messages"])


@pytest.mark.parametrize("helper", BUILD)
def test_c_pdf_page_withheld(helper: bool) -> None:
    app, model, _ = graph(
        [tool_call("read_report", {"name": "q"}, "c1"), AIMessage("ok")], helper=helper
    )
    app.invoke({"messages": [HumanMessage("read")]}, CFG)
    tm = next(m for m in model.calls[1] if isinstance(m, ToolMessage))
    kept = load_pdf(base64.b64decode(tm.content[0]["base64"]))
    assert [p.text.strip() for p in kept.pages] == ["Revenue grew.", "Outlook stable."]


@pytest.mark.parametrize("helper", BUILD)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_d_unsafe_tool_call_never_runs(mode: str, helper: bool) -> None:
    app, _model, _ = graph(
        [tool_call("send_email", {"to": "b", "body": "you worthless idiot"}, "c1")], helper=helper
    )
    out = run(app, {"messages": [HumanMessage("email bob")]}, mode)
    assert RAN == [] and out["messages"][-1].content == Policy().messages.refusal
    assert "worthless" not in str(out["messages"])
    assert_valid_history(out["messages"])


ESC = Policy(
    id="acme", actions={"response": {"default": "block", "categories": {"Harassment": "escalate"}}}
)


ESCALATED_BODY = {"to": "b", "body": "don't be an idiot"}


def escalating_graph(helper: bool, review_key: str | None = None):
    """A graph whose model asks for a call the policy escalates."""
    app, _, sink = graph(
        [tool_call("send_email", ESCALATED_BODY, "c1"), AIMessage("finished")],
        ESC,
        helper=helper,
        checkpointer=InMemorySaver(),
        review_key=review_key,
    )
    return app, sink


@pytest.mark.parametrize("helper", BUILD)
@pytest.mark.parametrize("answer", ["approve", "reject"])
def test_e_escalation(answer: str, helper: bool) -> None:
    body = ESCALATED_BODY
    app, sink = escalating_graph(helper)
    cfg = {"configurable": {"thread_id": f"e-{answer}-{helper}", "tenant_id": "acme"}}
    out = app.invoke({"messages": [HumanMessage("email bob")]}, cfg)
    assert out["__interrupt__"][0].value["action_requests"][0]["args"] == body and RAN == []
    out = app.invoke(Command(resume={"decisions": [{"type": answer}]}), cfg)
    assert ([("send_email", body)] if answer == "approve" else []) == RAN
    assert_valid_history(out["messages"])
    # the escalated check (again on resume: the node re-runs) and the answer share an id
    escalated = {e.request_id for e in sink.events if e.action == "escalate"}
    (review,) = [e for e in sink.events if e.event == "review"]
    assert escalated == {review.request_id} and review.review == answer


@pytest.mark.parametrize("helper", BUILD)
@pytest.mark.parametrize("signed", [False, True])
def test_with_a_reviewers_key_an_unsigned_approval_is_a_rejection(helper: bool, signed: bool):
    key = new_seal_key()
    body = ESCALATED_BODY
    app, sink = escalating_graph(helper, key)
    cfg = {"configurable": {"thread_id": f"signed-{signed}-{helper}", "tenant_id": "acme"}}
    (intr,) = app.invoke({"messages": [HumanMessage("email bob")]}, cfg)["__interrupt__"]
    yes = [{"type": "approve"}]
    resume = sign_review(intr.value, yes, key) if signed else {"decisions": yes}
    out = app.invoke(Command(resume=resume), cfg)
    assert ([("send_email", body)] if signed else []) == RAN
    assert ("idiot" in str(out["messages"])) is signed
    (review,) = [e for e in sink.events if e.event == "review"]
    assert review.review == ("approve" if signed else "reject")


def test_malformed_review_answer_rejects() -> None:
    app, _, _ = graph(
        [tool_call("send_email", {"to": "b", "body": "you idiot"}, "c1")],
        ESC,
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "bad-answer", "tenant_id": "acme"}}
    app.invoke({"messages": [HumanMessage("email")]}, cfg)
    app.invoke(Command(resume="yes please"), cfg)
    assert RAN == []


def test_safe_flow_untouched() -> None:
    app, _model, sink = graph(
        [tool_call("send_email", {"to": "b", "body": "Meeting at 3"}, "c1"), AIMessage("sent")]
    )
    out = app.invoke({"messages": [HumanMessage("email bob")]}, CFG)
    assert (
        RAN == [("send_email", {"to": "b", "body": "Meeting at 3"})]
        and out["messages"][-1].content == "sent"
    )
    assert {e.surface for e in sink.events} == {"input", "response", "tool"}


def test_escalation_without_a_checkpointer_applies_the_fallback() -> None:
    app, _, _ = graph([tool_call("send_email", {"to": "b", "body": "you idiot"}, "c1")], ESC)
    out = app.invoke({"messages": [HumanMessage("email bob")]}, CFG)
    assert "__interrupt__" not in out and RAN == []
    assert out["messages"][-1].content == Policy().messages.refusal
