"""Reviewing an escalated tool call behaves as LangChain's HumanInTheLoopMiddleware does:
the same scripted agent, once gated by HumanInTheLoopMiddleware and once by SafetyMiddleware
escalating the call, resumed with the same answer of each decision type."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from guard_plugin import Guard, Policy, PolicyStore
from guard_plugin.langchain import SafetyMiddleware
from guard_plugin.testing import ScriptedClassifier
from tests.lc_helpers import ScriptedChatModel, assert_valid_history, tool_call

RUDE = {"to": "bob@example.com", "body": "You worthless idiot, where is the report?"}
POLITE = {"to": "bob@example.com", "body": "Hi Bob, could you send the report?"}
ESCALATE = Policy(
    id="t", actions={"response": {"default": "block", "categories": {"Harassment": "escalate"}}}
)

ANSWERS = {
    "approve": {"type": "approve"},
    "edit": {"type": "edit", "edited_action": {"name": "send_email", "args": POLITE}},
    "reject-with-reason": {"type": "reject", "message": "Too rude, do not send."},
    "reject": {"type": "reject"},
    "respond": {"type": "respond", "message": "Bob already has the report."},
}


def run(which: str, answer: dict[str, Any]) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    @tool
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        sent.append({"to": to, "body": body})
        return "sent"

    model = ScriptedChatModel(responses=[tool_call("send_email", RUDE, "c1"), AIMessage("Done.")])
    if which == "hitl":
        middleware: Any = HumanInTheLoopMiddleware(interrupt_on={"send_email": True})
    else:
        guard = Guard(ScriptedClassifier(), policies=PolicyStore({"t": ESCALATE}), audit=[])
        middleware = SafetyMiddleware(guard, apply_to_input=False, apply_to_tool_results=False)
    agent = create_agent(
        model, tools=[send_email], middleware=[middleware], checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": which, "tenant_id": "t"}}
    first = agent.invoke({"messages": [HumanMessage("email bob")]}, config)
    (intr,) = first["__interrupt__"]
    out = agent.invoke(Command(resume={"decisions": [answer]}), config)
    answers = [m for m in out["messages"] if isinstance(m, ToolMessage) and m.tool_call_id == "c1"]
    assert_valid_history(out["messages"])
    return {
        "payload": intr.value,
        "sent": sent,
        "answer": answers[0] if answers else None,
        "model_calls": len(model.calls),
        "final": out["messages"][-1].content,
        "history": str(out["messages"]),
    }


@pytest.mark.parametrize("name", list(ANSWERS))
def test_each_decision_type_has_the_same_effect(name: str) -> None:
    answer = ANSWERS[name]
    theirs, ours = run("hitl", answer), run("safety", answer)
    # the same request shape for the reviewer
    for key in ("action_requests", "review_configs"):
        assert [r.get("name", r.get("action_name")) for r in ours["payload"][key]] == [
            r.get("name", r.get("action_name")) for r in theirs["payload"][key]
        ]
    assert ours["payload"]["review_configs"][0]["allowed_decisions"] == list(
        theirs["payload"]["review_configs"][0]["allowed_decisions"]
    )
    # the same effects: what the tool received, how the call was answered, what came next
    assert ours["sent"] == theirs["sent"]
    assert ours["model_calls"] == theirs["model_calls"] and ours["final"] == theirs["final"]
    assert (ours["answer"] is None) == (theirs["answer"] is None)
    if theirs["answer"] is not None:
        assert ours["answer"].status == theirs["answer"].status
        if name == "respond":
            assert ours["answer"].content == theirs["answer"].content
        if name == "reject-with-reason":
            assert "Too rude, do not send." in ours["answer"].content
    # one difference, on purpose: arguments judged unsafe do not stay in our history
    if name in ("reject", "reject-with-reason", "respond"):
        assert "worthless" in theirs["history"] and "worthless" not in ours["history"]
