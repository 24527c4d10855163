"""langchain-core messages <-> the core, shared by the LangChain and LangGraph adapters.

Three checks, each split the same way: *find* what to check in the message list (pure),
*check* it with the Guard (the only step with a sync and an async form, both one line), and
*apply* the decision as message updates (pure, except escalation, which calls LangGraph's
``interrupt()`` and so must run where a node may be re-run from its start).

Message updates always reuse the original message id, so the ``add_messages`` reducer replaces
the message in place: no unsafe message stays in state under another id.
"""

from __future__ import annotations

import base64
import json
import threading
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

try:
    from langchain_core.messages import (
        AIMessage,
        BaseMessage,
        HumanMessage,
        ToolMessage,
        message_to_dict,
        messages_from_dict,
    )
except ImportError as _err:  # pragma: no cover
    raise ImportError(
        "the LangChain / LangGraph adapters need langchain-core: "
        "pip install 'guard-plugin[langchain]' or 'guard-plugin[langgraph]'"
    ) from _err

from guard_plugin.decision import Decision
from guard_plugin.errors import GuardError
from guard_plugin.guard import Guard
from guard_plugin.media.rewrite import artifact_withheld, rewrite_content
from guard_plugin.prompting import SafetyInput
from guard_plugin.types import Action, Surface

__all__ = [
    "Outcome",
    "ResponseCheck",
    "answer_review",
    "apply_input",
    "apply_response",
    "apply_tool_result",
    "check_id",
    "find_input",
    "find_response",
    "find_tool_results",
    "policy_of",
    "resolve_tenant",
    "review_requests",
    "tool_check_args",
]

REVIEW_DECISIONS = ["approve", "edit", "reject", "respond"]
"""Every answer type a reviewer may give (LangChain's human-in-the-loop decision types)."""

# What each kind of review request accepts; any other answer counts as a rejection.
_ALLOWED = {
    "tool_call": ["approve", "edit", "reject", "respond"],  # as HumanInTheLoopMiddleware
    "text": ["approve", "edit", "reject"],  # an assistant's text: edit replaces it
    "tool_result": ["approve", "reject", "respond"],  # respond answers for the tool
    "input": ["approve", "reject"],
}


def allowed_decisions(request: Mapping[str, Any]) -> list[str]:
    """The answer types a review request accepts, from its ``part`` or its name."""
    part = str(request.get("part", ""))
    if part.startswith("tool_call:"):
        return _ALLOWED["tool_call"]
    if part == "text":
        return _ALLOWED["text"]
    name = str(request.get("name", ""))
    if name.startswith("tool_result:"):
        return _ALLOWED["tool_result"]
    return _ALLOWED["input"]


@dataclass
class Outcome:
    """Message updates for the state, and whether the turn ends here."""

    messages: list[BaseMessage] = field(default_factory=list)
    end: bool = False
    decisions: list[Decision] = field(default_factory=list)


# -- tenant ----------------------------------------------------------------------------------


def resolve_tenant(
    explicit: str | None, context: Any, config: Mapping[str, Any] | None, key: str
) -> str | None:
    """The tenant: explicit, else the runtime context's ``key`` (attribute or item), else the
    run config's ``configurable[key]``."""
    if explicit is not None:
        return explicit
    if context is not None:
        value = context.get(key) if isinstance(context, Mapping) else getattr(context, key, None)
        if value is not None:
            return str(value)
    if config:
        value = (config.get("configurable") or {}).get(key)
        if value is not None:
            return str(value)
    return None


def check_id(
    config: Mapping[str, Any] | None, message_id: str | None, surface: Surface
) -> str | None:
    """A request id for checking one message on one surface in one thread: a check that runs
    again when a paused run resumes gets the same id, and so does the review of it. None
    (the guard makes a random one) outside a thread or for a message without an id."""
    thread = ((config or {}).get("configurable") or {}).get("thread_id")
    if thread is None or not message_id:
        return None
    return f"{thread}:{message_id}:{surface.value}"


# -- text helpers -----------------------------------------------------------------------------


def text_of(msg: BaseMessage | None) -> str:
    if msg is None:
        return ""
    content = msg.content
    if isinstance(content, str):
        return content
    parts = [
        b if isinstance(b, str) else b.get("text", "")
        for b in content
        if isinstance(b, (str, dict))
    ]
    return "\n".join(p for p in parts if isinstance(p, str) and p)


def _last_index(messages: Sequence[BaseMessage], kind: type) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], kind):
            return i
    return None


def tool_call_text(call: Mapping[str, Any]) -> str:
    args = json.dumps(call.get("args", {}), ensure_ascii=False, sort_keys=True, default=str)
    return f"Calling tool {call.get('name')} with arguments {args}"


def _preview(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# -- input ------------------------------------------------------------------------------------


def find_input(messages: Sequence[BaseMessage]) -> tuple[int, HumanMessage] | None:
    """The user turn of this run: the last human message, if nothing answered it yet."""
    i = _last_index(messages, HumanMessage)
    if i is None or any(isinstance(m, AIMessage) for m in messages[i + 1 :]):
        return None
    msg = messages[i]
    return (i, msg) if msg.content else None  # type: ignore[return-value]


def apply_input(msg: HumanMessage, d: Decision, *, guard: Guard, escalate: bool) -> Outcome:
    action, _ = _review(
        d,
        Surface.INPUT,
        [{"name": "user_message", "args": {"text": _preview(text_of(msg))}}],
        guard,
        escalate,
    )
    if action is Action.ALLOW:
        return Outcome(decisions=[d])
    if action is Action.REWRITE:
        return Outcome([msg.model_copy(update={"content": d.replacement})], decisions=[d])
    messages = policy_of(d, guard).messages
    return Outcome(
        [
            msg.model_copy(update={"content": messages.redaction}),
            AIMessage(content=messages.refusal),
        ],
        end=True,
        decisions=[d],
    )


# -- tool results ------------------------------------------------------------------------------


def find_tool_results(messages: Sequence[BaseMessage]) -> list[ToolMessage]:
    """Tool results since the last assistant turn (the ones the model has not seen)."""
    i = _last_index(messages, AIMessage)
    if i is None:
        return []
    return [m for m in messages[i + 1 :] if isinstance(m, ToolMessage)]


def tool_check_args(
    msg: ToolMessage, tenant: str | None, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The keyword arguments of a tool-result check (``Guard.check_content``)."""
    return {
        "surface": Surface.TOOL,
        "tenant": tenant,
        "tool_name": msg.name,
        "artifact": msg.artifact,
        "request_id": check_id(config, msg.id, Surface.TOOL),
    }


def apply_tool_result(msg: ToolMessage, d: Decision, *, guard: Guard, escalate: bool) -> Outcome:
    req = [
        {"name": f"tool_result:{msg.name or 'tool'}", "args": {"content": _preview(text_of(msg))}}
    ]
    action, responded = _review(d, Surface.TOOL, req, guard, escalate, msg.name)
    if action is Action.ALLOW:
        return Outcome(decisions=[d])
    if responded is not None:  # the reviewer answered for the tool
        answer = {"content": responded, "status": "success", "artifact": None}
        return Outcome([msg.model_copy(update=answer)], decisions=[d])
    if action is Action.REWRITE:
        try:
            update: dict[str, Any] = {"content": rewrite_content(msg.content, d)}
        except Exception:  # the safe parts cannot be rebuilt: withhold the whole result
            update = {
                "content": d.replacement or policy_of(d, guard).messages.redaction,
                "artifact": None,
            }
        if artifact_withheld(d):
            update["artifact"] = None
        return Outcome([msg.model_copy(update=update)], decisions=[d])
    replacement = d.replacement or policy_of(d, guard).messages.tool_refusal
    return Outcome(
        [msg.model_copy(update={"content": replacement, "status": "error", "artifact": None})],
        decisions=[d],
    )


# -- responses and tool calls -------------------------------------------------------------------


@dataclass
class ResponseCheck:
    index: int
    message: AIMessage
    inputs: list[SafetyInput]


def find_response(messages: Sequence[BaseMessage]) -> ResponseCheck | None:
    """The last assistant turn, as one input for its text and one per tool call, each with the
    user turn it answers as context."""
    i = _last_index(messages, AIMessage)
    if i is None:
        return None
    ai: AIMessage = messages[i]  # type: ignore[assignment]
    h = _last_index(messages[:i], HumanMessage)
    context = text_of(messages[h]) if h is not None else ""
    inputs = []
    text = text_of(ai)
    if text.strip():
        inputs.append(
            SafetyInput(text=context, response=text, surface=Surface.RESPONSE, part="text")
        )
    for call in ai.tool_calls:
        inputs.append(
            SafetyInput(
                text=context,
                response=tool_call_text(call),
                surface=Surface.RESPONSE,
                tool_name=call.get("name"),
                part=f"tool_call:{call.get('id')}",
            )
        )
    return ResponseCheck(i, ai, inputs) if inputs else None


def review_requests(ai: AIMessage, d: Decision) -> list[dict[str, Any]]:
    """What a reviewer is asked about an escalated response: each unsafe tool call, and the
    text when it is unsafe (or when no call is)."""
    unsafe = {d.parts[i].part for i in d.withheld_parts}
    requests = [
        {"name": c["name"], "args": c.get("args", {}), "part": f"tool_call:{c.get('id')}"}
        for c in ai.tool_calls
        if f"tool_call:{c.get('id')}" in unsafe
    ]
    if "text" in unsafe or not requests:
        requests.insert(
            0,
            {"name": "assistant_response", "args": {"text": _preview(text_of(ai))}, "part": "text"},
        )
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
    answers = _decisions(resume, len(requests))
    kinds = _kinds(answers, requests, edits=True)
    if all(k == "approve" for k in kinds):
        action = Action.ALLOW
    elif all(k == "reject" for k in kinds):
        action = Action.BLOCK
    else:
        action = Action.REWRITE
    tool = next((r["name"] for r in requests if r["part"] != "text"), None)
    guard.record_review(d, kinds, action=action, tool_name=tool)
    answers = [{**a, "type": k} for a, k in zip(answers, kinds, strict=True)]
    return _apply_review(ai, requests, answers, d, guard, answer_calls=answer_calls)


def _kinds(
    answers: Sequence[Mapping[str, Any]],
    requests: Sequence[Mapping[str, Any]],
    *,
    edits: bool = False,
) -> list[str]:
    """The answer types as audited, as they are applied: a type the request does not accept
    counts as a rejection, and so does an edit without an edited action where ``edits``
    apply, and a ``respond`` without a message."""
    kinds = []
    for a, r in zip(answers, requests, strict=True):
        kind = a.get("type")
        if edits and kind == "edit" and not isinstance(a.get("edited_action"), Mapping):
            kind = "reject"
        if kind == "respond" and not isinstance(a.get("message"), str):
            kind = "reject"
        kinds.append(str(kind) if kind in allowed_decisions(r) else "reject")
    return kinds


def apply_response(rc: ResponseCheck, d: Decision, *, guard: Guard, escalate: bool) -> Outcome:
    ai = rc.message
    unsafe = {d.parts[i].part for i in d.withheld_parts}
    action = d.action
    if action is Action.ESCALATE:
        if escalate and can_interrupt():
            requests = review_requests(ai, d)
            resume = interrupt(review_payload(d, Surface.RESPONSE, requests))
            return answer_review(ai, requests, resume, d, guard)
        action = Action(policy_of(d, guard).escalation.fallback)
    if action is Action.ALLOW:
        return Outcome(decisions=[d])
    refusal = policy_of(d, guard).messages.refusal
    if action is Action.BLOCK or ("text" in unsafe and not ai.tool_calls):
        blocked = ai.model_copy(
            update={"content": refusal, "tool_calls": [], "invalid_tool_calls": []}
        )
        return Outcome([blocked], end=True, decisions=[d])
    # rewrite: unsafe calls are dropped (their arguments leave the state) and the text says so
    return _rebuild(ai, d, guard, drop=unsafe, text=refusal if "text" in unsafe else None)


def _rebuild(
    ai: AIMessage,
    d: Decision,
    guard: Guard,
    *,
    drop: set[str],
    text: str | None,
    edits: Mapping[str, Mapping[str, Any]] | None = None,
    reasons: Sequence[str] = (),
    answered: Mapping[str, Mapping[str, Any]] | None = None,
) -> Outcome:
    kept: list[Any] = []
    dropped: list[str] = []
    answers: list[BaseMessage] = []
    for call in ai.tool_calls:
        label = f"tool_call:{call.get('id')}"
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
    content: Any = text if text is not None else ai.content
    if dropped:
        calls = ", ".join(dropped)
        why = "".join(f" {r}" for r in reasons)
        noun = "tool calls" if len(dropped) > 1 else "tool call"
        note = f"{policy_of(d, guard).messages.redaction}: {noun} {calls} not made.{why}"
        body = text if text is not None else text_of(ai)
        content = f"{body}\n{note}" if body and body.strip() else note
    new = ai.model_copy(update={"content": content, "tool_calls": kept, "invalid_tool_calls": []})
    return Outcome([new, *answers], end=not kept, decisions=[d])


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
    drop: set[str] = set()
    edits: dict[str, Mapping[str, Any]] = {}
    answered: dict[str, Mapping[str, Any]] = {}
    reasons: list[str] = []
    text: str | None = None
    for req, ans in zip(requests, answers, strict=True):
        kind = ans.get("type")
        edited = ans.get("edited_action") if isinstance(ans.get("edited_action"), Mapping) else None
        if req["part"] == "text":
            if kind == "edit" and edited is not None:
                text = str((edited.get("args") or {}).get("text", ""))
            elif kind != "approve":
                text = str(ans.get("message") or policy_of(d, guard).messages.refusal)
        elif kind == "edit" and edited is not None:
            edits[req["part"]] = edited
        elif kind == "respond" or (kind != "approve" and answer_calls):
            answered[req["part"]] = ans
        elif kind != "approve":
            drop.add(req["part"])
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


def policy_of(d: Decision, guard: Guard) -> Any:
    """The policy a decision was made under (the default for a refused tenant)."""
    try:
        return guard.policies.get(d.tenant).policy
    except GuardError:
        return guard.policies.default.policy


# -- escalation ---------------------------------------------------------------------------------


def review_payload(
    d: Decision, surface: Surface, action_requests: list[dict[str, Any]]
) -> dict[str, Any]:
    """An interrupt payload in the shape of LangChain's HITL requests, plus the safety details,
    so review UIs built for ``HumanInTheLoopMiddleware`` work unchanged."""
    return {
        "action_requests": [
            {
                "name": r["name"],
                "args": r.get("args", {}),
                "description": (
                    f"Content safety review ({surface.value}): "
                    f"{', '.join(d.categories) or d.error_kind or 'unsafe'}"
                ),
            }
            for r in action_requests
        ],
        "review_configs": [
            {"action_name": r["name"], "allowed_decisions": list(allowed_decisions(r))}
            for r in action_requests
        ],
        "safety": {
            "surface": surface.value,
            "status": d.status,
            "categories": list(d.categories),
            "reasoning": d.reasoning,
            "error": d.error,
            "policy_id": d.policy_id,
            "policy_version": d.policy_version,
            "request_id": d.request_id,
            "tenant": d.tenant,
        },
    }


def _decisions(resume: Any, n: int) -> list[dict[str, Any]]:
    """The reviewer's answers; anything malformed counts as a rejection (fail closed)."""
    items = resume.get("decisions") if isinstance(resume, Mapping) else None
    if (
        not isinstance(items, list)
        or len(items) != n
        or not all(isinstance(x, Mapping) for x in items)
    ):
        return [{"type": "reject", "message": "malformed review answer"}] * n
    return [dict(x) for x in items]


def can_interrupt() -> bool:
    """True inside a graph run that has a checkpointer; without one an interrupt could never
    be resumed, so escalation falls back to the tenant's escalation policy instead."""
    try:
        from langgraph.config import get_config

        # LangGraph's key for the run's checkpointer (None when compiled without one).
        return get_config().get("configurable", {}).get("__pregel_checkpointer") is not None
    except Exception:
        return False


def interrupt(payload: dict[str, Any]) -> Any:
    """LangGraph's ``interrupt()``: pauses the run (raises) until it is resumed, then returns
    the resume value."""
    from langgraph.types import interrupt as _interrupt

    return _interrupt(payload)


def _review(
    d: Decision,
    surface: Surface,
    requests: list[dict[str, Any]],
    guard: Guard,
    escalate: bool,
    tool_name: str | None = None,
) -> tuple[Action, str | None]:
    """For ``escalate``: ask a human (interrupt) where the adapter may, else fall back. Returns
    the action to apply and, for a ``respond`` answer, the reviewer's text to put in place of
    the content. Approval gives ``ALLOW``; a type the request does not accept, ``BLOCK``."""
    if d.action is not Action.ESCALATE:
        return d.action, None
    if not escalate or not can_interrupt():
        return Action(policy_of(d, guard).escalation.fallback), None
    answers = _decisions(interrupt(review_payload(d, surface, requests)), len(requests))
    kinds = _kinds(answers, requests)
    responded = [str(a["message"]) for a, k in zip(answers, kinds, strict=True) if k == "respond"]
    if all(k == "approve" for k in kinds):
        action = Action.ALLOW
    elif responded and all(k in ("approve", "respond") for k in kinds):
        action = Action.REWRITE
    else:
        action = Action.BLOCK
    guard.record_review(d, kinds, action=action, tool_name=tool_name)
    return action, "\n".join(responded) if action is Action.REWRITE else None


# -- shared by the tool boundary of both adapters --------------------------------------------


class Decided:
    """Messages decided where they were made (a tool result at the tool boundary, a response
    in a guarded model node), remembered in this process (the newest 4,096: a key, the tool
    call id or the message id, and a fingerprint of the content as decided), so the next
    guard does not check them again. A message not found (another process, an old one, a
    caller's own, or one changed since) is simply checked."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._data: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(msg: BaseMessage) -> str | None:
        return msg.tool_call_id if isinstance(msg, ToolMessage) else msg.id

    @staticmethod
    def fingerprint(msg: BaseMessage) -> int:
        calls = msg.tool_calls if isinstance(msg, AIMessage) else None
        return hash((type(msg).__name__, Decided._key(msg), repr(msg.content), repr(calls)))

    def add(self, msg: BaseMessage) -> None:
        key = self._key(msg)
        if key is None:
            return
        with self._lock:
            self._data[key] = self.fingerprint(msg)
            if len(self._data) > self._size:
                self._data.popitem(last=False)

    def __contains__(self, msg: object) -> bool:
        if not isinstance(msg, BaseMessage) or self._key(msg) is None:
            return False
        with self._lock:
            known = self._data.get(self._key(msg))  # type: ignore[arg-type]
        return known is not None and known == self.fingerprint(msg)


_DECIDED: weakref.WeakKeyDictionary[Guard, Decided] = weakref.WeakKeyDictionary()
_DECIDED_LOCK = threading.Lock()


def decided_results(guard: Guard) -> Decided:
    """The record of tool results decided at the tool boundary with ``guard`` (one per
    Guard, shared by the middleware, the guarded tool node and the tool guard node)."""
    with _DECIDED_LOCK:
        found = _DECIDED.get(guard)
        if found is None:
            found = _DECIDED[guard] = Decided()
        return found


_SEALED = "guard_plugin-sealed-v1:"


def seal(message: BaseMessage, **fields: Any) -> str:
    """Content held for review, sealed for the state: compressed and encoded, so a UI that
    renders the agent's state or its ``values`` stream shows an opaque string, not the unsafe
    text or image. Not encryption: whoever reads the checkpoint can unseal it. Bytes survive;
    other non-JSON values in an artifact come back as their text."""

    def default(o: Any) -> Any:
        if isinstance(o, (bytes, bytearray)):
            return {"__bytes__": base64.b64encode(bytes(o)).decode("ascii")}
        return str(o)

    payload = {"message": message_to_dict(message), **fields}
    raw = zlib.compress(json.dumps(payload, default=default).encode("utf-8"))
    return _SEALED + base64.b64encode(raw).decode("ascii")


def unseal(sealed: Any) -> dict[str, Any]:
    """The fields of :func:`seal` (raises on anything else: the caller fails closed)."""
    if not isinstance(sealed, str) or not sealed.startswith(_SEALED):
        raise ValueError("not a sealed record")

    def hook(d: dict[str, Any]) -> Any:
        return base64.b64decode(d["__bytes__"]) if set(d) == {"__bytes__"} else d

    raw = zlib.decompress(base64.b64decode(sealed[len(_SEALED) :]), bufsize=1 << 16)
    payload: dict[str, Any] = json.loads(raw, object_hook=hook)
    payload["message"] = messages_from_dict([payload["message"]])[0]
    return payload


def tool_message_of(
    result: Any, call_id: str | None
) -> tuple[ToolMessage, Callable[[ToolMessage, dict[str, Any]], Any]] | None:
    """The tool's message in a tool call's result (a ``ToolMessage``, or a ``Command`` whose
    update carries it), and how to rebuild the result around a replacement and a state
    update. ``None`` when the result carries no message for this call."""
    from langgraph.types import Command

    if isinstance(result, ToolMessage):
        return (
            result,
            lambda new, update: Command(update={"messages": [new], **update}) if update else new,
        )
    update = getattr(result, "update", None) if isinstance(result, Command) else None
    if not isinstance(update, Mapping) or not isinstance(update.get("messages"), list):
        return None
    msgs = update["messages"]
    idx = next(
        (
            i
            for i, m in enumerate(msgs)
            if isinstance(m, ToolMessage) and (call_id is None or m.tool_call_id == call_id)
        ),
        None,
    )
    if idx is None:
        return None

    def rebuild(new: ToolMessage, extra: dict[str, Any]) -> Any:
        replaced = [new if i == idx else m for i, m in enumerate(msgs)]
        return Command(
            graph=result.graph,
            update={**update, "messages": replaced, **extra},
            resume=result.resume,
            goto=result.goto,
        )

    return msgs[idx], rebuild


# -- held content: read, reviewed, or withheld for good -----------------------------------------

HELD_KEY = "guard_plugin_held"
"""Key, in a placeholder's ``additional_kwargs``, of the sealed original (hand-built graphs,
which have no private state keys)."""

ABANDONED = "not reviewed: a new user turn came first"


def read_held(sealed: Any) -> tuple[BaseMessage, Decision] | None:
    """The original and its decision from a sealed record; ``None`` when it cannot be read
    (the caller keeps the content withheld)."""
    try:
        record = unseal(sealed)
        original, d = record["message"], Decision.from_dict(record["decision"])
    except Exception:
        return None
    return (original, d) if isinstance(original, BaseMessage) else None


def without_record(msg: BaseMessage) -> dict[str, Any]:
    """The message's ``additional_kwargs`` without a sealed record."""
    return {k: v for k, v in msg.additional_kwargs.items() if k != HELD_KEY}


def withhold(placeholder: BaseMessage, d: Decision | None, guard: Guard) -> BaseMessage:
    """Held content that a new user turn overtook (or whose record cannot be read): withheld
    for good under the placeholder's id, audited as an override when its decision is known.
    A tool result gets the tool refusal, a response the refusal, a user turn the redaction."""
    policy = policy_of(d, guard) if d is not None else guard.policies.default.policy
    if d is not None:
        guard.record_override(d, Action.BLOCK, reason=ABANDONED)
    update: dict[str, Any]
    if isinstance(placeholder, ToolMessage):
        update = {"content": policy.messages.tool_refusal, "status": "error"}
    elif isinstance(placeholder, AIMessage):
        update = {"content": policy.messages.refusal}
    else:
        update = {"content": policy.messages.redaction}
    return placeholder.model_copy(
        update={**update, "additional_kwargs": without_record(placeholder)}
    )


def review_held_tool(
    placeholder: ToolMessage, original: BaseMessage, d: Decision, guard: Guard, *, escalate: bool
) -> BaseMessage:
    """A held tool result put to the reviewer (an interrupt); the answer takes the
    placeholder's id."""
    assert isinstance(original, ToolMessage)
    outcome = apply_tool_result(original, d, guard=guard, escalate=escalate)
    final = outcome.messages[0] if outcome.messages else original
    return final.model_copy(
        update={"id": placeholder.id, "additional_kwargs": without_record(placeholder)}
    )
