"""Callback handler, LCEL runnable guard, streaming hold-back and regeneration."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda

from guard_plugin import Action, Guard, GuardBlocked, Policy
from guard_plugin.audit import MemoryAuditSink
from guard_plugin.langchain import SafetyCallbackHandler, SafetyMiddleware, guard_runnable
from guard_plugin.testing import ScriptedClassifier
from tests.lc_helpers import ScriptedChatModel


def chain(reply: str):
    model = GenericFakeChatModel(messages=iter([AIMessage(reply)]))
    return ChatPromptTemplate.from_messages([("human", "{q}")]) | model


def guard(**kw) -> Guard:
    return Guard(ScriptedClassifier(), audit=MemoryAuditSink(), **kw)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_callback_stops_unsafe_input_and_output_and_passes_safe(mode: str) -> None:
    def invoke(c, q):
        handler = SafetyCallbackHandler(guard())
        cfg = {"callbacks": [handler]}
        return c.invoke({"q": q}, cfg) if mode == "sync" else asyncio.run(c.ainvoke({"q": q}, cfg))

    assert invoke(chain("Sure, here it is."), "hello").content == "Sure, here it is."
    with pytest.raises(GuardBlocked) as info:
        invoke(chain("never"), "how do I build a bomb")
    assert info.value.decision.surface.value == "input"
    with pytest.raises(GuardBlocked) as info:
        invoke(chain("you worthless idiot"), "hello")
    assert info.value.decision.surface.value == "response"


def test_callback_maps_rewrite_and_escalate_to_block_unless_approved() -> None:
    g = guard(policies=Policy(actions={"input": "rewrite"}))
    with pytest.raises(GuardBlocked) as info:
        chain("x").invoke({"q": "build a bomb"}, {"callbacks": [SafetyCallbackHandler(g)]})
    assert info.value.decision.action is Action.REWRITE
    esc = guard(policies=Policy(actions={"input": "escalate"}))
    seen = []
    approve = SafetyCallbackHandler(esc, escalation_handler=lambda d: seen.append(d) or True)
    assert chain("ok").invoke({"q": "build a bomb"}, {"callbacks": [approve]}).content == "ok"
    assert seen and seen[0].action is Action.ESCALATE
    (review,) = [e for e in esc.audit.events if e.event == "review"]
    assert (review.review, review.action) == ("approve", "allow")
    assert review.request_id == seen[0].request_id

    def broken(d):
        raise RuntimeError("review service down")

    with pytest.raises(GuardBlocked):  # a failing handler blocks
        chain("ok").invoke(
            {"q": "build a bomb"},
            {"callbacks": [SafetyCallbackHandler(esc, escalation_handler=broken)]},
        )
    assert [e.review for e in esc.audit.events if e.event == "review"] == ["approve", "reject"]


def test_callback_checks_tool_outputs() -> None:
    from langchain_core.tools import tool

    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return "Ransomware kits for sale here"

    with pytest.raises(GuardBlocked) as info:
        lookup.invoke({"q": "x"}, {"callbacks": [SafetyCallbackHandler(guard())]})
    assert info.value.decision.surface.value == "tool"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_runnable_guard_both_sides(mode: str) -> None:
    g = guard()
    model = RunnableLambda(
        lambda p: AIMessage("you worthless idiot" if "insult" in p.to_string() else "fine")
    )
    pipeline = (
        guard_runnable(g, surface="input")
        | ChatPromptTemplate.from_messages([("human", "{q}")])
        | model
        | guard_runnable(g, surface="response")
    )

    def call(q):
        return (
            pipeline.invoke({"q": q}) if mode == "sync" else asyncio.run(pipeline.ainvoke({"q": q}))
        )

    assert call("hello").content == "fine"
    with pytest.raises(GuardBlocked):
        call("insult me")
    only_in = guard_runnable(g, surface="input")
    with pytest.raises(GuardBlocked):
        only_in.invoke("how to build a bomb")
    assert only_in.invoke([HumanMessage("hi")])[0].content == "hi"


HIDDEN_INPUTS = {
    "history": lambda text: {"question": "continue", "history": [HumanMessage(text)]},
    "nested_variables": lambda text: {"question": "hi", "extra": {"note": text}},
    "list_of_documents": lambda text: {"question": "hi", "docs": ["fine", text]},
    "message_list": lambda text: [HumanMessage(text), AIMessage("Sure."), HumanMessage("go on")],
    "messages_key": lambda text: {"messages": [HumanMessage(text), HumanMessage("go on")]},
    "assistant_turn": lambda text: [HumanMessage("hi"), AIMessage(text), HumanMessage("go on")],
    "prompt_value": lambda text: ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{q}")]
    ).invoke({"q": "go on", "history": [HumanMessage(text)]}),
    "message_as_variable": lambda text: {"question": HumanMessage(text)},
    "tuples": lambda text: [("human", text), ("human", "go on")],
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("shape", sorted(HIDDEN_INPUTS))
def test_the_input_guard_checks_everything_its_input_holds(shape: str, mode: str) -> None:
    """Whatever the chain is sent (history in a prompt variable, earlier turns of a message
    list, a prompt value, nested variables), every message and every text is checked."""
    r = guard_runnable(guard(), surface="input")

    def call(value):
        return r.invoke(value) if mode == "sync" else asyncio.run(r.ainvoke(value))

    with pytest.raises(GuardBlocked):
        call(HIDDEN_INPUTS[shape]("how to build a bomb"))
    safe = HIDDEN_INPUTS[shape]("what is the capital of France")
    assert call(safe) is safe


def test_runnable_tenant_from_config() -> None:
    from guard_plugin import PolicyStore

    g = Guard(
        ScriptedClassifier(),
        policies=PolicyStore({"ops": Policy(id="ops", categories_off=["Profanity"])}),
        audit=[],
    )
    r = guard_runnable(g)
    with pytest.raises(GuardBlocked):
        r.invoke("damn printer")
    assert r.invoke("damn printer", {"configurable": {"tenant_id": "ops"}}) == "damn printer"


# -- streaming ------------------------------------------------------------------------------------


class StreamingModel(GenericFakeChatModel):
    def bind_tools(self, tools, **kw):
        return self


def streamed_text(agent, q: str) -> str:
    out = []
    for chunk, _meta in agent.stream({"messages": [HumanMessage(q)]}, stream_mode="messages"):
        if isinstance(chunk, AIMessage) or getattr(chunk, "type", "") in ("ai", "AIMessageChunk"):
            out.append(chunk.content if isinstance(chunk.content, str) else "")
    return "".join(out)


def test_streaming_shows_nothing_unchecked_with_or_without_hold() -> None:
    unsafe = "you worthless idiot"
    streamed = create_agent(
        StreamingModel(messages=iter([AIMessage(unsafe)])),
        tools=[],
        middleware=[SafetyMiddleware(guard())],
    )
    text = streamed_text(streamed, "hi")  # window by window, each shown once it passed
    assert "worthless" not in text and text == Policy().messages.refusal
    held = create_agent(
        StreamingModel(messages=iter([AIMessage(unsafe)])),
        tools=[],
        middleware=[SafetyMiddleware(guard(), hold_output=True)],
    )
    text = streamed_text(held, "hi")
    assert "worthless" not in text and Policy().messages.refusal in text


def test_hold_output_passes_safe_text_whole() -> None:
    held = create_agent(
        StreamingModel(messages=iter([AIMessage("The answer is 4.")])),
        tools=[],
        middleware=[SafetyMiddleware(guard(), hold_output=True)],
    )
    assert streamed_text(held, "2+2?") == "The answer is 4."


def test_regenerate_once_then_recheck() -> None:
    g = guard(policies=Policy(actions={"response": "rewrite"}))
    model = ScriptedChatModel(
        responses=[
            AIMessage("you worthless idiot"),
            AIMessage("Let's keep it friendly: here is a summary."),
        ]
    )
    agent = create_agent(
        model, tools=[], middleware=[SafetyMiddleware(g, regenerate_on_rewrite=True)]
    )
    out = agent.invoke({"messages": [HumanMessage("hi")]})
    assert out["messages"][-1].content == "Let's keep it friendly: here is a summary."
    assert len(model.calls) == 2 and "withheld" in str(model.calls[1][0].content)
    model2 = ScriptedChatModel(responses=[AIMessage("you idiot"), AIMessage("still an idiot")])
    agent2 = create_agent(
        model2, tools=[], middleware=[SafetyMiddleware(g, regenerate_on_rewrite=True)]
    )
    assert (
        agent2.invoke({"messages": [HumanMessage("hi")]})["messages"][-1].content
        == Policy().messages.refusal
    )


def test_a_regeneration_still_unsafe_is_blocked_and_the_override_audited() -> None:
    g = guard(policies=Policy(actions={"response": "rewrite"}))
    model = ScriptedChatModel(responses=[AIMessage("you idiot"), AIMessage("still an idiot")])
    agent = create_agent(
        model, tools=[], middleware=[SafetyMiddleware(g, regenerate_on_rewrite=True)]
    )
    agent.invoke({"messages": [HumanMessage("hi")]})
    response = [e for e in g.audit.events if e.surface == "response"]
    events = [(e.event, e.action) for e in response]
    assert events == [("decision", "rewrite"), ("decision", "rewrite"), ("override", "block")]
    override = response[-1]
    assert override.request_id == response[1].request_id
    assert override.reason == "still to be rewritten after one regeneration"


def test_an_escalation_after_regeneration_goes_to_a_person() -> None:
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    @tool
    def noop() -> str:
        """Does nothing."""
        return "ok"

    policy = Policy(
        actions={"response": {"default": "rewrite", "categories": {"Threat": "escalate"}}}
    )
    g = guard(policies=policy)
    model = ScriptedChatModel(
        responses=[AIMessage("you idiot"), AIMessage("I will kill you"), AIMessage("unused")]
    )
    agent = create_agent(
        model,
        tools=[noop],
        middleware=[SafetyMiddleware(g, regenerate_on_rewrite=True)],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "regen-escalate"}}
    out = agent.invoke({"messages": [HumanMessage("hi")]}, config)
    assert "__interrupt__" in out  # not silently blocked: a person decides
    out = agent.invoke(Command(resume={"decisions": [{"type": "reject"}]}), config)
    assert "kill" not in str(out["messages"][-1].content)
    assert [e.event for e in g.audit.events][-1] == "review"


def test_a_block_is_not_logged_as_a_callback_error(caplog) -> None:
    """LangChain logs every exception a handler raises; a GuardBlocked is the policy working."""
    import logging

    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.prompts import ChatPromptTemplate

    from guard_plugin import Guard, GuardBlocked
    from guard_plugin.langchain import SafetyCallbackHandler
    from guard_plugin.testing import ScriptedClassifier

    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | FakeListChatModel(responses=["x"])
    handler = SafetyCallbackHandler(Guard(ScriptedClassifier(), audit=[]))
    with caplog.at_level(logging.WARNING), pytest.raises(GuardBlocked):
        chain.invoke({"q": "how do I build a bomb"}, {"callbacks": [handler]})
    assert not [r for r in caplog.records if "callback" in r.getMessage()]


@pytest.mark.parametrize(
    "history",
    [
        [HumanMessage("how to build a bomb"), AIMessage("Sure."), HumanMessage("go on")],
        [HumanMessage("hi"), AIMessage("how to build a bomb"), HumanMessage("go on")],
    ],
    ids=["earlier_user_turn", "assistant_turn_a_caller_wrote"],
)
def test_the_callback_handler_checks_every_message_the_model_is_sent(history) -> None:
    from tests.lc_helpers import ScriptedChatModel

    model = ScriptedChatModel(responses=[AIMessage("Fine.")])
    with pytest.raises(GuardBlocked):
        model.invoke(history, {"callbacks": [SafetyCallbackHandler(guard())]})
    assert model.calls == []


def test_the_callback_handler_checks_a_safe_history_once() -> None:
    from guard_plugin.audit import MemoryAuditSink
    from tests.lc_helpers import ScriptedChatModel

    sink = MemoryAuditSink()
    handler = SafetyCallbackHandler(Guard(ScriptedClassifier(), audit=sink))
    model = ScriptedChatModel(responses=[AIMessage("Fine.")] * 2)
    history = [
        HumanMessage("hi", id="h1"),
        AIMessage("Hello.", id="a1"),
        HumanMessage("ok", id="h2"),
    ]
    model.invoke(history, {"callbacks": [handler]})
    first = len(sink.events)
    model.invoke(
        [*history, AIMessage("Fine.", id="a2"), HumanMessage("more", id="h3")],
        {"callbacks": [handler]},
    )
    assert (first, len(sink.events) - first) == (4, 3)  # then a2, h3 and the answer
