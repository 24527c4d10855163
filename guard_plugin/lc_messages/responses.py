"""The assistant turn, its text and each tool call it asks for: find them, apply the
decision (unsafe calls are dropped, their arguments leave the state), and apply a reviewer's
answers to an escalated one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.errors import UnverifiableMedia
from guard_plugin.lc_messages.base import (
    SHOWN_KWARGS,
    Outcome,
    last_index,
    preview,
    reasoning_of,
    shown,
    text_of,
    tool_call_text,
    without_extras,
    without_kwargs,
    without_reasoning,
)
from guard_plugin.lc_messages.review import answer_kinds, read_answers, review_payload
from guard_plugin.lc_messages.run import can_interrupt, interrupt
from guard_plugin.media import FailedPart
from guard_plugin.media.fanout import RESPONSE_MEDIA
from guard_plugin.media.formats import call_text, other_block_text, read_call
from guard_plugin.prompting import SafetyInput
from guard_plugin.types import REASONING, TEXT, Action, PartRef, Surface

__all__ = [
    "ResponseCheck",
    "answer_review",
    "apply_response",
    "find_response",
    "response_inputs",
    "review_requests",
    "without_parts",
]


@dataclass
class ResponseCheck:
    index: int
    message: AIMessage
    inputs: list[SafetyInput | FailedPart]


def find_response(messages: Sequence[BaseMessage]) -> ResponseCheck | None:
    """The last assistant turn, as one input for its text and one per tool call, each with the
    user turn it answers as context."""
    i = last_index(messages, AIMessage)
    if i is None:
        return None
    ai = messages[i]
    assert isinstance(ai, AIMessage)
    inputs = response_inputs(messages, i)
    return ResponseCheck(i, ai, inputs) if inputs else None


def response_inputs(messages: Sequence[BaseMessage], i: int) -> list[SafetyInput | FailedPart]:
    """The inputs of the assistant turn ``messages[i]``: its text, its reasoning, each tool
    call (invalid ones too) and each other block that holds text (a provider's server tool
    call or result, citations, a refusal), with the user turn before it as context; media it
    carries (a generated image, a file) is not classified on the response surface, so each
    such block is an unverifiable part, decided by the tenant's ``media.unverifiable`` (block
    by default)."""
    ai = messages[i]
    assert isinstance(ai, AIMessage)
    h = last_index(messages[:i], HumanMessage)
    context = text_of(messages[h]) if h is not None else ""
    inputs: list[SafetyInput | FailedPart] = []
    text = text_of(ai)
    if text.strip():
        inputs.append(SafetyInput(text=context, response=text, surface=Surface.RESPONSE, part=TEXT))
    reasoning = reasoning_of(ai)
    if reasoning.strip():
        inputs.append(
            SafetyInput(text=context, response=reasoning, surface=Surface.RESPONSE, part=REASONING)
        )
    inputs += _kwargs_inputs(ai, context)
    blocks = ai.content if isinstance(ai.content, list) else []
    for n, block in enumerate(blocks):
        if not isinstance(block, Mapping):
            continue
        said, media = other_block_text(block)
        if media:
            inputs.append(FailedPart(PartRef("content", n), UnverifiableMedia(RESPONSE_MEDIA)))
        elif said.strip():  # a server tool's call or result, citations, a refusal ...
            inputs.append(
                SafetyInput(
                    text=context,
                    response=said,
                    surface=Surface.RESPONSE,
                    tool_name=block.get("name") if isinstance(block.get("name"), str) else None,
                    part=PartRef("content", n),
                )
            )
    for call in ai.tool_calls:
        inputs.append(
            SafetyInput(
                text=context,
                response=tool_call_text(call),
                surface=Surface.RESPONSE,
                tool_name=call.get("name"),
                part=PartRef.tool_call(call.get("id")),
            )
        )
    # calls whose arguments did not parse: never run, but kept in the turn where a user sees
    # them, with the parser's error (which quotes the raw arguments); a decision that does
    # not allow the turn removes them
    for n, bad in enumerate(getattr(ai, "invalid_tool_calls", None) or []):
        said = "\n".join(str(bad.get(k) or "") for k in ("args", "error")).strip()
        if not said:
            continue
        inputs.append(
            SafetyInput(
                text=context,
                response=call_text(bad.get("name"), said),
                surface=Surface.RESPONSE,
                tool_name=bad.get("name"),
                part=PartRef("invalid_tool_call", n),
            )
        )
    return inputs


def _kwargs_inputs(ai: AIMessage, context: str) -> list[SafetyInput | FailedPart]:
    """The inputs of what a provider put beside the content (:data:`SHOWN_KWARGS`): a
    refusal's text, a legacy function call and raw tool calls as calls, a spoken answer's
    transcript, and its audio as an unverifiable part."""
    extra = ai.additional_kwargs or {}
    out: list[SafetyInput | FailedPart] = []
    for key in SHOWN_KWARGS:
        value = extra.get(key)
        if not value:
            continue
        if key == "tool_calls" and (ai.tool_calls or ai.invalid_tool_calls):
            continue  # LangChain parsed them into the turn's calls, which are checked
        ref = PartRef(key)
        said: str
        if key == "function_call":
            said = _raw_call_text(value)
        elif key == "tool_calls" and isinstance(value, list):
            said = "\n".join(_raw_call_text(c) for c in value)
        elif key == "audio":
            out.append(FailedPart(ref, UnverifiableMedia(RESPONSE_MEDIA)))
            said = str(value.get("transcript") or "") if isinstance(value, Mapping) else ""
        else:
            said = value if isinstance(value, str) else other_block_text({"value": value})[0]
        if said.strip():
            out.append(SafetyInput(text=context, response=said, surface=Surface.RESPONSE, part=ref))
    return out


def _raw_call_text(call: Any) -> str:
    """A raw (OpenAI-shaped) tool call or legacy function call as a call, or its strings
    where it names no function."""
    read = read_call(call)
    return call_text(*read[:2]) if read is not None else other_block_text({"value": call})[0]


def review_requests(ai: AIMessage, d: Decision, guard: Guard) -> list[dict[str, Any]]:
    """What a reviewer is asked about an escalated response: each unsafe tool call, and the
    text when it is unsafe (or when no call is), with the reasoning and the other blocks
    judged unsafe (a reviewer who edits or rejects the text removes them with it)."""
    unsafe = {d.parts[i].ref for i in d.withheld_parts}
    calls = [(c, PartRef.tool_call(c.get("id"))) for c in ai.tool_calls]
    requests = [
        {"name": c["name"], "args": c.get("args", {}), "part": ref.label}
        for c, ref in calls
        if ref in unsafe
    ]
    blocks = sorted({r.block for r in unsafe if r.source == "content" and r.block is not None})
    beside = any(r.source in SHOWN_KWARGS for r in unsafe)
    if TEXT in unsafe or blocks or beside or not requests:
        args: dict[str, Any] = {"text": preview(text_of(ai), shown(d, guard))}
        if REASONING in unsafe:
            args["reasoning"] = preview(reasoning_of(ai), shown(d, guard))
        content = ai.content if isinstance(ai.content, list) else []
        found = [content[n] for n in blocks if n < len(content)]
        said = [other_block_text(b)[0] for b in found if isinstance(b, Mapping)]
        if any(said):  # what else the turn carries that was judged unsafe
            args["content"] = [preview(s, shown(d, guard)) for s in said if s]
        for i in _kwargs_inputs(ai, ""):
            if i.part in unsafe and isinstance(i, SafetyInput) and i.response:
                args[i.part.source] = preview(i.response, shown(d, guard))
        requests.insert(0, {"name": "assistant_response", "args": args, "part": TEXT.label})
    return requests


def answer_review(
    ai: AIMessage,
    requests: list[dict[str, Any]],
    resume: Any,
    d: Decision,
    guard: Guard,
    *,
    answer_calls: bool = False,
) -> Outcome:
    """Apply a reviewer's resume value to an escalated response: approve keeps, edit
    replaces, reject withholds; anything malformed counts as a rejection. The answers are
    audited against the decision. With ``answer_calls`` (the agent middleware), a rejected
    or responded tool call is answered as LangChain's human-in-the-loop answers it: the call
    stays, with a tool message carrying the reviewer's reason or response, so the model goes
    on; its arguments, judged unsafe, do not stay in the history."""
    answers = read_answers(resume, len(requests), d, guard)
    kinds = answer_kinds(answers, requests, edits=True)
    if all(k == "approve" for k in kinds):
        action = Action.ALLOW
    elif all(k == "reject" for k in kinds):
        action = Action.BLOCK
    else:
        action = Action.REWRITE
    tool = next((r["name"] for r in requests if r["part"] != TEXT.label), None)
    guard.record_review(d, kinds, action=action, tool_name=tool)
    answers = [{**a, "type": k} for a, k in zip(answers, kinds, strict=True)]
    return _apply_review(ai, requests, answers, d, guard, answer_calls=answer_calls)


def apply_response(rc: ResponseCheck, d: Decision, *, guard: Guard, escalate: bool) -> Outcome:
    ai = rc.message
    unsafe = {d.parts[i].ref for i in d.withheld_parts}
    action = d.action
    if action is Action.ESCALATE:
        if escalate and can_interrupt():
            requests = review_requests(ai, d, guard)
            resume = interrupt(review_payload(d, Surface.RESPONSE, requests))
            return answer_review(ai, requests, resume, d, guard)
        action = Action(guard.policy_of(d).escalation.fallback)
    if action is Action.ALLOW:
        return Outcome(decisions=[d])
    refusal = guard.messages_of(d).refusal
    if action is Action.BLOCK or (TEXT in unsafe and not ai.tool_calls):
        blocked = without_extras(ai).model_copy(
            update={"content": refusal, "tool_calls": [], "invalid_tool_calls": []}
        )
        return Outcome([blocked], end=True, decisions=[d])
    # rewrite: unsafe calls are dropped (their arguments leave the state) and the text says
    # so; unsafe reasoning leaves the turn
    ai = without_parts(ai, unsafe, d, guard)
    return _rebuild(ai, d, guard, drop=unsafe, text=refusal if TEXT in unsafe else None)


def _rebuild(
    ai: AIMessage,
    d: Decision,
    guard: Guard,
    *,
    drop: set[PartRef],
    text: str | None,
    edits: Mapping[PartRef, Mapping[str, Any]] | None = None,
    reasons: Sequence[str] = (),
    answered: Mapping[PartRef, Mapping[str, Any]] | None = None,
) -> Outcome:
    if text is not None:  # a new text: the old text's reasoning and the rest go with it
        ai = without_extras(ai)
    kept: list[Any] = []
    dropped: list[str] = []
    answers: list[BaseMessage] = []
    for call in ai.tool_calls:
        label = PartRef.tool_call(call.get("id"))
        if label in drop:
            dropped.append(call["name"])
        elif answered and label in answered:
            # the call stays (its answer needs it), without the arguments judged unsafe
            kept.append({**call, "args": {}})
            answers.append(_answer(call, answered[label]))
        elif edits and label in edits:
            edited = edits[label]
            kept.append(
                {
                    **call,
                    "name": edited.get("name", call["name"]),
                    "args": dict(edited.get("args", call.get("args", {}))),
                }
            )
        else:
            kept.append(call)
    content: Any = text if text is not None else _without_blocks(ai.content, drop, d, guard)
    # raw copies of the calls would outlive a change to them (and stand in for them, sent back
    # to the model, once none is left)
    ai = without_kwargs(ai, ["tool_calls"])
    if dropped:
        calls = ", ".join(dropped)
        why = "".join(f" {r}" for r in reasons)
        noun = "tool calls" if len(dropped) > 1 else "tool call"
        note = f"{guard.messages_of(d).redaction}: {noun} {calls} not made.{why}"
        body = text if text is not None else text_of(ai)
        content = f"{body}\n{note}" if body and body.strip() else note
    new = ai.model_copy(update={"content": content, "tool_calls": kept, "invalid_tool_calls": []})
    return Outcome([new, *answers], end=not kept, decisions=[d])


def without_parts(ai: AIMessage, unsafe: set[PartRef], d: Decision, guard: Guard) -> AIMessage:
    """``ai`` without what beside its text and tool calls was judged ``unsafe``: its reasoning,
    the provider fields of :data:`SHOWN_KWARGS`, and content blocks (the redaction in each
    one's place)."""
    if REASONING in unsafe:
        ai = without_reasoning(ai)
    ai = without_kwargs(ai, [r.source for r in unsafe if r.source in SHOWN_KWARGS])
    content = _without_blocks(ai.content, unsafe, d, guard)
    return ai if content is ai.content else ai.model_copy(update={"content": content})


def _without_blocks(content: Any, drop: set[PartRef], d: Decision, guard: Guard) -> Any:
    """List content with each block a rewrite withholds (a server tool's result judged
    unsafe, say) in the redaction's place."""
    gone = {r.block for r in drop if r.source == "content" and r.block is not None}
    if not gone or not isinstance(content, list):
        return content
    note = {"type": "text", "text": guard.messages_of(d).redaction}
    return [note if n in gone else b for n, b in enumerate(content)]


def _apply_review(
    ai: AIMessage,
    requests: list[dict[str, Any]],
    answers: list[dict[str, Any]],
    d: Decision,
    guard: Guard,
    *,
    answer_calls: bool = False,
) -> Outcome:
    """Apply a reviewer's answers: approve keeps, edit replaces, reject withholds (or, with
    ``answer_calls``, answers the call), respond answers the call for the tool."""
    drop: set[PartRef] = set()
    edits: dict[PartRef, Mapping[str, Any]] = {}
    answered: dict[PartRef, Mapping[str, Any]] = {}
    reasons: list[str] = []
    text: str | None = None
    for req, ans in zip(requests, answers, strict=True):
        kind = ans.get("type")
        edited = ans.get("edited_action") if isinstance(ans.get("edited_action"), Mapping) else None
        ref = PartRef.parse(req["part"])
        if ref == TEXT:
            if kind == "edit" and edited is not None:
                text = str((edited.get("args") or {}).get("text", ""))
            elif kind != "approve":
                text = str(ans.get("message") or guard.messages_of(d).refusal)
        elif kind == "edit" and edited is not None:
            edits[ref] = edited
        elif kind == "respond" or (kind != "approve" and answer_calls):
            answered[ref] = ans
        elif kind != "approve":
            drop.add(ref)
            if ans.get("message"):
                reasons.append(str(ans["message"]))
    if not drop and not edits and not answered and text is None:
        return Outcome(decisions=[d])
    return _rebuild(
        ai, d, guard, drop=drop, text=text, edits=edits, reasons=reasons, answered=answered
    )


def _answer(call: Mapping[str, Any], ans: Mapping[str, Any]) -> ToolMessage:
    """The tool message that answers a call a reviewer declined or answered for the tool."""
    name, call_id = call.get("name", "tool"), call.get("id")
    if ans.get("type") == "respond":
        content, status = str(ans.get("message", "")), "success"
    elif ans.get("message"):
        content, status = f"A reviewer declined the call to `{name}`: {ans['message']}", "error"
    else:
        content = (
            f"A reviewer declined the call to `{name}` (id {call_id}); it was not run. "
            "Do not make it again unless the user asks for it."
        )
        status = "error"
    return ToolMessage(content=content, name=name, tool_call_id=call_id, status=status)
