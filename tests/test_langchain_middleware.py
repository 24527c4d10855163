"""SafetyMiddleware inside a real create_agent, with fake models and the scripted classifier."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from guard_plugin import Guard, GuardBlocked, Policy, PolicyStore
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.langchain import SafetyMiddleware
from guard_plugin.media import load_pdf
from guard_plugin.testing import ScriptedClassifier, make_screenshot, make_text_pdf
from tests.lc_helpers import ScriptedChatModel, assert_valid_history, collect, tool_call
from tests.media_fixtures import png


def red_is_violent(img) -> list[str]:
    r, g, b = img.to_pil().resize((1, 1)).getpixel((0, 0))
    return ["Violence"] if r > 150 and g < 100 and b < 100 else []


SENT: list[dict] = []


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    SENT.append({"to": to, "body": body})
    return "sent"


@tool(response_format="content_and_artifact")
def take_screenshot(url: str) -> tuple[list, dict]:
    """Screenshot a page."""
    colour = "red" if "bad" in url else "white"
    data = (
        png(colour, (200, 120))
        if colour == "red"
        else make_screenshot("Weather: sunny", size=(400, 200))
    )
    return [
        {"type": "text", "text": f"screenshot of {url}"},
        {"type": "image", "base64": base64.b64encode(data).decode(), "mime_type": "image/png"},
    ], {"url": url}


@tool
def read_report(name: str) -> list:
    """Read a PDF report."""
    pdf = make_text_pdf(
        ["Revenue grew 4%.", "Appendix: how to build a bomb at home.", "Outlook stable."]
    )
    return [
        {"type": "file", "base64": base64.b64encode(pdf).decode(), "mime_type": "application/pdf"}
    ]


@pytest.fixture(autouse=True)
def _clear_sent():
    SENT.clear()


def make(replies, policy: Policy | None = None, *, classifier=None, checkpointer=None, **mw):
    sink = MemoryAuditSink()
    clf = classifier or ScriptedClassifier(image_rule=red_is_violent)
    store = PolicyStore({"acme": (policy or Policy(id="acme", actions={"tool": "rewrite"}))})
    guard = Guard(clf, policies=store, audit=sink)
    model = ScriptedChatModel(responses=replies)
    agent = create_agent(
        model,
        tools=[send_email, take_screenshot, read_report],
        middleware=[SafetyMiddleware(guard, **mw)],
        checkpointer=checkpointer,
    )
    return agent, model, sink


CFG = {"configurable": {"thread_id": "t1", "tenant_id": "acme"}}


def run(agent, inp, mode: str, config=CFG):
    return agent.invoke(inp, config) if mode == "sync" else asyncio.run(agent.ainvoke(inp, config))


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_a_unsafe_input_is_refused_without_a_model_call(mode: str) -> None:
    agent, model, sink = make([AIMessage("never said")])
    out = run(agent, {"messages": [HumanMessage("How do I build a bomb?")]}, mode)
    assert model.calls == []
    last = out["messages"][-1]
    assert isinstance(last, AIMessage) and last.content == Policy().messages.refusal
    assert "bomb" not in str(out["messages"][0].content)  # replaced in place, same id
    assert sink.events[0].surface == "input" and sink.events[0].action == "block"
    assert sink.events[0].tenant == "acme"
    assert_valid_history(out["messages"])


@pytest.mark.parametrize("mode", MODES)
def test_b_flagged_screenshot_is_withheld_and_the_agent_finishes(mode: str) -> None:
    agent, model, sink = make(
        [tool_call("take_screenshot", {"url": "http://bad.example"}, "c1"), AIMessage("Done.")]
    )
    out = run(agent, {"messages": [HumanMessage("screenshot that page")]}, mode)
    assert out["messages"][-1].content == "Done."
    seen = model.calls[1]
    tm = next(m for m in seen if isinstance(m, ToolMessage))
    assert tm.content[0] == {"type": "text", "text": "screenshot of http://bad.example"}
    assert tm.content[1] == {"type": "text", "text": Policy().messages.redaction}
    assert tm.tool_call_id == "c1" and tm.artifact == {
        "url": "http://bad.example"
    }  # only unsafe parts go
    assert [e.surface for e in sink.events].count("tool") == 1
    assert_valid_history(out["messages"])


def test_b2_safe_screenshot_passes_untouched() -> None:
    agent, model, _ = make(
        [tool_call("take_screenshot", {"url": "http://fine.example"}, "c1"), AIMessage("ok")]
    )
    agent.invoke({"messages": [HumanMessage("screenshot")]}, CFG)
    tm = next(m for m in model.calls[1] if isinstance(m, ToolMessage))
    assert tm.content[1]["type"] == "image" and tm.artifact == {"url": "http://fine.example"}


@pytest.mark.parametrize("mode", MODES)
def test_c_pdf_with_one_unsafe_page_of_three(mode: str) -> None:
    agent, model, _ = make([tool_call("read_report", {"name": "q3"}, "c1"), AIMessage("Summary.")])
    run(agent, {"messages": [HumanMessage("read the q3 report")]}, mode)
    tm = next(m for m in model.calls[1] if isinstance(m, ToolMessage))
    kept = load_pdf(base64.b64decode(tm.content[0]["base64"]))
    assert [p.text.strip() for p in kept.pages] == ["Revenue grew 4%.", "Outlook stable."]
    assert "page 2" in tm.content[1]["text"]


@pytest.mark.parametrize("mode", MODES)
def test_d_harassing_tool_call_never_runs(mode: str) -> None:
    body = {"to": "bob@example.com", "body": "You are a worthless idiot."}
    agent, model, _sink = make([tool_call("send_email", body, "c1"), AIMessage("unreachable")])
    out = run(agent, {"messages": [HumanMessage("email bob about the deadline")]}, mode)
    assert SENT == [] and len(model.calls) == 1
    last = out["messages"][-1]
    assert (
        isinstance(last, AIMessage)
        and last.content == Policy().messages.refusal
        and not last.tool_calls
    )
    assert "worthless" not in str(out["messages"])
    assert_valid_history(out["messages"])


def test_d2_rewrite_drops_only_the_unsafe_call() -> None:
    policy = Policy(id="acme", actions={"response": "rewrite"})
    calls = AIMessage(
        "",
        tool_calls=[
            {
                "name": "send_email",
                "args": {"to": "a@x", "body": "Meeting at 3."},
                "id": "ok1",
                "type": "tool_call",
            },
            {
                "name": "send_email",
                "args": {"to": "b@x", "body": "You pathetic loser."},
                "id": "bad1",
                "type": "tool_call",
            },
        ],
    )
    agent, _model, _ = make([calls, AIMessage("Sent one email.")], policy)
    out = agent.invoke({"messages": [HumanMessage("send the emails")]}, CFG)
    assert SENT == [{"to": "a@x", "body": "Meeting at 3."}]
    ai = next(m for m in out["messages"] if isinstance(m, AIMessage) and m.tool_calls)
    assert [c["id"] for c in ai.tool_calls] == ["ok1"] and "not made" in ai.content
    assert "pathetic" not in str(out["messages"])
    assert_valid_history(out["messages"])


ESCALATE = Policy(
    id="acme", actions={"response": {"default": "block", "categories": {"Harassment": "escalate"}}}
)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("answer", ["approve", "reject"])
def test_e_escalation_interrupts_and_resumes(mode: str, answer: str) -> None:
    body = {"to": "bob@example.com", "body": "Stop being an idiot about the deadline."}
    agent, _model, _ = make(
        [tool_call("send_email", body, "c1"), AIMessage("All done.")],
        ESCALATE,
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": f"esc-{mode}-{answer}", "tenant_id": "acme"}}
    out = run(agent, {"messages": [HumanMessage("email bob")]}, mode, cfg)
    (intr,) = out["__interrupt__"]
    payload = intr.value
    assert (
        payload["action_requests"][0]["name"] == "send_email"
        and payload["action_requests"][0]["args"] == body
    )
    assert payload["review_configs"][0]["allowed_decisions"] == [
        "approve",
        "edit",
        "reject",
        "respond",
    ]
    assert (
        payload["safety"]["categories"] == ["Harassment"]
        and payload["safety"]["surface"] == "response"
    )
    assert SENT == []
    resume = {
        "decisions": [
            {"type": answer} if answer == "approve" else {"type": "reject", "message": "Not sent."}
        ]
    }
    out = run(agent, Command(resume=resume), mode, cfg)
    if answer == "approve":
        assert [body] == SENT  # ran exactly once
        assert out["messages"][-1].content == "All done."
    else:  # as HumanInTheLoopMiddleware: the call is answered and the model goes on
        assert SENT == []
        answer = next(m for m in out["messages"] if isinstance(m, ToolMessage))
        assert "Not sent." in answer.content and answer.status == "error"
        assert out["messages"][-1].content == "All done."
        assert "idiot" not in str(out["messages"])  # the unsafe arguments left the history
    assert_valid_history(out["messages"])


def test_e2_edit_changes_the_arguments() -> None:
    body = {"to": "bob@example.com", "body": "Stop being an idiot."}
    agent, _, _ = make(
        [tool_call("send_email", body, "c1"), AIMessage("ok")],
        ESCALATE,
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "edit", "tenant_id": "acme"}}
    agent.invoke({"messages": [HumanMessage("email bob")]}, cfg)
    edited = {
        "name": "send_email",
        "args": {"to": "bob@example.com", "body": "Please send the report by Friday."},
    }
    agent.invoke(Command(resume={"decisions": [{"type": "edit", "edited_action": edited}]}), cfg)
    assert [edited["args"]] == SENT


def test_e3_no_checkpointer_means_fallback() -> None:
    agent, _, _ = make(
        [tool_call("send_email", {"to": "b", "body": "you idiot"}, "c1")], ESCALATE, escalate=False
    )
    out = agent.invoke({"messages": [HumanMessage("email")]}, CFG)
    assert SENT == [] and "__interrupt__" not in out


@pytest.mark.parametrize("mode", MODES)
def test_g_classifier_error_blocks_and_is_audited(mode: str) -> None:
    agent, model, sink = make(
        [AIMessage("hi")], classifier=ScriptedClassifier(error=RuntimeError("GPU fell over"))
    )
    out = run(agent, {"messages": [HumanMessage("hello")]}, mode)
    assert model.calls == [] and out["messages"][-1].content == Policy().messages.refusal
    assert sink.events[0].status == "error" and sink.events[0].error_kind == "classifier"


def test_on_block_error_raises_typed_error() -> None:
    agent, _, _ = make([AIMessage("x")], on_block="error")
    with pytest.raises(GuardBlocked) as info:
        agent.invoke({"messages": [HumanMessage("build a bomb")]}, CFG)
    assert info.value.decision.categories == ("Violence", "Guns and Illegal Weapons")


def test_next_turn_after_a_block_is_a_valid_conversation() -> None:
    saver = InMemorySaver()
    agent, model, _ = make(
        [
            tool_call("send_email", {"to": "b", "body": "you worthless idiot"}, "c1"),
            AIMessage("Happy to help."),
        ],
        checkpointer=saver,
    )
    cfg = {"configurable": {"thread_id": "two-turns", "tenant_id": "acme"}}
    agent.invoke({"messages": [HumanMessage("email bob")]}, cfg)
    out = agent.invoke({"messages": [HumanMessage("what's 2+2?")]}, cfg)
    assert out["messages"][-1].content == "Happy to help."
    assert_valid_history(model.calls[-1])
    assert "worthless" not in str(model.calls[-1])


def test_tenant_from_runtime_context() -> None:
    from dataclasses import dataclass

    @dataclass
    class Ctx:
        tenant_id: str

    sink = MemoryAuditSink()
    store = PolicyStore({"ops": Policy(id="ops", categories_off=["Profanity"])})
    guard = Guard(ScriptedClassifier(), policies=store, audit=sink)
    model = ScriptedChatModel(responses=[AIMessage("fixed")])
    agent = create_agent(model, tools=[], middleware=[SafetyMiddleware(guard)], context_schema=Ctx)
    out = agent.invoke({"messages": [HumanMessage("this damn printer")]}, context=Ctx("ops"))
    assert out["messages"][-1].content == "fixed" and sink.events[0].tenant == "ops"


def test_surface_switches_like_pii_middleware() -> None:
    agent, _model, sink = make(
        [AIMessage("you worthless idiot")],
        apply_to_input=False,
        apply_to_output=False,
        apply_to_tool_results=False,
    )
    out = agent.invoke({"messages": [HumanMessage("build a bomb")]}, CFG)
    assert out["messages"][-1].content == "you worthless idiot" and sink.events == []


def test_two_instances_need_distinct_names() -> None:
    a = SafetyMiddleware(Guard("scripted", audit=[]), name="input_guard", apply_to_output=False)
    b = SafetyMiddleware(Guard("scripted", audit=[]), name="output_guard", apply_to_input=False)
    assert (
        a.name != b.name
        and SafetyMiddleware(Guard("scripted", audit=[])).name == "SafetyMiddleware"
    )


def test_a_failed_rewrite_withholds_the_whole_tool_result(monkeypatch) -> None:
    import guard_plugin.lc_messages.tools as lcm

    def broken(*a, **k):
        raise RuntimeError("cannot rebuild")

    monkeypatch.setattr(lcm, "rewrite_content", broken)
    agent, model, _ = make([tool_call("read_report", {"name": "q3"}, "c1"), AIMessage("ok")])
    agent.invoke({"messages": [HumanMessage("read it")]}, CFG)
    tm = next(m for m in model.calls[1] if isinstance(m, ToolMessage))
    assert tm.content == Policy().messages.redaction and tm.tool_call_id == "c1"


def test_escalation_without_a_checkpointer_applies_the_fallback() -> None:
    policy = Policy(id="acme", actions={"input": "escalate", "response": "escalate"})
    agent, model, _ = make(
        [tool_call("send_email", {"to": "b", "body": "you idiot"}, "c1")], policy
    )
    out = agent.invoke({"messages": [HumanMessage("build a bomb")]}, CFG)  # no checkpointer
    assert "__interrupt__" not in out and model.calls == []
    assert out["messages"][-1].content == Policy().messages.refusal
    agent, _, _ = make([tool_call("send_email", {"to": "b", "body": "you idiot"}, "c1")], policy)
    out = agent.invoke({"messages": [HumanMessage("email bob")]}, CFG)
    assert "__interrupt__" not in out and SENT == []
    assert_valid_history(out["messages"])


@pytest.mark.parametrize("strategy", ["tool", "provider"])
@pytest.mark.parametrize("mode", MODES)
def test_a_blocked_structured_answer_leaves_no_structured_response(
    strategy: str, mode: str
) -> None:
    """With a tool strategy the structured response comes from a tool call's arguments; with
    a provider strategy LangChain parses it from the answer's text. Either way a blocked
    answer leaves none, in the state and in every stream event."""
    from langchain.agents.structured_output import ProviderStrategy, ToolStrategy
    from pydantic import BaseModel

    class Reply(BaseModel):
        text: str

    def agent_for(text: str):
        if strategy == "tool":
            reply, fmt = tool_call("Reply", {"text": text}, "s1"), ToolStrategy(Reply)
        else:
            reply, fmt = AIMessage(json.dumps({"text": text})), ProviderStrategy(Reply)
        return create_agent(
            ScriptedChatModel(responses=[reply]),
            tools=[send_email],
            response_format=fmt,
            middleware=[SafetyMiddleware(Guard(ScriptedClassifier(), audit=[]))],
        )

    events, _ = collect(
        agent_for("you worthless idiot"), {"messages": [HumanMessage("hi")]}, {}, mode
    )
    assert "worthless" not in repr(events)
    (final,) = [e for kind, e in events if kind == "values"][-1:]
    assert final.get("structured_response") is None
    assert final["messages"][-1].content == Policy().messages.refusal
    assert_valid_history(final["messages"])
    out = agent_for("hello there").invoke({"messages": [HumanMessage("hi")]})
    assert out["structured_response"] == Reply(text="hello there")


@tool(return_direct=True)
def lookup(q: str) -> str:
    """Look something up and hand the answer straight to the user."""
    return "Step 1: build a bomb from fertiliser." if "recipe" in q else "Paris."


@pytest.mark.parametrize("mode", MODES)
def test_f_a_direct_tool_result_is_checked_before_the_next_model_call(mode: str) -> None:
    """A return_direct tool ends the turn with its result; when the user writes again, that
    result and the new turn are checked together, and the model never reads it unchecked."""
    sink = MemoryAuditSink()
    store = PolicyStore({"acme": Policy(id="acme", actions={"tool": "block"})})
    model = ScriptedChatModel(
        responses=[tool_call("lookup", {"q": "recipe"}, "c1"), AIMessage("Sure.")]
    )
    agent = create_agent(
        model,
        tools=[lookup],
        middleware=[SafetyMiddleware(Guard(ScriptedClassifier(), policies=store, audit=sink))],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": f"direct-{mode}", "tenant_id": "acme"}}
    run(agent, {"messages": [HumanMessage("find the recipe")]}, mode, config)
    out = run(agent, {"messages": [HumanMessage("thanks, anything else?")]}, mode, config)
    seen = "\n".join(str(m.content) for m in model.calls[-1])
    assert "build a bomb" not in seen
    tool_msg = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert "build a bomb" not in str(tool_msg.content) and tool_msg.status == "error"
    assert [e.surface for e in sink.events].count("tool") == 1
    assert out["messages"][-1].content == "Sure."
    assert_valid_history(out["messages"])
