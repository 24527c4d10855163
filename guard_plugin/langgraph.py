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
context, or, with ``tenant_key="auth:FIELD"``, only from the user a LangGraph server
authenticated.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

try:
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
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
    return lc.check_args(surface, tenant, config, msg.id)


def _bind(explicit: str | None, key: str, ref: str | None) -> dict[str, Any]:
    """What a record held in this graph run is bound to (:func:`lc.held_bind`)."""
    tenant, config = lc.run_tenant(explicit, key)
    return lc.held_bind(config, tenant, ref)


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
    g = as_guard(guard)
    node = _InputNode(g, next, tenant, tenant_key, escalate, name, lc.decided_results(g))
    return _node(name, node.run, node.arun)


def _speculating_input_node(
    g: Guard, next: str, tenant: str | None, tenant_key: str, escalate: bool, name: str
) -> RunnableLambda[Any, Any]:
    """:func:`input_guard_node` for a graph whose ``next`` is a :func:`guarded_model_node`:
    for a tenant with ``speculative: true`` it leaves the turn undecided, and the model node
    checks it while the model answers. Never before a node that does not check."""
    node = _InputNode(g, next, tenant, tenant_key, escalate, name, lc.decided_results(g), True)
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
    decided: lc.Decided
    #: the next node is a guarded model node that checks what is left undecided
    defer: bool = False

    def hold(self, found: Any, d: Any) -> Command[Any] | None:
        if not (d.action is Action.ESCALATE and self.escalate and lc.can_interrupt()):
            return None
        msg = found[1]
        pending = self.g.messages_of(d).review_pending_input
        bind = _bind(self.tenant, self.tenant_key, lc.held_ref(msg))
        sealed = lc.seal(msg, self.g, bind=bind, decision=d.to_dict())
        extra = {**msg.additional_kwargs, HELD: sealed}
        placeholder = msg.model_copy(update={"content": pending, "additional_kwargs": extra})
        self.g.record_hold(d)
        return Command(goto=self.name, update={"messages": [placeholder]})

    def open(self, m: Any) -> tuple[Any, Decision] | None:
        """The original and decision sealed in a placeholder; ``None`` for a record this
        deployment did not seal for this thread, tenant and message."""
        bind = _bind(self.tenant, self.tenant_key, lc.held_ref(m))
        return lc.read_held(m.additional_kwargs[HELD], self.g, bind=bind)

    def withhold(self, m: Any, stripped: list[Any]) -> Any | None:
        """A held message a new turn overtook, withheld for good; ``None`` (and the message,
        its record gone, in ``stripped``) where the record does not open: then it is a
        caller's message like any other, and is checked as one."""
        found = self.open(m)
        if found is None:
            stripped.append(_stripped(m))
            return None
        return lc.withhold(m, found[1], self.g)

    def settle(self, state: Any) -> tuple[Command[Any] | None, list[Any], list[Any]]:
        """Held content: a held turn reviewed when it is still the last turn, else withheld
        for good with any held response or tool result a new turn overtook. Returns the
        review's command, if any, the withheld messages (decided), and the messages whose
        records did not open (to be checked)."""
        msgs = state["messages"]
        stripped: list[Any] = []
        overtaken = [
            self.withhold(m, stripped)
            for i, m in enumerate(msgs)
            if isinstance(m, (AIMessage, ToolMessage))
            and HELD in m.additional_kwargs
            and any(isinstance(n, HumanMessage) for n in msgs[i + 1 :])
        ]
        held: list[Any] = [
            m for m in msgs if isinstance(m, HumanMessage) and HELD in m.additional_kwargs
        ]
        if not held:
            return None, [m for m in overtaken if m is not None], stripped
        *older, h = held  # earlier held turns were overtaken by a later one
        overtaken += [self.withhold(m, stripped) for m in older]
        withheld = [m for m in overtaken if m is not None]
        rest = lc.without_record(h)
        found = self.open(h)
        later = any(isinstance(m, HumanMessage) for m in msgs[msgs.index(h) + 1 :])
        if found is None or not isinstance(found[0], HumanMessage):
            return None, withheld, [*stripped, _stripped(h)]
        if later:
            return None, [*withheld, lc.withhold(h, found[1], self.g)], stripped
        original, d = found[0], found[1]
        outcome = lc.apply_input(original, d, guard=self.g, escalate=True)
        if outcome.end:  # rejected
            first, *more = outcome.messages
            update = [first.model_copy(update={"id": h.id, "additional_kwargs": rest}), *more]
            return Command(goto=END, update={"messages": update}), [], []
        restored = original.model_copy(update={"id": h.id, "additional_kwargs": rest})
        return Command(goto=self.next, update={"messages": [restored]}), [], []

    def prepare(self, state: Any) -> Command[Any] | _InputStep:
        """Everything before the checks: a held turn settled; then the turn to check and every
        message of the history this guard has not decided."""
        tenant, config = lc.run_tenant(self.tenant, self.tenant_key)
        scope = self.g.scope_of(tenant)
        done, settled, stripped = self.settle(state)
        if done is not None:
            self.decided.add_all(_messages(done), scope)
            return done
        self.decided.add_all(settled, scope)
        settled = [*settled, *stripped]  # the state loses every record that did not open
        msgs = _replaced(state["messages"], settled)
        found = lc.find_input(msgs)
        history = lc.find_history(
            msgs, self.decided, scope, tenant, config, skip={found[0]} if found else ()
        )
        checks = [h.check for h in history]
        if found is not None:
            kw = lc.check_args(Surface.INPUT, tenant, config, found[1].id)
            checks.append(lc.Check(found[1].content, kw))
        return _InputStep(found, history, checks, settled, msgs, tenant, scope)

    def finish(self, step: _InputStep, ds: Sequence[Decision]) -> Command[Any]:
        replaced, refused = lc.apply_history(step.history, ds[: len(step.history)], self.g)
        settled = [*step.settled, *replaced]
        found = step.found
        if found is not None and not refused:
            held = self.hold(found, ds[-1])
            if held is not None:
                update = [*settled, *_messages(held)]
                self.decided.add_all(update, step.scope)
                return Command(goto=held.goto, update={"messages": update})
        outcome = (
            lc.apply_input(found[1], ds[-1], guard=self.g, escalate=self.escalate)
            if found is not None
            else lc.Outcome()
        )
        updates = [*settled, *outcome.messages]
        if refused and not outcome.end:  # an unsafe user turn in the history: refused
            refusal = self.g.messages_of(None, step.tenant).refusal
            updates.append(AIMessage(id=str(uuid4()), content=refusal))
        end = outcome.end or refused
        # what goes on (or ends the turn) is decided
        self.decided.add_all(updates if end else _replaced(step.messages, updates), step.scope)
        updates = _last_per_id(updates)
        return Command(
            goto=END if end else self.next, update={"messages": updates} if updates else {}
        )

    def deferred(self, step: _InputStep) -> Command[Any] | None:
        """For a speculative tenant, where the model node checks: on to it with the turn
        undecided (its escalation then gets the tenant's fallback: a person cannot review a
        turn the model is already answering)."""
        if not (self.defer and step.checks):
            return None
        if not self.g.policies.get_or_default(step.tenant).policy.speculative:
            return None
        settled = _last_per_id(step.settled)
        return Command(goto=self.next, update={"messages": settled} if settled else {})

    def run(self, state: Any) -> Command[Any]:
        step = self.prepare(state)
        if isinstance(step, Command):
            return step
        return self.deferred(step) or self.finish(step, lc.run_checks(self.g, step.checks))

    async def arun(self, state: Any) -> Command[Any]:
        step = self.prepare(state)
        if isinstance(step, Command):
            return step
        deferred = self.deferred(step)
        if deferred is not None:
            return deferred
        return self.finish(step, await lc.arun_checks(self.g, step.checks))


@dataclass
class _InputStep:
    """A user turn's check: the turn (if one is waiting), the undecided history, the checks
    of both, and the messages as the settled held turns leave them."""

    found: tuple[int, Any] | None
    history: list[lc.HistoryItem]
    checks: list[lc.Check]
    settled: list[Any]
    messages: list[Any]
    tenant: str | None
    scope: str


def _stripped(m: Any) -> Any:
    """A message without its held record (one that did not open): the caller's own."""
    return m.model_copy(update={"additional_kwargs": lc.without_record(m)})


def _last_per_id(updates: Sequence[Any]) -> list[Any]:
    """Message updates with one per id, the last (as the state would end up)."""
    last = {m.id: i for i, m in enumerate(updates) if m.id is not None}
    return [m for i, m in enumerate(updates) if m.id is None or last[m.id] == i]


def _replaced(messages: Sequence[Any], updates: Sequence[Any]) -> list[Any]:
    """``messages`` with the same-id ``updates`` applied (as the ``add_messages`` reducer
    will)."""
    by_id = {m.id: m for m in updates if m.id is not None}
    return [by_id.get(m.id, m) for m in messages]


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
    node = _ToolBoundary(g, tenant, tenant_key, escalate, lc.decided_results(g))
    return ToolNode(
        list(tools), wrap_tool_call=node.wrap, awrap_tool_call=node.awrap, **tool_node_options
    )


@dataclass
class _ToolBoundary:
    """The steps of :func:`guarded_tool_node`'s tool call wrapper."""

    g: Guard
    tenant: str | None
    tenant_key: str
    escalate: bool
    decided: lc.Decided

    def plan(self, result: Any, call_id: str | None) -> Any:
        """What the result writes and its checks (None: nothing to check)."""
        writes = lc.tool_writes(result, call_id)
        if writes is None:
            return None
        t, config = lc.run_tenant(self.tenant, self.tenant_key)
        scope = self.g.scope_of(t)
        checks, others = lc.writes_checks(writes, self.decided, scope, t, config)
        return (writes, others, scope, checks) if checks else None

    def finish(self, result: Any, planned: Any, ds: Sequence[Decision]) -> Any:
        g, decided = self.g, self.decided
        writes, others, scope, _ = planned
        own = writes.own
        assert own is None or isinstance(own, ToolMessage)
        replaced = lc.settle_writes(writes, others, ds[own is not None :], g, decided, scope)
        if own is None:
            return writes.rebuild(replaced=replaced)
        d = ds[0]
        if d.action is Action.ESCALATE and self.escalate and lc.can_interrupt():
            pending = g.messages_of(d).review_pending_tool
            bind = _bind(self.tenant, self.tenant_key, lc.held_ref(own))
            sealed = lc.seal(own, g, bind=bind, decision=d.to_dict())
            extra = {**own.additional_kwargs, HELD: sealed}
            update = {"content": pending, "artifact": None, "additional_kwargs": extra}
            placeholder = own.model_copy(update=update)
            decided.add(placeholder, scope)
            g.record_hold(d)
            return writes.rebuild(placeholder, replaced)
        outcome = lc.apply_tool_result(own, d, guard=g, escalate=False)
        new = outcome.messages[0] if outcome.messages else own
        assert isinstance(new, ToolMessage)
        decided.add(new, scope)
        if new is own and not replaced and not writes.changed:
            return result
        return writes.rebuild(new, replaced)

    def call_check(self, request: Any) -> tuple[lc.Check | None, str]:
        """The check a call needs before it runs (None: its turn was decided), and the scope."""
        t, config = lc.run_tenant(self.tenant, self.tenant_key)
        scope = self.g.scope_of(t)
        return lc.call_check(request, self.decided, scope, t, config), scope

    def wrap(self, request: Any, execute: Callable[[Any], Any]) -> Any:
        check, scope = self.call_check(request)
        if check is not None:  # a call whose turn no guard decided (lc.calls)
            refused = lc.refused_call(request, check.run(self.g), self.g, self.decided, scope)
            if refused is not None:
                return refused
        # stream consumers see the tool's run end with the decided result (lc.tool_runs)
        run = lc.quiet_tool(request)
        try:
            result = execute(run)
            planned = self.plan(result, request.tool_call.get("id"))
            if planned is not None:
                result = self.finish(result, planned, lc.run_checks(self.g, planned[3]))
        except BaseException as err:
            lc.finish_tool_run(run, error=err)
            raise
        lc.finish_tool_run(run, result)
        return result

    async def awrap(self, request: Any, execute: Callable[[Any], Any]) -> Any:
        check, scope = self.call_check(request)
        if check is not None:
            d = await check.arun(self.g)
            refused = lc.refused_call(request, d, self.g, self.decided, scope)
            if refused is not None:
                return refused
        run = lc.quiet_tool(request)
        try:
            result = await execute(run)
            planned = self.plan(result, request.tool_call.get("id"))
            if planned is not None:
                result = self.finish(result, planned, await lc.arun_checks(self.g, planned[3]))
        except BaseException as err:
            await lc.afinish_tool_run(run, error=err)
            raise
        await lc.afinish_tool_run(run, result)
        return result


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

    def split(state: Any) -> tuple[list[Any], list[ToolMessage], set[str], str | None, Any]:
        """Held results whose records open (for the reviewer), the results to check (those
        no tool node decided, and held ones whose records do not open: a caller's own), the
        ids of the latter, the tenant and the config."""
        t, config = lc.run_tenant(tenant, tenant_key)
        scope = g.scope_of(t)
        results = lc.find_tool_results(state["messages"])
        held: list[Any] = []
        fresh: list[ToolMessage] = []
        stripped: set[str] = set()
        for m in results:
            if HELD in m.additional_kwargs:
                bind = _bind(tenant, tenant_key, lc.held_ref(m))
                found = lc.read_held(m.additional_kwargs[HELD], g, bind=bind)
                if found is not None:
                    held.append((m, found))
                    continue
                m = _stripped(m)
                stripped.add(m.tool_call_id)
            if m.tool_call_id in stripped or not decided.contains(m, scope):
                fresh.append(m)
        return held, fresh, stripped, t, config

    def finish(
        held: Sequence[Any],
        msgs: Sequence[ToolMessage],
        stripped: set[str],
        ds: Sequence[Any],
        t: Any,
    ) -> Any:
        reviewed = [
            lc.review_held_tool(m, found[0], found[1], g, escalate=escalate) for m, found in held
        ]
        outcome = lc.Outcome(messages=reviewed)
        for m, d in zip(msgs, ds, strict=True):
            new = lc.apply_tool_result(m, d, guard=g, escalate=escalate).messages
            if not new and m.tool_call_id in stripped:
                new = [m]  # allowed as it stands: the state keeps it, without the record
            outcome.messages += new
            decided.add(new[0] if new else m, g.scope_of(t))
        decided.add_all(outcome.messages, g.scope_of(t))
        return Command(goto=next, update=_update(outcome))

    def run(state: Any) -> Command[Any]:
        held, msgs, stripped, t, config = split(state)
        checks = [lc.Check(m.content, lc.tool_check_args(m, t, config)) for m in msgs]
        return finish(held, msgs, stripped, lc.run_checks(g, checks), t)

    async def arun(state: Any) -> Command[Any]:
        held, msgs, stripped, t, config = split(state)
        checks = [lc.Check(m.content, lc.tool_check_args(m, t, config)) for m in msgs]
        return finish(held, msgs, stripped, await lc.arun_checks(g, checks), t)

    return _node("guard_tools", run, arun)


def _decided_response(
    g: Guard,
    state: Any,
    ai: AIMessage,
    d: Any,
    escalate: bool,
    tenant: tuple[str | None, str],
) -> AIMessage:
    """The response as its decision leaves it; an escalated one becomes a placeholder without
    tool calls, carrying the original sealed for :func:`response_guard_node`'s review."""
    if ai.id is None:
        ai = ai.model_copy(update={"id": str(uuid4())})
    rc = lc.find_response([*state["messages"], ai])
    assert rc is not None
    if d.action is Action.ESCALATE and escalate and lc.can_interrupt():
        pending = g.messages_of(d).review_pending
        bind = _bind(*tenant, ai.id)
        sealed = lc.seal(
            ai, g, bind=bind, decision=d.to_dict(), requests=lc.review_requests(ai, d, g)
        )
        g.record_hold(d)
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
    with its response decided before it is written (and every other message it writes, as
    :mod:`~guard_plugin.lc_messages.writes` reads them): what the state, the ``updates`` and
    ``values`` streams and the checkpoints show is already checked. When the run streams
    (``stream_mode="messages"``, ``astream_events``), the node's model answers quietly and
    its text is shown window by window as each passes its check, by the tenant's
    ``streaming`` policy (:mod:`guard_plugin.streams`); ``hold_output=True`` shows the checked
    message only, whole. An escalated
    response becomes a placeholder without tool calls, carrying the original sealed;
    :func:`response_guard_node` asks the reviewer, so the model is not called again on
    resume.

    Before the model is called, every message in the state that no guard node decided (one a
    caller wrote into the state mid-run, say) is checked, in one batch: the model never
    reads an undecided message. For a tenant with ``speculative: true`` the model answers
    (quietly) while they are checked; its answer is used only if every check allows its
    message unchanged, and otherwise goes nowhere (the audit records it was dropped)."""
    from langchain_core.runnables.base import coerce_to_runnable

    g = as_guard(guard)
    node = _ModelNode(
        g,
        coerce_to_runnable(agent),
        tenant,
        tenant_key,
        escalate,
        hold_output,
        lc.decided_results(g),
    )
    return RunnableLambda(node.run, afunc=node.arun, name="agent")


@dataclass
class _ModelNode:
    """The steps of :func:`guarded_model_node`."""

    g: Guard
    model: Any
    tenant: str | None
    tenant_key: str
    escalate: bool
    hold_output: bool
    decided: lc.Decided

    def streamer(self, state: Any, t: str | None, is_async: bool) -> lc.ResponseStreamer | None:
        """A streamer for the node's model call when the run streams (None otherwise, or
        with ``hold_output``: the model then answers quietly and is shown whole)."""
        if self.hold_output or not lc.streaming_wanted():
            return None
        return lc.ResponseStreamer(
            self.g, model=self.model, messages=state["messages"], tenant=t, is_async=is_async
        )

    def config_for(self, config: Any, streamer: lc.ResponseStreamer | None) -> Any:
        if streamer is not None:
            return streamer.quiet_config(config)
        return lc.quiet_config(config) if self.hold_output else config

    def undecided(self, state: Any) -> tuple[list[lc.HistoryItem], str | None]:
        t, config = lc.run_tenant(self.tenant, self.tenant_key)
        return lc.find_history(state["messages"], self.decided, self.g.scope_of(t), t, config), t

    def settle(self, state: Any, items: Any, ds: Any, t: str | None) -> tuple[Any, list[Any], bool]:
        """The state the model reads once the undecided messages are decided, their
        replacements, and whether a user turn among them was refused."""
        replaced, refused = lc.apply_history(items, ds, self.g)
        scope = self.g.scope_of(t)
        if refused:
            refusal = self.g.messages_of(None, t).refusal
            replaced.append(AIMessage(id=str(uuid4()), content=refusal))
            self.decided.add_all(replaced, scope)
            return state, replaced, True
        if replaced:
            state = {**state, "messages": _replaced(state["messages"], replaced)}
        self.decided.add_all(state["messages"], scope)
        return state, replaced, False

    def response_check(
        self, state: Any, writes: lc.Writes | None
    ) -> tuple[Any, dict[str, Any]] | None:
        """The check of the node's response (the last message it writes, an assistant's)."""
        ai = writes.own if writes is not None else None
        rc = lc.find_response([*state["messages"], ai]) if isinstance(ai, AIMessage) else None
        if ai is None or rc is None:
            return None
        return rc.inputs, _check_args(self.tenant, self.tenant_key, ai, Surface.RESPONSE)

    def other_checks(self, writes: lc.Writes | None) -> tuple[list[lc.Check], Any]:
        """The checks of every other message the node writes, as history is checked."""
        if writes is None:
            return [], None
        t, config = lc.run_tenant(self.tenant, self.tenant_key)
        scope = self.g.scope_of(t)
        checks, items = lc.writes_checks(writes, self.decided, scope, t, config, own=False)
        return checks, (items, scope)

    def answer(
        self,
        state: Any,
        out: Any,
        writes: lc.Writes | None,
        d: Any,
        replaced: list[Any],
        others: tuple[Any, Sequence[Decision]] = (None, ()),
        shown: str | None = None,
    ) -> Any:
        """What the node writes once decided: the response as its decision leaves it (with
        what a stream ``shown`` kept in front of a replacement), every other message as its
        decision leaves it, the replaced state messages first."""
        if writes is None:
            return _with_messages(out, replaced)
        final: BaseMessage | None = None
        ai = writes.own
        if isinstance(ai, AIMessage) and d is not None:
            final = _decided_response(
                self.g, state, ai, d, self.escalate, (self.tenant, self.tenant_key)
            )
            if shown is not None:
                final = lc.shown_first(final, shown, ai)
            self.decided.add(final, self.g.scope_of(d.tenant))
        settled: dict[int, BaseMessage] = {}
        if others[0] is not None:
            items, scope = others[0]
            settled = lc.settle_writes(writes, items, others[1], self.g, self.decided, scope)
        if final is None and not settled and not replaced and not writes.changed:
            return out
        return writes.rebuild(final, settled, before=replaced)

    def decide(self, state: Any, out: Any, replaced: list[Any]) -> Any:
        """The node's return value decided (``out``, the model's, not streamed)."""
        writes = lc.node_writes(out)
        found = self.response_check(state, writes)
        d = self.g.check(found[0], **found[1]) if found is not None else None
        checks, items = self.other_checks(writes)
        ds = lc.run_checks(self.g, checks)
        return self.answer(state, out, writes, d, replaced, (items, ds))

    async def adecide(self, state: Any, out: Any, replaced: list[Any]) -> Any:
        writes = lc.node_writes(out)
        found = self.response_check(state, writes)
        checks, items = self.other_checks(writes)
        if found is not None:
            d, *ds = await lc.arun_checks(
                self.g, [lc.Check(found[0], found[1], inputs=True), *checks]
            )
        else:
            d, ds = None, await lc.arun_checks(self.g, checks)
        return self.answer(state, out, writes, d, replaced, (items, ds))

    def speculative(self, t: str | None, items: list[Any]) -> bool:
        return bool(items) and self.g.policies.get_or_default(t).policy.speculative

    def spoken(self, state: Any, items: list[Any], ds: list[Any], spec: Any, t: str | None) -> Any:
        """The settled state, its replacements, whether a user turn was refused, and whether
        the speculative answer may be used (every check allowed its message unchanged); a
        dropped answer is audited."""
        state, replaced, refused = self.settle(state, items, ds, t)
        usable = not replaced and not refused and all(d.action is Action.ALLOW for d in ds)
        if not usable:
            writes = None if isinstance(spec, BaseException) else lc.node_writes(spec)
            ai = writes.own if writes is not None else None
            lc.record_dropped(self.g, ds, ai if isinstance(ai, AIMessage) else None)
        return state, replaced, refused, usable

    def run(self, state: Any, config: Any) -> Any:
        items, t = self.undecided(state)
        if self.speculative(t, items):
            # the model answers (quietly) while the undecided messages are checked
            ctx = contextvars.copy_context()
            quiet = lc.quiet_config(config)
            with ThreadPoolExecutor(1, thread_name_prefix="guard-plugin-speculate") as pool:
                answer = pool.submit(ctx.run, self.model.invoke, state, quiet)
                ds = lc.run_checks(self.g, [i.check for i in items])
                try:
                    spec: Any = answer.result()
                except Exception as err:  # noqa: BLE001 (raised below if the answer is used)
                    spec = err
            state, replaced, refused, usable = self.spoken(state, items, ds, spec, t)
            if usable:
                if isinstance(spec, BaseException):
                    raise spec
                return self.decide(state, spec, replaced)
        else:
            ds = lc.run_checks(self.g, [i.check for i in items])
            state, replaced, refused = self.settle(state, items, ds, t)
        if refused:
            return {"messages": replaced}
        return self.call(state, config, replaced, t)

    def call(self, state: Any, config: Any, replaced: list[Any], t: str | None) -> Any:
        streamer = self.streamer(state, t, is_async=False)
        if streamer is None:
            return self.decide(
                state, self.model.invoke(state, self.config_for(config, None)), replaced
            )
        final = None
        streamer.start()
        try:
            try:
                out = self.model.invoke(state, self.config_for(config, streamer))
            except lc.StreamStopped:
                out = {"messages": [streamer.partial()]}
            writes = lc.node_writes(out)
            found = self.response_check(state, writes)
            ai = writes.own if writes is not None else None
            d = streamer.decide(ai if isinstance(ai, AIMessage) else None, *(found or ([], None)))
            checks, items = self.other_checks(writes)
            ds = lc.run_checks(self.g, checks)
            result = self.answer(
                state, out, writes, d if found else None, replaced, (items, ds), streamer.shown
            )
            final = _final_of(result)
            return result
        finally:
            streamer.close(final)

    async def arun(self, state: Any, config: Any) -> Any:
        items, t = self.undecided(state)
        if self.speculative(t, items):
            with lc.quiet():  # the task copies this context: its model call shows no tokens
                task = asyncio.ensure_future(self.model.ainvoke(state, lc.quiet_config(config)))
            try:
                ds = await lc.arun_checks(self.g, [i.check for i in items])
            except BaseException:
                task.cancel()
                raise
            spec: Any
            if all(d.action is Action.ALLOW for d in ds):
                try:
                    spec = await task
                except Exception as err:  # noqa: BLE001 (raised below if the answer is used)
                    spec = err
            else:  # the answer cannot be used: stop the model
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                spec = asyncio.CancelledError("a check did not allow the turn")
            state, replaced, refused, usable = self.spoken(state, items, ds, spec, t)
            if usable:
                if isinstance(spec, BaseException):
                    raise spec
                return await self.adecide(state, spec, replaced)
        else:
            ds = await lc.arun_checks(self.g, [i.check for i in items])
            state, replaced, refused = self.settle(state, items, ds, t)
        if refused:
            return {"messages": replaced}
        return await self.acall(state, config, replaced, t)

    async def acall(self, state: Any, config: Any, replaced: list[Any], t: str | None) -> Any:
        streamer = self.streamer(state, t, is_async=True)
        if streamer is None:
            out = await self.model.ainvoke(state, self.config_for(config, None))
            return await self.adecide(state, out, replaced)
        final = None
        await streamer.astart()
        try:
            try:
                out = await self.model.ainvoke(state, self.config_for(config, streamer))
            except lc.StreamStopped:
                out = {"messages": [streamer.partial()]}
            writes = lc.node_writes(out)
            found = self.response_check(state, writes)
            ai = writes.own if writes is not None else None
            d = await streamer.adecide(
                ai if isinstance(ai, AIMessage) else None, *(found or ([], None))
            )
            checks, items = self.other_checks(writes)
            ds = await lc.arun_checks(self.g, checks)
            result = self.answer(
                state, out, writes, d if found else None, replaced, (items, ds), streamer.shown
            )
            final = _final_of(result)
            return result
        finally:
            await streamer.aclose(final)


def _final_of(result: Any) -> AIMessage | None:
    """The response a model node's decided return value writes (for the stream's end)."""
    writes = lc.node_writes(result)
    own = writes.own if writes is not None else None
    return own if isinstance(own, AIMessage) else None


def _with_messages(out: Any, messages: list[Any]) -> Any:
    """A node's return value that writes no message, with ``messages`` written too."""
    if not messages:
        return out
    if out is None:
        return {"messages": messages}
    if isinstance(out, dict):
        return {**out, "messages": messages}
    if isinstance(out, Command) and isinstance(out.update, dict | None):
        return dataclasses.replace(out, update={**(out.update or {}), "messages": messages})
    return out


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
    node = _ResponseNode(g, tools, tenant, tenant_key, escalate, lc.decided_results(g))
    return _node("guard_response", node.run, node.arun)


@dataclass
class _ResponseNode:
    """The steps of :func:`response_guard_node`."""

    g: Guard
    tools: str
    tenant: str | None
    tenant_key: str
    escalate: bool
    decided: lc.Decided

    def route(self, ai: AIMessage | None) -> str:
        return self.tools if ai is not None and ai.tool_calls else END

    def finish(self, rc: lc.ResponseCheck, d: Any, stripped: AIMessage | None) -> Command[Any]:
        outcome = lc.apply_response(rc, d, guard=self.g, escalate=self.escalate)
        final = outcome.messages[0] if outcome.messages else rc.message
        self.decided.add_all([final, *outcome.messages[1:]], self.g.scope_of(d.tenant))
        update = _update(outcome)
        if stripped is not None and not outcome.messages:  # allowed: kept, without the record
            update = {"messages": [stripped]}
        return Command(goto=END if outcome.end else self.route(final), update=update)  # type: ignore[arg-type]

    def held(self, state: Any) -> Command[Any] | AIMessage | None:
        """A held response: the reviewer decides, and the answer takes the placeholder's id.
        A record that does not open gives the message without it (a caller's own, checked as
        one)."""
        ai = _last_ai(state)
        if ai is None or HELD not in ai.additional_kwargs:
            return None
        try:
            bind = _bind(self.tenant, self.tenant_key, ai.id)
            record = lc.unseal(ai.additional_kwargs[HELD], self.g, bind=bind)
            original, d = record["message"], Decision.from_dict(record["decision"])
            requests = [dict(r) for r in record["requests"]]
        except Exception as err:  # noqa: BLE001 (a forged or damaged record: checked as it is)
            lc.held_refused(err)
            plain = _stripped(ai)
            assert isinstance(plain, AIMessage)
            return plain
        resume = lc.interrupt(lc.review_payload(d, Surface.RESPONSE, requests))
        outcome = lc.answer_review(original, requests, resume, d, self.g)
        final = outcome.messages[0] if outcome.messages else original
        final = final.model_copy(update={"id": ai.id})
        assert isinstance(final, AIMessage)
        self.decided.add(final, self.g.scope_of(d.tenant))
        return Command(goto=END if outcome.end else self.route(final), update={"messages": [final]})

    def prepare(self, state: Any) -> Command[Any] | tuple[Any, dict[str, Any], AIMessage | None]:
        """A review, or the response to check (with the message that lost its record)."""
        reviewed = self.held(state)
        if isinstance(reviewed, Command):
            return reviewed
        msgs = state["messages"] if reviewed is None else [*state["messages"][:-1], reviewed]
        rc = lc.find_response(msgs)
        kw = _check_args(self.tenant, self.tenant_key, rc.message, Surface.RESPONSE) if rc else {}
        if rc is None or (
            reviewed is None and self.decided.contains(rc.message, self.g.scope_of(kw["tenant"]))
        ):
            keep = {"messages": [reviewed]} if reviewed is not None else {}
            return Command(goto=self.route(_last_ai({"messages": msgs})), update=keep)
        return rc, kw, reviewed

    def run(self, state: Any) -> Command[Any]:
        step = self.prepare(state)
        if isinstance(step, Command):
            return step
        rc, kw, stripped = step
        return self.finish(rc, self.g.check(rc.inputs, **kw), stripped)

    async def arun(self, state: Any) -> Command[Any]:
        step = self.prepare(state)
        if isinstance(step, Command):
            return step
        rc, kw, stripped = step
        return self.finish(rc, await self.g.acheck(rc.inputs, **kw), stripped)


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
        _speculating_input_node(g, "agent", tenant, tenant_key, escalate, "guard_input"),
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
