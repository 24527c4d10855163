"""LangGraph adapters: guard nodes for a hand-built ``StateGraph``.

Guard nodes returning ``Command(goto=..., update=...)`` with same-id message updates, and two
wrappers that decide content where it is made::

    START -> guard_input -> agent -> guard_response -> tools -> guard_tools -> agent
                   \\-> END (blocked)        \\-> END (no tool calls left)

- :func:`input_guard_node` checks the user's turn; a block answers with a refusal and ends.
- :func:`guarded_tool_node` is a ``ToolNode`` that decides each tool result as the tool
  returns it (screenshots and PDFs included), so the state, the streams and the checkpoints
  only carry decided results; an escalated result becomes a placeholder carrying its original,
  sealed, for the review.
- :func:`tool_guard_node`, placed after the tool node, asks the reviewer about held results
  (the tool is not run again on resume) and checks any result the tool node did not decide
  (a plain ``ToolNode``'s, or a caller's own) before the model reads it.
- :func:`guarded_model_node` wraps your model node: the response (text and tool-call
  arguments) is decided before it is written; :func:`response_guard_node` after it asks the
  reviewer about a held response, or checks a response no guarded model node decided, drops
  unsafe calls, and routes to the tools only if calls remain.

Escalation calls ``interrupt()`` (the graph needs a checkpointer); these nodes do nothing
before it that re-running them on resume could repeat. :func:`guarded_agent_graph` wires the
nodes around your model node and tools in one call. Every node works under ``invoke`` and
``ainvoke``. The tenant comes from ``config["configurable"][tenant_key]`` or the runtime
context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

try:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.runnables import RunnableLambda
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode
    from langgraph.types import Command
except ImportError as _err:  # pragma: no cover
    raise ImportError(
        "guard_plugin.langgraph needs LangGraph 1.x: pip install 'guard-plugin[langgraph]'"
    ) from _err

from guard_plugin import lc_messages as lc
from guard_plugin.check import Guard, as_guard
from guard_plugin.decision import Decision
from guard_plugin.types import Action, Surface

__all__ = [
    "guarded_agent_graph",
    "guarded_model_node",
    "guarded_tool_node",
    "input_guard_node",
    "response_guard_node",
    "tool_guard_node",
]

HELD = lc.HELD_KEY


def _check_args(explicit: str | None, key: str, msg: Any, surface: Surface) -> dict[str, Any]:
    """Surface, tenant and request id of a check of ``msg`` inside a graph run."""
    tenant, config = lc.run_tenant(explicit, key)
    return {
        "surface": surface,
        "tenant": tenant,
        "request_id": lc.check_id(config, msg.id, surface),
    }


def _node(
    name: str, sync: Callable[[Any], Command[Any]], asy: Callable[[Any], Any]
) -> RunnableLambda[Any, Any]:
    return RunnableLambda(sync, afunc=asy, name=name)


def _update(outcome: lc.Outcome) -> dict[str, Any]:
    return {"messages": outcome.messages} if outcome.messages else {}


def _messages(cmd: Command[Any]) -> list[Any]:
    """The messages a command's update carries."""
    update = cmd.update if isinstance(cmd.update, dict) else {}
    return list(update.get("messages") or [])


def input_guard_node(
    guard: Guard | str,
    *,
    next: str = "agent",
    tenant: str | None = None,
    tenant_key: str = "tenant_id",
    escalate: bool = True,
    name: str = "guard_input",
) -> RunnableLambda[Any, Any]:
    """A node that checks the user's turn, then goes to ``next`` (or to END when blocked).

    An escalated turn is held: a placeholder takes its place (the original sealed in it) and
    the node goes back to itself, ``name`` in the graph (list it in the node's
    ``destinations``), to ask the reviewer. A new turn sent instead of the answer leaves the
    held one withheld."""
    node = _InputNode(as_guard(guard), next, tenant, tenant_key, escalate, name)
    return _node(name, node.run, node.arun)


@dataclass
class _InputNode:
    """The steps of :func:`input_guard_node`."""

    g: Guard
    next: str
    tenant: str | None
    tenant_key: str
    escalate: bool
    name: str

    def hold(self, found: Any, d: Any) -> Command[Any] | None:
        if not (d.action is Action.ESCALATE and self.escalate and lc.can_interrupt()):
            return None
        msg = found[1]
        pending = self.g.policy_of(d).messages.review_pending
        extra = {**msg.additional_kwargs, HELD: lc.seal(msg, decision=d.to_dict())}
        placeholder = msg.model_copy(update={"content": pending, "additional_kwargs": extra})
        return Command(goto=self.name, update={"messages": [placeholder]})

    def abandoned_responses(self, msgs: Sequence[Any]) -> list[Any]:
        """Responses and tool results held for a review that a new turn overtook: withheld
        for good, their sealed records gone."""
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, (AIMessage, ToolMessage)) or HELD not in m.additional_kwargs:
                continue
            if any(isinstance(n, HumanMessage) for n in msgs[i + 1 :]):
                found = lc.read_held(m.additional_kwargs[HELD])
                out.append(lc.withhold(m, found[1] if found else None, self.g))
        return out

    def settle(self, state: Any) -> tuple[Command[Any] | None, list[Any]]:
        """A held turn: reviewed when it is still the last turn, else withheld for good."""
        msgs = state["messages"]
        overtaken = self.abandoned_responses(msgs)
        held = [m for m in msgs if isinstance(m, HumanMessage) and HELD in m.additional_kwargs]
        if not held:
            return None, overtaken
        h = held[-1]
        rest = lc.without_record(h)
        found = lc.read_held(h.additional_kwargs[HELD])
        later = any(isinstance(m, HumanMessage) for m in msgs[msgs.index(h) + 1 :])
        if found is None or later or not isinstance(found[0], HumanMessage):
            return None, [*overtaken, lc.withhold(h, found[1] if found else None, self.g)]
        original, d = found[0], found[1]
        outcome = lc.apply_input(original, d, guard=self.g, escalate=True)
        if outcome.end:  # rejected
            first, *more = outcome.messages
            update = [first.model_copy(update={"id": h.id, "additional_kwargs": rest}), *more]
            return Command(goto=END, update={"messages": update}), []
        restored = original.model_copy(update={"id": h.id, "additional_kwargs": rest})
        return Command(goto=self.next, update={"messages": [restored]}), []

    def finish(self, found: Any, d: Any, settled: list[Any]) -> Command[Any]:
        held = self.hold(found, d)
        if held is not None:
            return Command(goto=held.goto, update={"messages": [*settled, *_messages(held)]})
        outcome = lc.apply_input(found[1], d, guard=self.g, escalate=self.escalate)
        update = {"messages": [*settled, *outcome.messages]} if settled or outcome.messages else {}
        return Command(goto=END if outcome.end else self.next, update=update)

    def prepare(self, state: Any) -> Command[Any] | tuple[Any, dict[str, Any], list[Any]]:
        """Everything before the check: a held turn settled, or the turn to check."""
        done, settled = self.settle(state)
        if done is not None:
            return done
        found = lc.find_input(state["messages"])
        if found is None or HELD in found[1].additional_kwargs:
            return Command(goto=self.next, update={"messages": settled} if settled else {})
        return found, _check_args(self.tenant, self.tenant_key, found[1], Surface.INPUT), settled

    def run(self, state: Any) -> Command[Any]:
        step = self.prepare(state)
        if isinstance(step, Command):
            return step
        found, kw, settled = step
        return self.finish(found, self.g.check_content(found[1].content, **kw), settled)

    async def arun(self, state: Any) -> Command[Any]:
        step = self.prepare(state)
        if isinstance(step, Command):
            return step
        found, kw, settled = step
        return self.finish(found, await self.g.acheck_content(found[1].content, **kw), settled)


def guarded_tool_node(
    tools: Sequence[Any],
    guard: Guard | str,
    *,
    tenant: str | None = None,
    tenant_key: str = "tenant_id",
    escalate: bool = True,
    **tool_node_options: Any,
) -> ToolNode:
    """A ``ToolNode`` over ``tools`` that decides each result as the tool returns it: allowed
    results pass as they are, blocked and rewritten ones are replaced before anything reads
    them, and an escalated one becomes a placeholder (the review happens in
    :func:`tool_guard_node`, so the tool never runs twice). Other ``ToolNode`` options pass
    through."""
    g = as_guard(guard)
    decided = lc.decided_results(g)

    def finish(result: Any, found: Any, d: Any) -> Any:
        msg, rebuild = found
        if d.action is Action.ESCALATE and escalate and lc.can_interrupt():
            pending = g.policy_of(d).messages.review_pending
            sealed = lc.seal(msg, decision=d.to_dict())
            extra = {**msg.additional_kwargs, HELD: sealed}
            update = {"content": pending, "artifact": None, "additional_kwargs": extra}
            return rebuild(msg.model_copy(update=update), {})
        outcome = lc.apply_tool_result(msg, d, guard=g, escalate=False)
        new = outcome.messages[0] if outcome.messages else msg
        assert isinstance(new, ToolMessage)
        decided.add(new)
        return result if new is msg else rebuild(new, {})

    def wrap(request: Any, execute: Callable[[Any], Any]) -> Any:
        result = execute(request)
        found = lc.tool_message_of(result, request.tool_call.get("id"))
        if found is None:
            return result
        t, config = lc.run_tenant(tenant, tenant_key)
        d = g.check_content(found[0].content, **lc.tool_check_args(found[0], t, config))
        return finish(result, found, d)

    async def awrap(request: Any, execute: Callable[[Any], Any]) -> Any:
        result = await execute(request)
        found = lc.tool_message_of(result, request.tool_call.get("id"))
        if found is None:
            return result
        t, config = lc.run_tenant(tenant, tenant_key)
        d = await g.acheck_content(found[0].content, **lc.tool_check_args(found[0], t, config))
        return finish(result, found, d)

    return ToolNode(list(tools), wrap_tool_call=wrap, awrap_tool_call=awrap, **tool_node_options)


def tool_guard_node(
    guard: Guard | str,
    *,
    next: str = "agent",
    tenant: str | None = None,
    tenant_key: str = "tenant_id",
    escalate: bool = True,
) -> RunnableLambda[Any, Any]:
    """A node for after the tool node: a person decides each held result (an interrupt per
    result), results the tool node did not decide are checked, then it goes to ``next``."""
    g = as_guard(guard)
    decided = lc.decided_results(g)

    def split(state: Any) -> tuple[list[ToolMessage], list[ToolMessage]]:
        results = lc.find_tool_results(state["messages"])
        held = [m for m in results if HELD in m.additional_kwargs]
        return held, [m for m in results if m not in held and m not in decided]

    def review(held: Sequence[ToolMessage]) -> list[Any]:
        out: list[Any] = []
        for m in held:
            found = lc.read_held(m.additional_kwargs[HELD])
            if found is None:  # a damaged record: the placeholder stays, without the record
                out.append(m.model_copy(update={"additional_kwargs": lc.without_record(m)}))
            else:
                out.append(lc.review_held_tool(m, *found, g, escalate=escalate))
        return out

    def finish(held: Sequence[ToolMessage], msgs: Sequence[ToolMessage], ds: Sequence[Any]) -> Any:
        outcome = lc.Outcome(messages=review(held))
        for m, d in zip(msgs, ds, strict=True):
            outcome.messages += lc.apply_tool_result(m, d, guard=g, escalate=escalate).messages
        return Command(goto=next, update=_update(outcome))

    def run(state: Any) -> Command[Any]:
        held, msgs = split(state)
        t, config = lc.run_tenant(tenant, tenant_key)
        ds = [g.check_content(m.content, **lc.tool_check_args(m, t, config)) for m in msgs]
        return finish(held, msgs, ds)

    async def arun(state: Any) -> Command[Any]:
        held, msgs = split(state)
        t, config = lc.run_tenant(tenant, tenant_key)
        ds = await asyncio.gather(
            *(g.acheck_content(m.content, **lc.tool_check_args(m, t, config)) for m in msgs)
        )
        return finish(held, msgs, ds)

    return _node("guard_tools", run, arun)


def _decided_response(g: Guard, state: Any, ai: AIMessage, d: Any, escalate: bool) -> AIMessage:
    """The response as its decision leaves it; an escalated one becomes a placeholder without
    tool calls, carrying the original sealed for :func:`response_guard_node`'s review."""
    if ai.id is None:
        ai = ai.model_copy(update={"id": str(uuid4())})
    rc = lc.find_response([*state["messages"], ai])
    assert rc is not None
    if d.action is Action.ESCALATE and escalate and lc.can_interrupt():
        pending = g.policy_of(d).messages.review_pending
        sealed = lc.seal(ai, decision=d.to_dict(), requests=lc.review_requests(ai, d))
        return AIMessage(id=ai.id, content=pending, additional_kwargs={HELD: sealed})
    outcome = lc.apply_response(rc, d, guard=g, escalate=False)
    new = outcome.messages[0] if outcome.messages else ai
    assert isinstance(new, AIMessage)
    return new


def guarded_model_node(
    agent: Callable[..., Any] | Any,
    guard: Guard | str,
    *,
    tenant: str | None = None,
    tenant_key: str = "tenant_id",
    escalate: bool = True,
    hold_output: bool = False,
) -> RunnableLambda[Any, Any]:
    """Your model node (``state -> {"messages": [AIMessage]}``, a function or a runnable),
    with its response decided before it is written: what the state, the ``updates`` and
    ``values`` streams and the checkpoints show is already checked. ``stream_mode="messages"``
    shows a model's tokens as they are generated, before any check; ``hold_output=True`` tags
    the node's model calls ``nostream`` so that stream carries nothing unchecked. An escalated
    response becomes a placeholder without tool calls, carrying the original sealed;
    :func:`response_guard_node` asks the reviewer, so the model is not called again on
    resume."""
    from langchain_core.runnables.base import coerce_to_runnable

    g = as_guard(guard)
    model: Any = coerce_to_runnable(agent)
    decided = lc.decided_results(g)

    def split(out: Any) -> tuple[AIMessage | None, list[Any]]:
        msgs = out.get("messages") if isinstance(out, dict) else None
        if not isinstance(msgs, list) or not msgs or not isinstance(msgs[-1], AIMessage):
            return None, []
        return msgs[-1], msgs

    def finish(state: Any, out: Any, ai: AIMessage, msgs: list[Any], d: Any) -> Any:
        final = _decided_response(g, state, ai, d, escalate)
        decided.add(final)
        return {**out, "messages": [*msgs[:-1], final]}

    def check_of(state: Any, ai: AIMessage) -> tuple[Any, dict[str, Any]] | None:
        rc = lc.find_response([*state["messages"], ai])
        if rc is None:
            return None
        return rc.inputs, _check_args(tenant, tenant_key, ai, Surface.RESPONSE)

    def quiet(config: Any) -> Any:
        if not hold_output:
            return config
        return {**(config or {}), "tags": [*((config or {}).get("tags") or []), "nostream"]}

    def run(state: Any, config: Any) -> Any:
        out = model.invoke(state, quiet(config))
        ai, msgs = split(out)
        found = check_of(state, ai) if ai is not None else None
        if ai is None or found is None:
            return out
        return finish(state, out, ai, msgs, g.check(found[0], **found[1]))

    async def arun(state: Any, config: Any) -> Any:
        out = await model.ainvoke(state, quiet(config))
        ai, msgs = split(out)
        found = check_of(state, ai) if ai is not None else None
        if ai is None or found is None:
            return out
        return finish(state, out, ai, msgs, await g.acheck(found[0], **found[1]))

    return RunnableLambda(run, afunc=arun, name="agent")


def response_guard_node(
    guard: Guard | str,
    *,
    tools: str = "tools",
    tenant: str | None = None,
    tenant_key: str = "tenant_id",
    escalate: bool = True,
) -> RunnableLambda[Any, Any]:
    """A node for after the model: asks the reviewer about a held response (from
    :func:`guarded_model_node`), or checks a response no guarded model node decided; then goes
    to ``tools`` when tool calls remain, else to END."""
    g = as_guard(guard)
    decided = lc.decided_results(g)

    def route(ai: AIMessage | None) -> str:
        return tools if ai is not None and ai.tool_calls else END

    def finish(rc: lc.ResponseCheck, d: Any) -> Command[Any]:
        outcome = lc.apply_response(rc, d, guard=g, escalate=escalate)
        final = outcome.messages[0] if outcome.messages else rc.message
        return Command(goto=END if outcome.end else route(final), update=_update(outcome))  # type: ignore[arg-type]

    def held(state: Any) -> Command[Any] | None:
        """A held response: the reviewer decides, and the answer takes the placeholder's id."""
        ai = _last_ai(state)
        if ai is None or HELD not in ai.additional_kwargs:
            return None
        try:
            record = lc.unseal(ai.additional_kwargs[HELD])
            original, d = record["message"], Decision.from_dict(record["decision"])
            requests = [dict(r) for r in record["requests"]]
        except Exception:  # noqa: BLE001 (a damaged record: the placeholder stays, without the record)
            update = ai.model_copy(update={"additional_kwargs": {}})
            return Command(goto=END, update={"messages": [update]})
        resume = lc.interrupt(lc.review_payload(d, Surface.RESPONSE, requests))
        outcome = lc.answer_review(original, requests, resume, d, g)
        final = outcome.messages[0] if outcome.messages else original
        final = final.model_copy(update={"id": ai.id})
        assert isinstance(final, AIMessage)
        return Command(goto=END if outcome.end else route(final), update={"messages": [final]})

    def run(state: Any) -> Command[Any]:
        reviewed = held(state)
        if reviewed is not None:
            return reviewed
        rc = lc.find_response(state["messages"])
        if rc is None or rc.message in decided:
            return Command(goto=route(_last_ai(state)))
        kw = _check_args(tenant, tenant_key, rc.message, Surface.RESPONSE)
        return finish(rc, g.check(rc.inputs, **kw))

    async def arun(state: Any) -> Command[Any]:
        reviewed = held(state)
        if reviewed is not None:
            return reviewed
        rc = lc.find_response(state["messages"])
        if rc is None or rc.message in decided:
            return Command(goto=route(_last_ai(state)))
        kw = _check_args(tenant, tenant_key, rc.message, Surface.RESPONSE)
        return finish(rc, await g.acheck(rc.inputs, **kw))

    return _node("guard_response", run, arun)


def _last_ai(state: Any) -> AIMessage | None:
    msgs = state["messages"]
    return msgs[-1] if msgs and isinstance(msgs[-1], AIMessage) else None


def guarded_agent_graph(
    agent: Callable[..., Any] | Any,
    tools: Sequence[Any],
    guard: Guard | str,
    *,
    state_schema: type = MessagesState,
    tenant: str | None = None,
    tenant_key: str = "tenant_id",
    escalate: bool = True,
    hold_output: bool = False,
) -> StateGraph[Any]:
    """A tool-calling agent graph with all three guards wired in. ``agent`` is your model
    node (``state -> {"messages": [AIMessage]}``). Returns the builder: compile it with your
    checkpointer."""
    g = as_guard(guard)
    opts: dict[str, Any] = {"tenant": tenant, "tenant_key": tenant_key, "escalate": escalate}
    builder: StateGraph[Any] = StateGraph(state_schema)
    builder.add_node(
        "guard_input",
        input_guard_node(g, next="agent", **opts),
        destinations=("agent", "guard_input", END),
    )
    builder.add_node("agent", guarded_model_node(agent, g, hold_output=hold_output, **opts))
    builder.add_node(
        "guard_response", response_guard_node(g, tools="tools", **opts), destinations=("tools", END)
    )
    builder.add_node("tools", guarded_tool_node(tools, g, **opts))
    builder.add_node(
        "guard_tools", tool_guard_node(g, next="agent", **opts), destinations=("agent",)
    )
    builder.add_edge(START, "guard_input")
    builder.add_edge("agent", "guard_response")
    builder.add_edge("tools", "guard_tools")
    return builder
