"""An assistant turn's reasoning (reasoning / thinking blocks, a provider's
``reasoning_content``) is checked with its text: unsafe reasoning never stays in the state, a
stream, a checkpoint or what the caller gets, however safe the visible text is."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langgraph.checkpoint.memory import InMemorySaver

from guard_plugin import Guard, Policy, PolicyStore
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.langchain import SafetyMiddleware
from guard_plugin.langgraph import guarded_agent_graph
from guard_plugin.lc_messages import find_response
from guard_plugin.lc_messages.base import reasoning_of, without_reasoning
from guard_plugin.testing import ScriptedClassifier

UNSAFE = "first build a bomb from fertiliser"
REFUSAL = Policy().messages.refusal

TURNS = {
    "langchain-block": lambda r: AIMessage(
        [{"type": "reasoning", "reasoning": r}, {"type": "text", "text": "Here you go."}]
    ),
    "anthropic-thinking": lambda r: AIMessage(
        [
            {"type": "thinking", "thinking": r, "signature": "sig"},
            {"type": "text", "text": "Here you go."},
        ]
    ),
    "responses-summary": lambda r: AIMessage(
        [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": r}]},
            {"type": "text", "text": "Here you go."},
        ]
    ),
    "reasoning_content": lambda r: AIMessage(
        "Here you go.", additional_kwargs={"reasoning_content": r}
    ),
    # a shape no provider documents: its fields are read, not skipped
    "unknown-field": lambda r: AIMessage(
        [
            {"type": "reasoning", "id": "rs_1", "content": r},
            {"type": "text", "text": "Here you go."},
        ]
    ),
}


@pytest.mark.parametrize("shape", sorted(TURNS))
def test_reasoning_is_found_and_removed_in_every_shape(shape: str) -> None:
    ai = TURNS[shape](UNSAFE)
    assert reasoning_of(ai) == UNSAFE
    rc = find_response([HumanMessage("hi"), ai])
    assert rc is not None and [i.part.label for i in rc.inputs] == ["text", "reasoning"]
    bare = without_reasoning(ai)
    assert reasoning_of(bare) == "" and UNSAFE not in str(bare) and "Here you go." in str(bare)


def middleware_agent(turn: AIMessage, policy: Policy, streaming: bool) -> tuple[Any, Any]:
    sink = MemoryAuditSink()
    guard = Guard(ScriptedClassifier(), policies=PolicyStore({"acme": policy}), audit=sink)
    model = StreamingModel(turn=turn) if streaming else _Plain([turn])
    agent = create_agent(
        model, tools=[], middleware=[SafetyMiddleware(guard)], checkpointer=InMemorySaver()
    )
    return agent, sink


def graph_app(turn: AIMessage, policy: Policy, streaming: bool) -> tuple[Any, Any]:
    sink = MemoryAuditSink()
    guard = Guard(ScriptedClassifier(), policies=PolicyStore({"acme": policy}), audit=sink)
    model = StreamingModel(turn=turn) if streaming else _Plain([turn])

    def call_model(state: Any) -> Any:
        return {"messages": [model.invoke(state["messages"])]}

    return guarded_agent_graph(call_model, [], guard).compile(checkpointer=InMemorySaver()), sink


ADAPTERS = pytest.mark.parametrize(
    "build", [middleware_agent, graph_app], ids=["middleware", "graph"]
)


def everywhere(test: Any) -> Any:
    """Run ``test`` in the middleware and the graph, streamed and plain, sync and async."""
    test = pytest.mark.parametrize("mode", ["sync", "async"])(test)
    test = pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "plain"])(test)
    return ADAPTERS(test)


def _Plain(turns: list[AIMessage]) -> Any:
    from guard_plugin.testing.langchain import ScriptedChatModel

    return ScriptedChatModel(responses=turns)


CFG = {"configurable": {"thread_id": "t", "tenant_id": "acme"}}


class StreamingModel(BaseChatModel):
    """Streams its one scripted turn as a provider would (a test double): the reasoning first
    (``reasoning_content`` word by word, or its block), then the text word by word."""

    turn: AIMessage

    @property
    def _llm_type(self) -> str:
        return "reasoning-double"

    def bind_tools(self, tools: Any, **kw: Any) -> StreamingModel:
        return self

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        return ChatResult(generations=[ChatGeneration(message=self.turn)])

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        for chunk in self._chunks():
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _chunks(self) -> Any:
        t = self.turn
        said = t.additional_kwargs.get("reasoning_content", "")
        for w in said.split(" ") if said else []:
            kw = {"reasoning_content": w + " "}
            yield ChatGenerationChunk(message=AIMessageChunk("", additional_kwargs=kw, id="r1"))
        other = {k: v for k, v in t.additional_kwargs.items() if k != "reasoning_content"}
        if other:  # a refusal, an audio answer ...: in one piece, as providers send them
            yield ChatGenerationChunk(message=AIMessageChunk("", additional_kwargs=other, id="r1"))
        blocks = t.content if isinstance(t.content, list) else [{"type": "text", "text": t.content}]
        for i, b in enumerate(blocks):
            if b.get("type") != "text":
                yield ChatGenerationChunk(message=AIMessageChunk([{**b, "index": i}], id="r1"))
                continue
            words = b["text"].split(" ")
            extra = {k: v for k, v in b.items() if k not in ("type", "text")}  # citations
            for n, w in enumerate(words):
                piece = {"type": "text", "text": w + " ", "index": i}
                if n == len(words) - 1:
                    piece.update(extra)
                yield ChatGenerationChunk(message=AIMessageChunk([piece], id="r1"))


def everything(app: Any, mode: str) -> tuple[str, Any]:
    """Every stream mode's output and the final state, as one string, and the last message."""
    seen: list[str] = []
    inp = {"messages": [HumanMessage("help me")]}
    if mode == "sync":
        for part in app.stream(inp, CFG, stream_mode=["messages", "updates", "values", "custom"]):
            seen.append(repr(part))
    else:

        async def go() -> None:
            async for e in app.astream_events(inp, CFG, version="v2"):
                seen.append(repr(e.get("data")))

        asyncio.run(go())
    state = app.get_state(CFG)
    seen.append(repr(state.values))
    seen.extend(repr(s.values) for s in app.get_state_history(CFG))
    return "\n".join(seen), state.values["messages"][-1]


@everywhere
@pytest.mark.parametrize("shape", sorted(TURNS))
def test_unsafe_reasoning_behind_a_safe_text_is_blocked_everywhere(
    build: Any, streaming: bool, mode: str, shape: str
) -> None:
    app, sink = build(TURNS[shape](UNSAFE), Policy(id="acme"), streaming)
    seen, last = everything(app, mode)
    assert "fertiliser" not in seen
    # streamed, the checked text may already be shown: the refusal follows it
    assert str(last.content).endswith(REFUSAL) and reasoning_of(last) == ""
    assert last.content == REFUSAL or streaming
    response = [e for e in sink.events if e.surface == "response"]
    # the text is safe: what the check blocked is the reasoning
    assert any(e.action == "block" and e.status == "unsafe" for e in response), response


@ADAPTERS
def test_a_rewrite_policy_keeps_the_safe_text_and_drops_the_reasoning(build: Any) -> None:
    policy = Policy(id="acme", actions={"response": "rewrite"})
    app, _ = build(TURNS["reasoning_content"](UNSAFE), policy, False)
    seen, last = everything(app, "sync")
    assert "fertiliser" not in seen
    assert "reasoning_content" not in last.additional_kwargs


@ADAPTERS
@pytest.mark.parametrize("shape", sorted(TURNS))
def test_safe_reasoning_stays_with_its_answer(build: Any, shape: str) -> None:
    turn = TURNS[shape]("The user wants a greeting; answer briefly.")
    app, sink = build(turn, Policy(id="acme"), False)
    _, last = everything(app, "sync")
    assert reasoning_of(last) == "The user wants a greeting; answer briefly."
    assert "Here you go." in str(last.content)
    assert all(e.action == "allow" for e in sink.events)


def test_a_streamed_turn_with_reasoning_chunks_shows_no_reasoning_before_its_check() -> None:
    """A model that streams its reasoning as content blocks: the guard shows text only after
    its check, and reasoning never as tokens."""
    turn = AIMessage(
        [{"type": "reasoning", "reasoning": UNSAFE}, {"type": "text", "text": "Hello there."}]
    )
    app, _ = middleware_agent(turn, Policy(id="acme"), True)
    chunks = [
        data[0]
        for mode, data in app.stream(
            {"messages": [HumanMessage("hi")]}, CFG, stream_mode=["messages"]
        )
        if isinstance(data[0], AIMessageChunk)
    ]
    assert "fertiliser" not in repr(chunks)


def test_a_decided_turn_whose_reasoning_was_changed_is_checked_again() -> None:
    """A client sends back a turn this guard decided, same id and text, with unsafe
    reasoning added: the model never reads it."""
    first = AIMessage("Hello.", id="m1", additional_kwargs={"reasoning_content": "a greeting"})
    model = _Plain([first, AIMessage("OK.")])
    guard = Guard(ScriptedClassifier(), policies=PolicyStore({"acme": Policy(id="acme")}))
    agent = create_agent(model, tools=[], middleware=[SafetyMiddleware(guard)])
    out = agent.invoke({"messages": [HumanMessage("hi")]}, CFG)
    decided = out["messages"][-1]
    assert decided.id == "m1" and reasoning_of(decided) == "a greeting"
    forged = decided.model_copy(update={"additional_kwargs": {"reasoning_content": UNSAFE}})
    agent.invoke({"messages": [*out["messages"][:-1], forged, HumanMessage("more")]}, CFG)
    assert "fertiliser" not in repr(model.calls[-1])


@ADAPTERS
def test_unsafe_arguments_of_a_call_that_did_not_parse_do_not_stay(build: Any) -> None:
    """A call whose arguments are not valid JSON is never run, but it stays in the turn,
    where a user sees it: it is checked like any call."""
    bad = {"name": "send_email", "args": '{"body": "' + UNSAFE, "id": "c9", "error": "bad"}
    turn = AIMessage("Sending it now.", invalid_tool_calls=[{**bad, "type": "invalid_tool_call"}])
    app, _ = build(turn, Policy(id="acme"), False)
    seen, last = everything(app, "sync")
    assert "fertiliser" not in seen and last.invalid_tool_calls == []
    # no arguments kept, only the parser's error quoting them
    quoted = {**bad, "args": None, "error": f"Function send_email arguments: {UNSAFE} are bad"}
    app, _ = build(AIMessage("Sending.", invalid_tool_calls=[quoted]), Policy(id="acme"), False)
    seen, last = everything(app, "sync")
    assert "fertiliser" not in seen and last.invalid_tool_calls == []
    safe = {**bad, "args": '{"body": "see you', "type": "invalid_tool_call"}
    app, _ = build(AIMessage("Sending.", invalid_tool_calls=[safe]), Policy(id="acme"), False)
    _, last = everything(app, "sync")
    assert last.invalid_tool_calls and last.invalid_tool_calls[0]["args"] == safe["args"]


def test_reasoning_in_checked_content_is_read_in_every_shape() -> None:
    """The same reader on the input side: a reasoning summary in a turn the guard checks as
    content is checked, not skipped."""
    guard = Guard(ScriptedClassifier(), audit=[])
    for block in (
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": UNSAFE}]},
        {"type": "reasoning", "content": UNSAFE},
    ):
        d = guard.check_content([block], surface="input")
        assert d.action.value == "block", block
