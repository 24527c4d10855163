"""Speculative input checks in the agent middleware: with the tenant's ``speculative: true``
the model is called while the user's turn is checked. Its answer is used only if the check
allows the turn as it is; otherwise it leaves no trace: not in the state, a stream, a
checkpoint, the caller's result or a tool, and the audit says a speculative answer was
dropped. Driven by events, not timing."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from guard_plugin import Guard, Policy, PolicyStore
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.langchain import SafetyMiddleware
from guard_plugin.testing import ScriptedClassifier
from tests.lc_helpers import ScriptedChatModel, collect, tool_call

SECRET = "the secret plan the model wrote for the bomb"
ran: list[str] = []


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    ran.append(to)
    return "sent"


class Overlap:
    """A classifier double that answers only once the model has been called: it proves the
    two ran at the same time (it would wait in vain for a model called after the check)."""

    def __init__(self, model_called: threading.Event) -> None:
        self.inner = ScriptedClassifier()
        self.model_called = model_called
        self.name = "overlap-double"
        self.extra_tokens: tuple[str, ...] = ()
        self.overlapped = 0

    def classify(self, requests: Any, *, timeout: float | None = None) -> Any:
        if self.model_called.wait(10):
            self.overlapped += 1
        return self.inner.classify(requests, timeout=timeout)

    async def aclassify(self, requests: Any, *, timeout: float | None = None) -> Any:
        if await asyncio.to_thread(self.model_called.wait, 10):
            self.overlapped += 1
        return self.inner.classify(requests, timeout=timeout)

    def close(self) -> None:
        pass


class SignallingModel(ScriptedChatModel):
    called: Any = None

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        self.called.set()
        return super()._generate(messages, stop, run_manager, **kwargs)


def agent_for(
    reply: AIMessage, speculative: bool = True
) -> tuple[Any, Any, Overlap, MemoryAuditSink]:
    event = threading.Event()
    model = SignallingModel(responses=[reply, AIMessage("Done.")])
    model.called = event
    clf = Overlap(event)
    sink = MemoryAuditSink()
    policy = Policy(id="t", speculative=speculative)
    guard = Guard(clf, policies=PolicyStore({"t": policy}), audit=sink)
    agent = create_agent(
        model,
        tools=[send_email],
        middleware=[SafetyMiddleware(guard)],
        checkpointer=InMemorySaver(),
    )
    return agent, model, clf, sink


def run(agent: Any, text: str, thread: str, mode: str) -> tuple[list[Any], dict]:
    config = {"configurable": {"thread_id": thread, "tenant_id": "t"}}
    return collect(agent, {"messages": [HumanMessage(text)]}, config, mode)


def dump(value: Any) -> str:
    return json.dumps(
        value, default=lambda o: o.model_dump() if hasattr(o, "model_dump") else repr(o)
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_safe_turn_uses_the_answer_made_while_it_was_checked(mode: str) -> None:
    agent, model, clf, sink = agent_for(AIMessage("Paris is the capital."))
    _events, state = run(agent, "what is the capital of France?", f"safe-{mode}", mode)
    assert clf.overlapped >= 1  # the check saw the model already called
    assert len(model.calls) == 1 and state["messages"][-1].content == "Paris is the capital."
    assert not any(e.event == "override" for e in sink.events)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_refused_turn_leaves_no_trace_of_the_speculative_answer(mode: str) -> None:
    ran.clear()
    reply = tool_call("send_email", {"to": "bob", "body": SECRET}, "c1").model_copy(
        update={"content": SECRET}
    )
    agent, _model, clf, sink = agent_for(reply)
    events, state = run(agent, "how do I build a bomb", f"blocked-{mode}", mode)
    assert clf.overlapped >= 1
    assert SECRET not in dump(events) and SECRET not in dump(state)
    assert ran == []  # no tool ran on the dropped answer
    assert state["messages"][-1].content == Policy().messages.refusal
    (dropped,) = [e for e in sink.events if e.event == "override"]
    assert "speculative model response dropped" in (dropped.reason or "")
    assert dropped.surface == "input" and dropped.action == "block"


def test_off_by_default_the_model_waits_for_the_check() -> None:
    agent, model, clf, _ = agent_for(AIMessage("Paris."), speculative=False)
    clf.model_called.set()  # the double need not wait: nothing overlaps here
    _, state = run(agent, "capital of France?", "plain", "sync")
    assert state["messages"][-1].content == "Paris." and len(model.calls) == 1


# -- the LangGraph model node --------------------------------------------------------------------


def speculative_parts(replies: list[AIMessage]) -> tuple[Any, Overlap, MemoryAuditSink, Guard]:
    """A model that signals its call, a classifier double that waits for that signal, an
    audit sink, and a guard for the speculative tenant ``t``."""
    event = threading.Event()
    model = SignallingModel(responses=replies)
    model.called = event
    clf = Overlap(event)
    sink = MemoryAuditSink()
    guard = Guard(clf, policies=PolicyStore({"t": Policy(id="t", speculative=True)}), audit=sink)
    return model, clf, sink, guard


def graph_for(reply: AIMessage) -> tuple[Any, Any, Overlap, MemoryAuditSink]:
    """A graph whose model node meets the user's turn undecided (no input node before it):
    the node checks it, with the model answering beside the check."""
    from langgraph.graph import END, START, MessagesState, StateGraph

    from guard_plugin.langgraph import guarded_model_node

    model, clf, sink, guard = speculative_parts([reply])

    def call_model(state: Any) -> Any:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", guarded_model_node(call_model, guard))
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder.compile(checkpointer=InMemorySaver()), model, clf, sink


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_node_uses_the_answer_made_while_the_turn_was_checked(mode: str) -> None:
    graph, model, clf, sink = graph_for(AIMessage("Paris is the capital."))
    _events, state = run(graph, "what is the capital of France?", f"node-safe-{mode}", mode)
    assert clf.overlapped >= 1
    assert len(model.calls) == 1 and state["messages"][-1].content == "Paris is the capital."
    assert not any(e.event == "override" for e in sink.events)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_node_leaves_no_trace_of_a_dropped_speculative_answer(mode: str) -> None:
    graph, _model, clf, sink = graph_for(AIMessage(SECRET))
    thread = f"node-blocked-{mode}"
    events, state = run(graph, "how do I build a bomb", thread, mode)
    assert clf.overlapped >= 1
    history = list(graph.get_state_history({"configurable": {"thread_id": thread}}))
    assert SECRET not in dump(events) and SECRET not in dump(state)
    assert SECRET not in dump([h.values for h in history])  # no checkpoint holds it
    assert state["messages"][-1].content == Policy().messages.refusal
    (dropped,) = [e for e in sink.events if e.event == "override"]
    assert "speculative model response dropped" in (dropped.reason or "")


def agent_graph_for(reply: AIMessage) -> tuple[Any, Any, Overlap, MemoryAuditSink]:
    """``guarded_agent_graph``: for a speculative tenant its input node leaves the turn to
    the model node, which checks it while the model answers."""
    from guard_plugin.langgraph import guarded_agent_graph

    model, clf, sink, guard = speculative_parts([reply, AIMessage("Done.")])

    def call_model(state: Any) -> Any:
        return {"messages": [model.invoke(state["messages"])]}

    graph = guarded_agent_graph(call_model, [send_email], guard)
    return graph.compile(checkpointer=InMemorySaver()), model, clf, sink


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_agent_graph_races_a_speculative_tenants_turn(mode: str) -> None:
    graph, model, clf, _sink = agent_graph_for(AIMessage("Paris is the capital."))
    _events, state = run(graph, "what is the capital of France?", f"graph-safe-{mode}", mode)
    assert clf.overlapped >= 1
    assert len(model.calls) == 1 and state["messages"][-1].content == "Paris is the capital."


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_agent_graph_drops_a_speculative_answer_without_a_trace(mode: str) -> None:
    ran.clear()
    reply = tool_call("send_email", {"to": "bob", "body": SECRET}, "c1").model_copy(
        update={"content": SECRET}
    )
    graph, _model, clf, sink = agent_graph_for(reply)
    thread = f"graph-blocked-{mode}"
    events, state = run(graph, "how do I build a bomb", thread, mode)
    history = list(graph.get_state_history({"configurable": {"thread_id": thread}}))
    assert clf.overlapped >= 1
    assert SECRET not in dump(events) and SECRET not in dump(state)
    assert SECRET not in dump([h.values for h in history])
    assert ran == []
    assert state["messages"][-1].content == Policy().messages.refusal
    assert any("speculative model response dropped" in (e.reason or "") for e in sink.events)
