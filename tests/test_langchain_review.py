"""Escalation through SafetyMiddleware: where the run pauses, what the state holds while it
waits, and that every answer leaves a valid history, with other middleware around it."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    HumanInTheLoopMiddleware,
    PIIMiddleware,
    hook_config,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from guard_plugin import Guard, GuardBlocked, Policy, PolicyStore
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.langchain import REVIEW_TOOL, SafetyMiddleware
from guard_plugin.sealing import new_seal_key, sign_review
from guard_plugin.testing import ScriptedClassifier
from tests.lc_helpers import ScriptedChatModel, assert_valid_history, tool_call

SENT: list[dict] = []
FETCHED: list[str] = []


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    SENT.append({"to": to, "body": body})
    return "sent"


@tool
def fetch(url: str) -> str:
    """Fetch a page."""
    FETCHED.append(url)
    return "Forum post: you are all worthless idiots."


@pytest.fixture(autouse=True)
def _clear():
    SENT.clear()
    FETCHED.clear()


RUDE = {"to": "bob@example.com", "body": "Stop being an idiot about the deadline."}
ESCALATE_ALL = Policy(
    id="acme",
    actions={
        s: {"default": "block", "categories": {"Harassment": "escalate"}}
        for s in ("input", "tool", "response")
    },
)
MODES = ["sync", "async"]


class AfterNoop(AgentMiddleware):
    def after_model(self, state, runtime):
        return None


class AfterJumpNoop(AgentMiddleware):
    @hook_config(can_jump_to=["end"])
    def after_model(self, state, runtime):
        return None


def make(
    replies, *, others=(), outer=True, tools=(send_email, fetch), saver=True, review_key=None, **mw
):
    sink = MemoryAuditSink()
    guard = Guard(
        ScriptedClassifier(),
        policies=PolicyStore({"acme": ESCALATE_ALL}),
        audit=sink,
        review_key=review_key,
    )
    model = ScriptedChatModel(responses=replies)
    ours = SafetyMiddleware(guard, **mw)
    middleware = [ours, *others] if outer else [*others, ours]
    agent = create_agent(
        model,
        tools=list(tools),
        middleware=middleware,
        checkpointer=InMemorySaver() if saver else None,
    )
    return agent, model, sink


def cfg(thread: str) -> dict:
    return {"configurable": {"thread_id": thread, "tenant_id": "acme"}}


def run(agent, inp, mode, config):
    if mode == "sync":
        return agent.invoke(inp, config)
    return asyncio.run(agent.ainvoke(inp, config))


def approve(n: int = 1) -> Command:
    return Command(resume={"decisions": [{"type": "approve"}] * n})


def reject(message: str = "Not sent.") -> Command:
    return Command(resume={"decisions": [{"type": "reject", "message": message}]})


@pytest.mark.parametrize("mode", MODES)
def test_held_response_waits_outside_the_conversation(mode: str) -> None:
    agent, model, sink = make([tool_call("send_email", RUDE, "c1"), AIMessage("All done.")])
    c = cfg(f"held-{mode}")
    out = run(agent, {"messages": [HumanMessage("email bob")]}, mode, c)
    key = "guard_plugin_review:SafetyMiddleware"
    assert out["__interrupt__"] and key not in out  # private: not in the output
    assert agent.get_state(c).values[key]["anchor"]
    paused = agent.get_state(c).values["messages"]
    assert "idiot" not in str(paused)  # the response is not in the conversation while it waits
    placeholder, waiting = paused[-2:]
    assert placeholder.content == Policy().messages.review_pending
    assert [t["name"] for t in placeholder.tool_calls] == [REVIEW_TOOL]
    assert (
        isinstance(waiting, ToolMessage) and waiting.tool_call_id == placeholder.tool_calls[0]["id"]
    )
    assert_valid_history(paused)
    assert len(model.calls) == 1 and SENT == []

    out = run(agent, approve(), mode, c)
    assert SENT == [RUDE] and out["messages"][-1].content == "All done."
    assert len(model.calls) == 2  # the model was not asked again for the reviewed response
    assert REVIEW_TOOL not in str(out["messages"])  # the stand-ins are gone
    assert out["messages"][1].id == placeholder.id  # the reviewed response took their place
    assert_valid_history(out["messages"])
    (escalation,) = [e for e in sink.events if e.action == "escalate"]  # decided once
    (review,) = [e for e in sink.events if e.event == "review"]
    assert (review.review, review.action, review.tool_name) == ("approve", "allow", "send_email")
    assert review.request_id == escalation.request_id
    assert agent.get_state(c).values.get(key) is None


@pytest.mark.parametrize(
    "others, outer",
    [
        ([PIIMiddleware("email", apply_to_output=True)], True),
        ([PIIMiddleware("email", apply_to_output=True)], False),
        ([HumanInTheLoopMiddleware(interrupt_on={"fetch": True})], True),
        ([AfterNoop(), AfterJumpNoop()], True),
    ],
    ids=["pii-inner", "pii-outer", "hitl", "two-after-model-hooks"],
)
def test_review_works_whatever_middleware_sits_around_it(others, outer) -> None:
    agent, model, _ = make(
        [tool_call("send_email", RUDE, "c1"), AIMessage("All done.")], others=others, outer=outer
    )
    c = cfg(f"topology-{len(others)}-{outer}")
    out = agent.invoke({"messages": [HumanMessage("email bob")]}, c)
    (intr,) = out["__interrupt__"]
    assert intr.value["safety"]["surface"] == "response" and SENT == []
    out = agent.invoke(reject(), c)
    answer = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert SENT == [] and "Not sent." in answer.content and answer.status == "error"
    # as HumanInTheLoopMiddleware: the model reads the answer and goes on
    assert len(model.calls) == 2 and out["messages"][-1].content == "All done."
    assert_valid_history(out["messages"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("answer", ["approve", "reject"])
def test_escalated_input_pauses_before_the_model_is_called(mode: str, answer: str) -> None:
    agent, model, sink = make([AIMessage("Let's keep it civil.")])
    c = cfg(f"input-{mode}-{answer}")
    out = run(agent, {"messages": [HumanMessage("my boss is an idiot")]}, mode, c)
    (intr,) = out["__interrupt__"]
    assert intr.value["safety"]["surface"] == "input" and model.calls == []
    out = run(agent, approve() if answer == "approve" else reject(), mode, c)
    if answer == "approve":
        assert len(model.calls) == 1 and out["messages"][-1].content == "Let's keep it civil."
        assert "idiot" in str(model.calls[0])
    else:
        assert model.calls == [] and out["messages"][-1].content == Policy().messages.refusal
        assert "idiot" not in str(out["messages"])
    assert_valid_history(out["messages"])
    # The audit trail: the escalated check (run again on resume, under the same request id)
    # and the reviewer's answer, linked to it.
    trail = [e for e in sink.events if e.surface == "input"]
    checks = [e for e in trail if e.event == "decision"]
    (review,) = [e for e in trail if e.event == "review"]
    assert {e.action for e in checks} == {"escalate"}
    assert {e.request_id for e in checks} == {review.request_id}
    assert review.request_id.startswith(f"input-{mode}-{answer}:")
    assert review.review == answer
    assert review.action == ("allow" if answer == "approve" else "block")


@pytest.mark.parametrize("answer", ["approve", "reject"])
def test_escalated_tool_result_pauses_before_the_model_reads_it(answer: str) -> None:
    agent, model, _ = make(
        [tool_call("fetch", {"url": "https://forum.example"}, "c1"), AIMessage("Summary.")]
    )
    c = cfg(f"tool-{answer}")
    out = agent.invoke({"messages": [HumanMessage("what does the forum say?")]}, c)
    (intr,) = out["__interrupt__"]
    assert intr.value["safety"]["surface"] == "tool" and len(model.calls) == 1
    out = agent.invoke(approve() if answer == "approve" else reject(), c)
    assert FETCHED == ["https://forum.example"]  # the tool ran once
    seen = next(m for m in model.calls[1] if isinstance(m, ToolMessage))
    assert ("worthless" in seen.content) is (answer == "approve")
    assert out["messages"][-1].content == "Summary."
    assert_valid_history(out["messages"])


def test_agent_without_tools_gets_the_escalation_fallback() -> None:
    agent, _model, _ = make([AIMessage("You are an idiot.")], tools=())
    out = agent.invoke({"messages": [HumanMessage("hi")]}, cfg("no-tools"))
    assert "__interrupt__" not in out  # create_agent has no way back to the model step
    assert out["messages"][-1].content == Policy().messages.refusal
    assert_valid_history(out["messages"])


def test_a_new_turn_instead_of_an_answer_keeps_the_response_withheld(caplog) -> None:
    agent, model, _ = make(
        [tool_call("send_email", RUDE, "c1"), AIMessage("Four."), AIMessage("spare")]
    )
    c = cfg("abandoned")
    assert agent.invoke({"messages": [HumanMessage("email bob")]}, c)["__interrupt__"]
    with caplog.at_level("WARNING", logger="guard_plugin.langchain"):
        out = agent.invoke({"messages": [HumanMessage("what's 2+2?")]}, c)
    assert "was not reviewed" in caplog.text
    assert out["messages"][-1].content == "Four." and SENT == []
    sent_to_model = model.calls[-1]
    assert REVIEW_TOOL not in str(sent_to_model) and "idiot" not in str(sent_to_model)
    assert_valid_history(sent_to_model)
    assert REVIEW_TOOL not in str(out["messages"])
    assert_valid_history(out["messages"])
    assert agent.get_state(c).values.get("guard_plugin_review:SafetyMiddleware") is None


def test_a_malformed_answer_counts_as_a_rejection() -> None:
    agent, _, _ = make([tool_call("send_email", RUDE, "c1"), AIMessage("ok")])
    c = cfg("malformed")
    agent.invoke({"messages": [HumanMessage("email bob")]}, c)
    out = agent.invoke(Command(resume={"decisions": "yes please"}), c)
    answer = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert SENT == [] and "malformed review answer" in answer.content
    assert_valid_history(out["messages"])


def test_rejection_raises_with_on_block_error() -> None:
    agent, _, _ = make([tool_call("send_email", RUDE, "c1")], on_block="error")
    c = cfg("raise")
    agent.invoke({"messages": [HumanMessage("email bob")]}, c)
    with pytest.raises(GuardBlocked) as info:
        agent.invoke(reject(), c)
    assert info.value.decision.categories == ("Harassment",) and SENT == []


def test_hold_output_can_still_escalate_and_streams_nothing_unchecked() -> None:
    agent, _, _ = make(
        [AIMessage("Your manager is a worthless idiot."), AIMessage("ok")], hold_output=True
    )
    c = cfg("hold-escalate")
    chunks = list(
        agent.stream({"messages": [HumanMessage("thoughts?")]}, c, stream_mode="messages")
    )
    assert "worthless" not in str(chunks)
    assert agent.get_state(c).next  # paused for review
    out = agent.invoke(approve(), c)
    assert out["messages"][-1].content == "Your manager is a worthless idiot."


@pytest.mark.parametrize("stream_mode", ["updates", "values"])
def test_update_and_value_streams_never_carry_a_blocked_response(stream_mode: str) -> None:
    store = PolicyStore({"acme": Policy(id="acme")})
    guard = Guard(ScriptedClassifier(), policies=store, audit=[])
    model = ScriptedChatModel(responses=[tool_call("send_email", RUDE, "c1")])
    agent = create_agent(model, tools=[send_email], middleware=[SafetyMiddleware(guard)])
    chunks = list(
        agent.stream({"messages": [HumanMessage("email bob")]}, cfg("s"), stream_mode=stream_mode)
    )
    assert chunks and "idiot" not in str(chunks) and SENT == []


def test_two_instances_keep_their_own_reviews() -> None:
    guard = Guard(ScriptedClassifier(), policies=PolicyStore({"acme": ESCALATE_ALL}), audit=[])
    model = ScriptedChatModel(responses=[tool_call("send_email", RUDE, "c1"), AIMessage("ok")])
    agent = create_agent(
        model,
        tools=[send_email],
        middleware=[
            SafetyMiddleware(guard, name="input_guard", apply_to_output=False),
            SafetyMiddleware(guard, name="output_guard", apply_to_input=False),
        ],
        checkpointer=InMemorySaver(),
    )
    c = cfg("two")
    out = agent.invoke({"messages": [HumanMessage("email bob")]}, c)
    assert out["__interrupt__"]
    held = agent.get_state(c).values
    assert held.get("guard_plugin_review:output_guard") and not held.get(
        "guard_plugin_review:input_guard"
    )
    out = agent.invoke(approve(), c)
    assert SENT == [RUDE] and out["messages"][-1].content == "ok"
    assert_valid_history(out["messages"])


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: {**r, "decision": {"action": "no such action"}},
        lambda r: {**r, "message": "not a message"},
        lambda r: {"anchor": r["anchor"], "review_id": r["review_id"]},
        lambda r: "garbage",
    ],
    ids=["bad-decision", "bad-message", "missing-fields", "not-a-record"],
)
def test_an_unreadable_held_review_keeps_the_response_withheld(damage, caplog) -> None:
    agent, model, _ = make([tool_call("send_email", RUDE, "c1"), AIMessage("Fine.")])
    c = cfg(f"damaged-{damage.__name__}-{id(damage)}")
    agent.invoke({"messages": [HumanMessage("email bob")]}, c)
    key = "guard_plugin_review:SafetyMiddleware"
    agent.update_state(c, {key: damage(agent.get_state(c).values[key])})
    with caplog.at_level("WARNING", logger="guard_plugin.langchain"):
        out = agent.invoke({"messages": [HumanMessage("anything else?")]}, c)
    assert "stays withheld" in caplog.text
    assert out["messages"][-1].content == "Fine." and SENT == []
    assert "idiot" not in str(out["messages"]) and REVIEW_TOOL not in str(model.calls[-1])
    assert_valid_history(out["messages"])
    assert agent.get_state(c).values.get(key) is None


def test_an_edit_without_an_edited_action_is_applied_and_audited_as_a_rejection() -> None:
    agent, _, sink = make([tool_call("send_email", RUDE, "c1"), AIMessage("ok")])
    c = cfg("empty-edit")
    agent.invoke({"messages": [HumanMessage("email bob")]}, c)
    out = agent.invoke(Command(resume={"decisions": [{"type": "edit"}]}), c)
    answer = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert SENT == [] and "declined the call to `send_email`" in answer.content
    (review,) = [e for e in sink.events if e.event == "review"]
    assert (review.review, review.action) == ("reject", "block")


@pytest.mark.parametrize("answer", ["approve", "reject"])
def test_escalated_reasoning_is_shown_to_the_reviewer_and_leaves_on_reject(answer: str) -> None:
    thought = "They are all worthless idiots, but answer politely."
    turn = AIMessage("Here is the summary.", additional_kwargs={"reasoning_content": thought})
    agent, _, _ = make([turn])
    c = cfg(f"reasoning-{answer}")
    out = run(agent, {"messages": [HumanMessage("summarise the thread")]}, "sync", c)
    request = out["__interrupt__"][0].value["action_requests"][0]
    assert request["name"] == "assistant_response"
    assert request["args"]["reasoning"] == thought
    assert "idiots" not in str(agent.get_state(c).values["messages"])  # held while it waits
    out = run(agent, approve() if answer == "approve" else reject(), "sync", c)
    last = out["messages"][-1]
    if answer == "approve":
        assert last.content == "Here is the summary."
        assert last.additional_kwargs["reasoning_content"] == thought
    else:
        assert "reasoning_content" not in last.additional_kwargs
        assert "idiots" not in str(out["messages"])


# -- a reviewers' key: only answers the reviewers' tool sealed count ---------------------------


REVIEW_KEY = new_seal_key()


@pytest.mark.parametrize("surface", ["input", "response"])
@pytest.mark.parametrize(
    "answer",
    ["unsigned", "other key", "other escalation", "changed", "signed approve", "signed reject"],
)
def test_with_a_reviewers_key_only_a_sealed_answer_counts(surface: str, answer: str) -> None:
    """Whoever can resume a run (in a chat UI, the user who wrote the content) cannot approve
    an escalation: the answer must be sealed with the reviewers' key for this escalation."""
    if surface == "input":
        replies, ask = [AIMessage("Let's keep it civil.")], "my boss is an idiot"
    else:
        replies, ask = [tool_call("send_email", RUDE, "c1"), AIMessage("All done.")], "email bob"
    agent, model, sink = make(replies, review_key=REVIEW_KEY)
    c = cfg(f"signed-{surface}-{answer.replace(' ', '-')}")
    out = agent.invoke({"messages": [HumanMessage(ask)]}, c)
    (intr,) = out["__interrupt__"]
    yes, no = [{"type": "approve"}], [{"type": "reject", "message": "No."}]
    elsewhere = {"safety": {**intr.value["safety"], "request_id": "another-thread:input:1"}}
    resume = {
        "unsigned": {"decisions": yes},
        "other key": sign_review(intr.value, yes, new_seal_key()),
        "other escalation": sign_review(elsewhere, yes, REVIEW_KEY),
        "changed": {**sign_review(intr.value, no, REVIEW_KEY), "decisions": yes},
        "signed approve": sign_review(intr.value, yes, REVIEW_KEY),
        "signed reject": sign_review(intr.value, no, REVIEW_KEY),
    }[answer]
    out = agent.invoke(Command(resume=resume), c)
    approved = answer == "signed approve"
    if surface == "input":
        assert ("idiot" in str(model.calls)) is approved
    else:
        assert (SENT == [RUDE]) is approved
        assert ("idiot" in str(out["messages"])) is approved
    (review,) = [e for e in sink.events if e.event == "review"]
    assert review.review == ("approve" if approved else "reject")
    assert_valid_history(out["messages"])


def test_sign_review_needs_the_escalations_interrupt_value() -> None:
    with pytest.raises(ValueError, match="request_id"):
        sign_review({"action_requests": []}, [{"type": "approve"}], REVIEW_KEY)
