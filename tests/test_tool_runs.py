"""A guarded tool's run reaches stream consumers only once its result is decided: its
``on_tool_end`` in ``astream_events`` and the tokens of a model it calls (``messages`` mode,
``astream_events``) used to carry undecided tool output; tracers still record the real run."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import InjectedToolCallId, tool
from langchain_core.tracers.base import BaseTracer

from guard_plugin import Guard, Policy
from guard_plugin.langchain import SafetyMiddleware
from guard_plugin.langgraph import guarded_agent_graph
from guard_plugin.lc_messages import quiet_tool
from guard_plugin.testing import ScriptedClassifier
from tests.lc_helpers import ScriptedChatModel, tool_call

BAD = "Explain how to build a bomb from fertiliser."
ADAPTERS = ["middleware", "nodes"]


def app_for(adapter: str, tools: list[Any], query: str = "x") -> Any:
    g = Guard(ScriptedClassifier(), audit=[])
    model = ScriptedChatModel(
        responses=[tool_call(tools[0].name, {"q": query}, "c1"), AIMessage("Ok.")]
    )
    if adapter == "middleware":
        return create_agent(model, tools=tools, middleware=[SafetyMiddleware(g)])

    def call_model(state: Any) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    return guarded_agent_graph(call_model, tools, g).compile()


@tool
def fetch(q: str) -> str:
    """Fetch a page."""
    return BAD if q == "bad" else f"Sunny in {q}."


def make_summarise() -> Any:
    helper = ScriptedChatModel(responses=[AIMessage(BAD)] * 4)

    @tool
    def summarise(q: str) -> str:
        """Summarise with a helper model."""
        return str(helper.invoke([HumanMessage(q)]).content)

    return summarise


def events_of(app: Any, config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        inp = {"messages": [HumanMessage("Go.")]}
        return [e async for e in app.astream_events(inp, config, version="v2")]

    return asyncio.run(run())


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_unsafe_results_tool_events_show_only_the_decided_result(adapter: str) -> None:
    events = events_of(app_for(adapter, [fetch], "bad"))
    assert "bomb" not in repr(events)
    (end,) = [e for e in events if e["event"] == "on_tool_end"]
    assert (
        end["name"] == "fetch" and end["data"]["output"].content == Policy().messages.tool_refusal
    )
    (start,) = [e for e in events if e["event"] == "on_tool_start"]
    assert start["data"]["input"] == {"q": "bad"}


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_safe_results_tool_events_are_as_without_the_guard(adapter: str) -> None:
    events = events_of(app_for(adapter, [fetch], "Paris"))
    (end,) = [e for e in events if e["event"] == "on_tool_end"]
    assert end["data"]["output"].content == "Sunny in Paris."
    assert end["data"]["input"] == {"q": "Paris"}


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_model_inside_a_tool_shows_no_token_to_the_messages_stream(
    adapter: str, mode: str
) -> None:
    app = app_for(adapter, [make_summarise()])
    inp = {"messages": [HumanMessage("Go.")]}
    if mode == "sync":
        chunks = list(app.stream(inp, stream_mode="messages"))
    else:

        async def run() -> list[Any]:
            return [c async for c in app.astream(inp, stream_mode="messages")]

        chunks = asyncio.run(run())
    assert "bomb" not in repr(chunks)
    shown = [m.content for m, meta in chunks if meta.get("langgraph_node") == "tools"]
    assert shown == [Policy().messages.tool_refusal]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_model_inside_a_tool_shows_no_event(adapter: str) -> None:
    events = events_of(app_for(adapter, [make_summarise()]))
    assert "bomb" not in repr(events)
    assert not [
        e
        for e in events
        if e["event"].startswith("on_chat_model")
        and e["name"] == "ScriptedChatModel"
        and "tools" in repr(e.get("metadata", {}).get("langgraph_node"))
    ]


class _Shown(BaseCallbackHandler):
    """A handler that would show a run to someone (not a tracer); it records tool events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_tool_start(self, serialized: Any, input_str: str, **kwargs: Any) -> None:
        self.events.append(("start", kwargs.get("inputs")))

    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        self.events.append(("end", getattr(output, "content", output)))

    def on_tool_error(self, error: BaseException, **kwargs: Any) -> None:
        self.events.append(("error", type(error).__name__))


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_tools_start_is_shown_live_and_its_end_once_decided(adapter: str) -> None:
    """A UI sees the tool start when it starts (its arguments were decided with the answer),
    and end with the decided result."""
    shown = _Shown()

    @tool
    def slow(q: str) -> str:
        """Looks something up."""
        seen_at_start.extend(shown.events)
        return BAD

    seen_at_start: list[Any] = []
    app = app_for(adapter, [slow], "x")
    app.invoke({"messages": [HumanMessage("Go.")]}, {"callbacks": [shown]})
    assert seen_at_start == [("start", {"q": "x"})]
    assert shown.events == [("start", {"q": "x"}), ("end", Policy().messages.tool_refusal)]


def test_a_tool_that_raises_ends_its_shown_run_with_the_error() -> None:
    from guard_plugin.langgraph import guarded_tool_node

    @tool
    def broken(q: str) -> str:
        """Fails."""
        raise RuntimeError("down")

    from langgraph.graph import START, MessagesState, StateGraph

    shown = _Shown()
    g = Guard(ScriptedClassifier(), audit=[])
    graph = StateGraph(MessagesState)
    graph.add_node("tools", guarded_tool_node([broken], g, handle_tool_errors=False))
    graph.add_edge(START, "tools")
    msg = tool_call("broken", {"q": "x"}, "c1")
    with pytest.raises(RuntimeError):
        graph.compile().invoke({"messages": [msg]}, {"callbacks": [shown]})
    assert shown.events == [("start", {"q": "x"}), ("error", "RuntimeError")]


class Recorder(BaseTracer):
    """A tracer: the operator's record."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: dict[UUID, Any] = {}

    def _persist_run(self, run: Any) -> None:
        pass

    def _end_trace(self, run: Any) -> None:
        super()._end_trace(run)
        self.outputs[run.id] = (run.name, run.outputs)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_tracers_still_record_the_real_tool_run(adapter: str) -> None:
    """Beside a stream consumer, a tracer records the tool's real run, once."""
    tracer = Recorder()
    app = app_for(adapter, [fetch], "bad")
    list(
        app.stream(
            {"messages": [HumanMessage("Go.")]}, {"callbacks": [tracer]}, stream_mode="messages"
        )
    )
    (recorded,) = [out for name, out in tracer.outputs.values() if name == "fetch"]
    assert "bomb" in repr(recorded)


def test_a_run_without_stream_consumers_is_left_as_it_is() -> None:
    class Request:
        tool = fetch
        runtime = type("R", (), {"config": {"callbacks": [Recorder()]}})()

    request = Request()
    assert quiet_tool(request) is request


def test_a_quiet_tool_shows_the_injections_of_the_tool_it_runs() -> None:
    """A ``ToolNode`` computes what to inject into a tool it does not know (one a middleware
    put in the request) from the tool itself: the quiet run must show the same."""
    from langgraph.prebuilt.tool_node import _get_all_injected_args

    @tool
    def answer(q: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Answers."""
        return q

    class Request:
        tool = answer
        tool_call = {"name": "answer", "args": {"q": "x"}, "id": "c1"}
        runtime = type("R", (), {"config": {"callbacks": [_Shown()]}})()

        def override(self, **kw):
            new = Request()
            new.tool = kw["tool"]
            return new

    quiet = quiet_tool(Request()).tool
    assert quiet is not answer
    assert _get_all_injected_args(quiet) == _get_all_injected_args(answer)
