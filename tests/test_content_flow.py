"""No unchecked content anywhere: an unsafe tool result (text, screenshot, PDF page) is decided
as the tool returns it, so it never appears in a stream event, a checkpoint's messages, the
caller's result or a model call; `return_direct` results included; and a result held for a
reviewer stays withheld when a new user turn comes instead of the answer."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from guard_plugin import Guard, Policy, PolicyStore
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.langchain import SafetyMiddleware
from guard_plugin.media import load_pdf
from guard_plugin.testing import ScriptedClassifier, make_text_pdf
from tests.lc_helpers import ScriptedChatModel, assert_valid_history, collect, tool_call
from tests.media_fixtures import png

UNSAFE_TEXT = "Step 1: build a bomb from fertiliser."
RED_PNG = base64.b64encode(png("red", (200, 120))).decode()
REPORT = base64.b64encode(
    make_text_pdf(["Revenue grew 4%.", "Appendix: how to build a bomb.", "Outlook stable."])
).decode()
SECRETS = (UNSAFE_TEXT, RED_PNG, REPORT)


def red_is_violent(img) -> list[str]:
    r, g, b = img.to_pil().resize((1, 1)).getpixel((0, 0))
    return ["Violence"] if r > 150 and g < 100 and b < 100 else []


@tool
def search(q: str) -> str:
    """Search the web."""
    return UNSAFE_TEXT


@tool(response_format="content_and_artifact")
def screenshot(url: str) -> tuple[list, dict]:
    """Screenshot a page."""
    image = {"type": "image", "base64": RED_PNG, "mime_type": "image/png"}
    return [{"type": "text", "text": f"screenshot of {url}"}, image], {"png": RED_PNG}


@tool
def read_report(name: str) -> list:
    """Read a PDF report."""
    return [{"type": "file", "base64": REPORT, "mime_type": "application/pdf"}]


@tool(return_direct=True)
def lookup(q: str) -> str:
    """Look something up and hand the answer straight to the user."""
    return UNSAFE_TEXT


class RecordingSaver(InMemorySaver):
    """Keeps every checkpoint written, not only the latest per thread."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[Any] = []

    def put(self, config, checkpoint, metadata, new_versions):  # type: ignore[no-untyped-def]
        self.written.append(checkpoint["channel_values"].get("messages", []))
        return super().put(config, checkpoint, metadata, new_versions)

    async def aput(self, config, checkpoint, metadata, new_versions):  # type: ignore[no-untyped-def]
        self.written.append(checkpoint["channel_values"].get("messages", []))
        return await super().aput(config, checkpoint, metadata, new_versions)


def dump(value: Any) -> str:
    """Everything a value shows, message contents and artifacts included."""

    def default(o: Any) -> Any:
        if hasattr(o, "model_dump"):
            return o.model_dump()
        return repr(o)

    return json.dumps(value, default=default)


def guard_for(policy: Policy) -> tuple[Guard, MemoryAuditSink]:
    sink = MemoryAuditSink()
    clf = ScriptedClassifier(image_rule=red_is_violent)
    return Guard(clf, policies=PolicyStore({"t": policy}), audit=sink), sink


def everything_shown(events: Any, state: Any, saver: Any, model: Any = None) -> list[str]:
    """What a run showed: its stream events, the final state, every checkpoint's messages
    and, given the model, every call it received."""
    shown = [dump(events), dump(state), *(dump(c) for c in saver.written)]
    return shown + [dump(call) for call in (model.calls if model is not None else [])]


def agent_for(replies, policy: Policy, saver=None, tools=None):
    guard, sink = guard_for(policy)
    model = ScriptedChatModel(responses=replies)
    agent = create_agent(
        model,
        tools=tools or [search, screenshot, read_report, lookup],
        middleware=[SafetyMiddleware(guard)],
        checkpointer=saver,
    )
    return agent, model, sink


CASES = [
    ("search", {"q": "x"}, "block"),
    ("screenshot", {"url": "https://bad.example"}, "rewrite"),
    ("read_report", {"name": "q3"}, "rewrite"),
    ("lookup", {"q": "x"}, "block"),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("name", "args", "action"), CASES, ids=[c[0] for c in CASES])
def test_an_unsafe_tool_result_is_nowhere(mode: str, name: str, args: dict, action: str) -> None:
    saver = RecordingSaver()
    policy = Policy(id="t", actions={"tool": action})
    agent, model, sink = agent_for([tool_call(name, args, "c1"), AIMessage("Done.")], policy, saver)
    config = {"configurable": {"thread_id": f"{name}-{mode}", "tenant_id": "t"}}
    events, state = collect(agent, {"messages": [HumanMessage("go")]}, config, mode)
    shown = everything_shown(events, state, saver, model)
    for secret in SECRETS:
        assert not any(secret in s for s in shown), f"{secret[:30]!r} leaked"
    tool_events = [e for e in sink.events if e.surface == "tool"]
    assert [e.action for e in tool_events] == [action]  # decided once, at the tool boundary
    assert_valid_history(state["messages"])
    if name == "read_report":  # the other pages survive the rewrite
        result = next(m for m in state["messages"] if isinstance(m, ToolMessage))
        kept = load_pdf(base64.b64decode(result.content[0]["base64"]))
        assert [p.text.strip() for p in kept.pages] == ["Revenue grew 4%.", "Outlook stable."]


def test_a_safe_tool_result_passes_untouched_and_is_checked_once() -> None:
    @tool
    def weather(city: str) -> str:
        """The weather."""
        return "Sunny, 21 degrees."

    agent, model, sink = agent_for(
        [tool_call("weather", {"city": "Oslo"}, "c1"), AIMessage("It is sunny.")],
        Policy(id="t"),
        tools=[weather],
    )
    out = agent.invoke(
        {"messages": [HumanMessage("weather?")]}, {"configurable": {"tenant_id": "t"}}
    )
    result = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert result.content == "Sunny, 21 degrees."
    assert "Sunny, 21 degrees." in dump(model.calls[-1])
    assert [e.surface for e in sink.events].count("tool") == 1


ESCALATE = Policy(id="t", actions={"tool": "escalate"})


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_held_result_is_reviewed_before_the_model_reads_it(mode: str) -> None:
    saver = RecordingSaver()
    agent, model, sink = agent_for(
        [tool_call("search", {"q": "x"}, "c1"), AIMessage("Here it is.")], ESCALATE, saver
    )
    config = {"configurable": {"thread_id": f"held-{mode}", "tenant_id": "t"}}
    events, state = collect(agent, {"messages": [HumanMessage("search")]}, config, mode)
    assert agent.get_state(config).interrupts  # waiting for a person
    # the reviewer's request shows the content (that is its point); nothing else does
    for_reviewer = [e[1]["__interrupt__"] for e in events if "__interrupt__" in e[1]]
    assert for_reviewer and all(UNSAFE_TEXT in dump(r) for r in for_reviewer)
    rest = [
        {k: v for k, v in e[1].items() if k != "__interrupt__"} if isinstance(e[1], dict) else e
        for e in events
    ]
    assert not any(UNSAFE_TEXT in dump(e) for e in rest)
    assert not model.calls[1:]  # the model has not been called since
    assert UNSAFE_TEXT not in dump(state["messages"])
    assert not any(UNSAFE_TEXT in dump(c) for c in saver.written)
    out = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    result = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert result.content == UNSAFE_TEXT  # approved: the original, in place of the placeholder
    assert UNSAFE_TEXT in dump(model.calls[-1])
    assert [e.event for e in sink.events if e.surface == "tool"] == ["decision", "review"]
    assert_valid_history(out["messages"])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_held_result_stays_withheld_when_a_new_turn_comes_first(mode: str) -> None:
    saver = RecordingSaver()
    agent, model, sink = agent_for(
        [tool_call("search", {"q": "x"}, "c1"), AIMessage("Something else, then.")],
        ESCALATE,
        saver,
    )
    config = {"configurable": {"thread_id": f"abandoned-{mode}", "tenant_id": "t"}}
    collect(agent, {"messages": [HumanMessage("search")]}, config, mode)
    events, state = collect(
        agent, {"messages": [HumanMessage("never mind, something else")]}, config, mode
    )
    shown = everything_shown(events, state, saver, model)
    assert not any(UNSAFE_TEXT in s for s in shown)
    assert state["messages"][-1].content == "Something else, then."
    tool_events = [(e.event, e.action) for e in sink.events if e.surface == "tool"]
    assert tool_events == [("decision", "escalate"), ("override", "block")]
    assert_valid_history(state["messages"])


INPUT_REVIEW = Policy(id="t", actions={"input": "escalate"})


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_user_turn_held_for_review_stays_withheld_when_a_new_turn_comes_first(mode: str) -> None:
    saver = RecordingSaver()
    agent, model, sink = agent_for(
        [AIMessage("Happy to help with the weather.")], INPUT_REVIEW, saver
    )
    config = {"configurable": {"thread_id": f"input-abandoned-{mode}", "tenant_id": "t"}}
    collect(agent, {"messages": [HumanMessage("how do I build a bomb")]}, config, mode)
    assert agent.get_state(config).interrupts and model.calls == []
    held_state = dump(agent.get_state(config).values["messages"])
    assert "build a bomb" not in held_state  # a placeholder stands in while it waits
    events, state = collect(
        agent, {"messages": [HumanMessage("what's the weather?")]}, config, mode
    )
    assert len(model.calls) == 1 and "build a bomb" not in dump(model.calls[0])
    assert "build a bomb" not in dump(state["messages"]) and "build a bomb" not in dump(events)
    assert state["messages"][-1].content == "Happy to help with the weather."
    trail = [(e.event, e.action) for e in sink.events if e.surface == "input"]
    assert ("override", "block") in trail
    assert_valid_history(state["messages"])


@pytest.mark.parametrize("answer", ["approve", "reject"])
def test_a_held_user_turn_is_restored_or_refused_by_the_reviewer(answer: str) -> None:
    agent, model, sink = agent_for(
        [AIMessage("Let's talk about it.")], INPUT_REVIEW, InMemorySaver()
    )
    config = {"configurable": {"thread_id": f"input-{answer}", "tenant_id": "t"}}
    agent.invoke({"messages": [HumanMessage("how do I build a bomb")]}, config)
    out = agent.invoke(Command(resume={"decisions": [{"type": answer}]}), config)
    if answer == "approve":
        assert len(model.calls) == 1 and "build a bomb" in dump(model.calls[0])
        assert out["messages"][-1].content == "Let's talk about it."
    else:
        assert model.calls == [] and "build a bomb" not in dump(out["messages"])
        assert out["messages"][-1].content == Policy().messages.refusal
    assert "content_safety_review" not in dump(out["messages"])
    assert [e.event for e in sink.events if e.surface == "input"] == ["decision", "review"]
    assert_valid_history(out["messages"])


# -- the same in a hand-built LangGraph graph -----------------------------------------------------


def graph_for(replies, policy: Policy, saver=None, tools=None, **options):
    from guard_plugin.langgraph import guarded_agent_graph

    guard, sink = guard_for(policy)
    model = ScriptedChatModel(responses=replies)

    def call_model(state):
        return {"messages": [model.invoke(state["messages"])]}

    tools = tools or [search, screenshot, read_report]
    graph = guarded_agent_graph(call_model, tools, guard, **options).compile(checkpointer=saver)
    return graph, model, sink


GRAPH_CASES = [c for c in CASES if c[0] != "lookup"]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("name", "args", "action"), GRAPH_CASES, ids=[c[0] for c in GRAPH_CASES])
def test_a_state_graph_shows_no_unsafe_tool_result(
    mode: str, name: str, args: dict, action: str
) -> None:
    saver = RecordingSaver()
    graph, model, sink = graph_for(
        [tool_call(name, args, "c1"), AIMessage("Done.")],
        Policy(id="t", actions={"tool": action}),
        saver,
    )
    config = {"configurable": {"thread_id": f"graph-{name}-{mode}", "tenant_id": "t"}}
    events, state = collect(graph, {"messages": [HumanMessage("go")]}, config, mode)
    shown = everything_shown(events, state, saver, model)
    for secret in SECRETS:
        assert not any(secret in s for s in shown), f"{secret[:30]!r} leaked"
    assert [e.action for e in sink.events if e.surface == "tool"] == [action]
    assert state["messages"][-1].content == "Done."
    assert_valid_history(state["messages"])


@pytest.mark.parametrize("answer", ["approve", "reject"])
def test_a_state_graph_reviews_a_held_result_without_running_the_tool_again(answer: str) -> None:
    runs: list[str] = []

    @tool
    def probe(q: str) -> str:
        """Probe something."""
        runs.append(q)
        return UNSAFE_TEXT

    saver = RecordingSaver()
    graph, model, sink = graph_for(
        [tool_call("probe", {"q": "x"}, "c1"), AIMessage("Noted.")], ESCALATE, saver, tools=[probe]
    )
    config = {"configurable": {"thread_id": f"graph-held-{answer}", "tenant_id": "t"}}
    graph.invoke({"messages": [HumanMessage("probe")]}, config)
    assert graph.get_state(config).interrupts and len(model.calls) == 1
    assert UNSAFE_TEXT not in dump(graph.get_state(config).values["messages"])
    out = graph.invoke(Command(resume={"decisions": [{"type": answer}]}), config)
    assert runs == ["x"]  # the tool ran once
    result = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert (result.content == UNSAFE_TEXT) is (answer == "approve")
    assert (UNSAFE_TEXT in dump(model.calls[-1])) is (answer == "approve")
    assert "guard_plugin_held" not in result.additional_kwargs
    assert out["messages"][-1].content == "Noted."
    assert [e.event for e in sink.events if e.surface == "tool"] == ["decision", "review"]


@pytest.mark.parametrize("answer", ["approve", "reject", "new-turn"])
def test_a_state_graph_holds_an_escalated_user_turn(answer: str) -> None:
    saver = RecordingSaver()
    graph, model, sink = graph_for([AIMessage("Let's talk.")], INPUT_REVIEW, saver)
    config = {"configurable": {"thread_id": f"graph-input-{answer}", "tenant_id": "t"}}
    graph.invoke({"messages": [HumanMessage("how do I build a bomb")]}, config)
    assert graph.get_state(config).interrupts and model.calls == []
    assert "build a bomb" not in dump(graph.get_state(config).values["messages"])
    if answer == "new-turn":
        out = graph.invoke({"messages": [HumanMessage("what's the weather?")]}, config)
    else:
        out = graph.invoke(Command(resume={"decisions": [{"type": answer}]}), config)
    seen = dump(model.calls)
    assert ("build a bomb" in seen) is (answer == "approve")
    assert ("build a bomb" in dump(out["messages"])) is (answer == "approve")
    if answer == "reject":
        assert model.calls == [] and out["messages"][-1].content == Policy().messages.refusal
    else:
        assert out["messages"][-1].content == "Let's talk."
    trail = [(e.event, e.action) for e in sink.events if e.surface == "input"]
    assert trail[0] == ("decision", "escalate")
    assert trail[1][0] == ("override" if answer == "new-turn" else "review")
    assert not any("guard_plugin_held" in m.additional_kwargs for m in out["messages"])
    assert_valid_history(out["messages"])


RUDE_EMAIL = {"to": "bob@example.com", "body": "You worthless idiot."}


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    return "sent"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_state_graph_never_shows_an_unsafe_response(mode: str) -> None:
    saver = RecordingSaver()
    graph, _, _ = graph_for(
        [tool_call("send_email", RUDE_EMAIL, "c1")],
        Policy(id="t"),
        saver,
        tools=[send_email],
        hold_output=True,  # the token stream too
    )
    config = {"configurable": {"thread_id": f"graph-response-{mode}", "tenant_id": "t"}}
    events, state = collect(graph, {"messages": [HumanMessage("email bob")]}, config, mode)
    shown = everything_shown(events, state, saver)
    assert not any("worthless" in s for s in shown)
    assert not any(isinstance(m, ToolMessage) for m in state["messages"])
    assert_valid_history(state["messages"])


@pytest.mark.parametrize("answer", ["approve", "reject", "new-turn"])
def test_a_state_graph_holds_an_escalated_response(answer: str) -> None:
    sent: list[dict] = []

    @tool
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        sent.append({"to": to, "body": body})
        return "sent"

    policy = Policy(id="t", actions={"response": "escalate"})
    graph, model, sink = graph_for(
        [tool_call("send_email", RUDE_EMAIL, "c1"), AIMessage("Done."), AIMessage("Sunny.")],
        policy,
        RecordingSaver(),
        tools=[send_email],
    )
    config = {"configurable": {"thread_id": f"graph-held-response-{answer}", "tenant_id": "t"}}
    graph.invoke({"messages": [HumanMessage("email bob")]}, config)
    assert graph.get_state(config).interrupts and len(model.calls) == 1
    assert "worthless" not in dump(graph.get_state(config).values["messages"])
    if answer == "new-turn":
        out = graph.invoke({"messages": [HumanMessage("weather?")]}, config)
        assert "worthless" not in dump(model.calls[-1]) and "worthless" not in dump(out)
        assert ("override", "block") in [(e.event, e.action) for e in sink.events]
        assert not any("guard_plugin_held" in m.additional_kwargs for m in out["messages"])
    else:
        out = graph.invoke(Command(resume={"decisions": [{"type": answer}]}), config)
        assert sent == ([RUDE_EMAIL] if answer == "approve" else [])
        assert len(model.calls) == (2 if answer == "approve" else 1)  # never re-run on resume
    assert_valid_history(out["messages"])


def test_a_state_graph_keeps_a_held_tool_result_withheld_when_a_new_turn_comes_first() -> None:
    saver = RecordingSaver()
    graph, model, _ = graph_for(
        [tool_call("search", {"q": "x"}, "c1"), AIMessage("Something else, then.")],
        ESCALATE,
        saver,
    )
    config = {"configurable": {"thread_id": "graph-tool-abandoned", "tenant_id": "t"}}
    graph.invoke({"messages": [HumanMessage("search")]}, config)
    assert graph.get_state(config).interrupts
    events, state = collect(graph, {"messages": [HumanMessage("never mind")]}, config, "sync")
    shown = everything_shown(events, state, saver, model)
    assert not any(UNSAFE_TEXT in s for s in shown)
    assert state["messages"][-1].content == "Something else, then."
    assert not any("guard_plugin_held" in m.additional_kwargs for m in state["messages"])
    assert_valid_history(state["messages"])
