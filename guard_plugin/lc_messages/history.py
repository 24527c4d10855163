"""History a caller sent: every message the guard has not decided is checked before a model
reads it, whatever its role and position.

A caller of an agent (a LangGraph server client, an app that replays a transcript) can send a
whole conversation: an unsafe user turn followed by an innocent one, an assistant turn it wrote
itself, tool results no tool produced. Only the messages this guard decided or produced (its
:class:`~guard_plugin.lc_messages.held.Decided` memory, per tenant and policy, by content) are
trusted; every other one is checked here, in one batch with the current turn:

- user, system and other turns as input;
- tool results as tool output (with their artifact);
- assistant turns as responses (text, reasoning and each tool call, with the user turn they
  answer).

What a decision leaves is applied in place (same ids): an unsafe user turn becomes the
redaction and the turn is refused, an unsafe tool result the tool refusal, an unsafe
assistant turn the refusal (its reasoning removed) with the arguments of its calls emptied
(the calls stay, so the history stays valid for the model).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.lc_messages.base import Check, without_extras, without_kwargs
from guard_plugin.lc_messages.held import Decided
from guard_plugin.lc_messages.responses import response_inputs, without_parts
from guard_plugin.lc_messages.run import check_args
from guard_plugin.lc_messages.tools import apply_tool_result, tool_check_args
from guard_plugin.types import TEXT, Action, PartRef, Surface

__all__ = ["HistoryItem", "apply_history", "find_history"]


@dataclass(frozen=True)
class HistoryItem:
    """One message to check, and its check."""

    index: int
    message: BaseMessage
    check: Check


def find_history(
    messages: Sequence[BaseMessage],
    decided: Decided,
    scope: str,
    tenant: str | None,
    config: Mapping[str, Any] | None,
    *,
    skip: Collection[int] = (),
) -> list[HistoryItem]:
    """The messages of ``messages`` the guard has not decided (``skip``: indices checked by
    the caller's own rule, such as the current turn), each with its check."""
    out: list[HistoryItem] = []
    for i, m in enumerate(messages):
        if i in skip or decided.contains(m, scope):
            continue
        if isinstance(m, ToolMessage):
            out.append(HistoryItem(i, m, Check(m.content, tool_check_args(m, tenant, config))))
        elif isinstance(m, AIMessage):
            inputs = response_inputs(messages, i)
            if inputs:
                kw = check_args(Surface.RESPONSE, tenant, config, m.id)
                out.append(HistoryItem(i, m, Check(inputs, kw, inputs=True)))
        elif m.content:
            kw = check_args(Surface.INPUT, tenant, config, m.id)
            out.append(HistoryItem(i, m, Check(m.content, kw)))
    return out


def apply_history(
    items: Sequence[HistoryItem], decisions: Sequence[Decision], guard: Guard
) -> tuple[list[BaseMessage], bool]:
    """The replacements (same ids) for the history items that their decisions do not allow,
    and whether a user turn among them was refused (then the turn ends with the refusal).
    Escalation does not apply to history (a past turn cannot wait for a person): the
    tenant's escalation fallback decides."""
    updates: list[BaseMessage] = []
    refused = False
    for item, d in zip(items, decisions, strict=True):
        action = d.action
        if action is Action.ESCALATE:
            action = Action(guard.policy_of(d).escalation.fallback)
        if action is Action.ALLOW:
            continue
        messages = guard.messages_of(d)
        m = item.message
        if isinstance(m, ToolMessage):
            updates += apply_tool_result(m, d, guard=guard, escalate=False).messages
        elif isinstance(m, AIMessage):
            unsafe = {d.parts[i].ref for i in d.withheld_parts}
            whole = action is Action.BLOCK
            calls = [
                {**c, "args": {}} if whole or PartRef.tool_call(c.get("id")) in unsafe else c
                for c in m.tool_calls
            ]
            text_goes = whole or TEXT in unsafe
            if text_goes:  # the refusal in its place: nothing of the turn beside it stays
                m = without_extras(m)
            else:  # unsafe blocks, reasoning and provider fields go; the rest stays
                m = without_kwargs(without_parts(m, unsafe, d, guard), ["tool_calls"])
            content = messages.refusal if text_goes else m.content
            updates.append(
                m.model_copy(
                    update={"content": content, "tool_calls": calls, "invalid_tool_calls": []}
                )
            )
        elif action is Action.REWRITE and d.replacement:
            updates.append(m.model_copy(update={"content": d.replacement}))
        else:
            updates.append(m.model_copy(update={"content": messages.redaction}))
            refused = refused or isinstance(m, HumanMessage)
    return updates, refused
