"""A tool call about to run: decided with the assistant turn that asks for it, or checked now.

The response check decides a model's tool calls before they reach the state, so a tool
normally runs a call the guard has already decided. But a caller can put an assistant turn of
its own into the state and send the run straight to the tool node: a LangGraph client's
``Command(update={"messages": [..., AIMessage(tool_calls=[...])]}, goto="tools")``, or
``update_state`` on a paused thread. The tool would then run a call no guard read, with
whatever side effect it has. So before a tool runs, the turn asking for the call must be one
this guard decided (:class:`~guard_plugin.lc_messages.held.Decided`), asking for the call as
it is to run (a middleware between the turn and the tool may change it: an edit in
LangChain's human-in-the-loop); otherwise the call is
checked as a response (its name and arguments, with the user turn before it), and a call its
decision does not allow is not run: it is answered with the tenant's tool refusal (an
escalation takes the tenant's fallback, since the call was never the model's to review).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.lc_messages.base import Check, last_index, text_of, tool_call_text
from guard_plugin.lc_messages.held import Decided
from guard_plugin.lc_messages.run import check_args
from guard_plugin.prompting import SafetyInput
from guard_plugin.types import Action, PartRef, Surface

__all__ = ["call_check", "refused_call"]


def _asking_turn(messages: Sequence[Any], call_id: str | None) -> int | None:
    """The index of the last assistant turn that asks for ``call_id``."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, AIMessage) and any(c.get("id") == call_id for c in m.tool_calls):
            return i
    return None


def _same_call(turn: Any, call: Mapping[str, Any]) -> bool:
    """Whether the turn asks for ``call`` as it is to run (a middleware may have changed the
    call after the turn was decided: a reviewer's edit in LangChain's human-in-the-loop)."""
    asked = next((c for c in turn.tool_calls if c.get("id") == call.get("id")), None)
    return (
        asked is not None
        and asked.get("name") == call.get("name")
        and asked.get("args") == call.get("args")
    )


def call_check(
    request: Any,
    decided: Decided,
    scope: str,
    tenant: str | None,
    config: Mapping[str, Any] | None,
) -> Check | None:
    """The check the call of ``request`` (a ``ToolCallRequest``) needs before it runs: None
    when the assistant turn asking for it, in the state the tool runs in, was decided by this
    guard and asks for the call as it is."""
    call: Mapping[str, Any] = request.tool_call
    state = request.state
    found = state.get("messages") if isinstance(state, Mapping) else state
    msgs: list[BaseMessage] = list(found) if isinstance(found, Sequence) else []
    i = _asking_turn(msgs, call.get("id"))
    if i is not None and decided.contains(msgs[i], scope) and _same_call(msgs[i], call):
        return None
    h = last_index(msgs[:i], HumanMessage) if i is not None else None
    context = text_of(msgs[h]) if h is not None else ""
    name = call.get("name")
    found = SafetyInput(
        text=context,
        response=tool_call_text(call),
        surface=Surface.RESPONSE,
        tool_name=name if isinstance(name, str) else None,
        part=PartRef.tool_call(call.get("id")),
    )
    ref = msgs[i].id if i is not None else None
    return Check([found], check_args(Surface.RESPONSE, tenant, config, ref), inputs=True)


def refused_call(
    request: Any, d: Decision, guard: Guard, decided: Decided, scope: str
) -> ToolMessage | None:
    """The answer to the call of ``request`` when its decision does not let it run (None:
    it may run), remembered as decided."""
    call: Mapping[str, Any] = request.tool_call
    action = d.action
    if action is Action.ESCALATE:
        action = Action(guard.policy_of(d).escalation.fallback)
    if action is Action.ALLOW:
        return None
    name = call.get("name")
    refused = ToolMessage(
        content=guard.messages_of(d).tool_refusal,
        tool_call_id=str(call.get("id")),
        name=name if isinstance(name, str) else None,
        status="error",
    )
    decided.add(refused, scope)
    return refused
