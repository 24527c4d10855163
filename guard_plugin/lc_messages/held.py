"""Content held while a person reviews it, and messages already decided.

A held original is sealed into the state (compressed and encoded, not encrypted) under a
placeholder; it is read back for the review, or withheld for good when a new user turn
overtakes it. :class:`Decided` remembers, in this process, the messages decided where they
were made, so the next guard does not check them again.
"""

from __future__ import annotations

import base64
import json
import threading
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.lc_messages.tools import apply_tool_result
from guard_plugin.types import Action

__all__ = [
    "ABANDONED",
    "HELD_KEY",
    "Decided",
    "decided_results",
    "read_held",
    "review_held_tool",
    "seal",
    "tool_message_of",
    "unseal",
    "withhold",
    "without_record",
]


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
        if not isinstance(msg, BaseMessage):
            return False
        key = self._key(msg)
        if key is None:
            return False
        with self._lock:
            known = self._data.get(key)
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
    except Exception:  # noqa: BLE001 (an unreadable record is withheld)
        return None
    return (original, d) if isinstance(original, BaseMessage) else None


def without_record(msg: BaseMessage) -> dict[str, Any]:
    """The message's ``additional_kwargs`` without a sealed record."""
    return {k: v for k, v in msg.additional_kwargs.items() if k != HELD_KEY}


def withhold(placeholder: BaseMessage, d: Decision | None, guard: Guard) -> BaseMessage:
    """Held content that a new user turn overtook (or whose record cannot be read): withheld
    for good under the placeholder's id, audited as an override when its decision is known.
    A tool result gets the tool refusal, a response the refusal, a user turn the redaction."""
    policy = guard.policy_of(d)
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
