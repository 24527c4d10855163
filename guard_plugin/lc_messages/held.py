"""Content held while a person reviews it, and messages already decided.

A held original is sealed into the state (authenticated encryption, bound to its thread,
tenant and message: :mod:`guard_plugin.sealing`) under a placeholder; it is opened for the
review, or withheld for good when a new user turn overtakes it or it cannot be opened.
:class:`Decided` remembers, in this process, the messages this guard decided or produced, so
no guard checks them again (:mod:`.history` checks every other one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
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

_log = logging.getLogger("guard_plugin")

__all__ = [
    "ABANDONED",
    "HELD_KEY",
    "Decided",
    "decided_results",
    "held_bind",
    "held_ref",
    "held_refused",
    "read_held",
    "review_held_tool",
    "seal",
    "unseal",
    "withhold",
    "without_record",
]


class Decided:
    """Messages this guard decided or produced (a turn checked before a model call, a tool
    result at the tool boundary, a response in a guarded model node, a reviewer's answer),
    remembered in this process per scope (tenant and policy: :meth:`Guard.scope_of`) by a key
    (the tool call id or the message id) and a digest of everything a check of it read
    (content, tool calls valid or not, artifact, what ``additional_kwargs`` holds), so no
    guard checks them again. The newest 4,096 are kept. A message not found (another process,
    an old one, a caller's own, one changed since, or one decided under another tenant or
    policy) is simply checked."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._data: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(msg: BaseMessage) -> str | None:
        return msg.tool_call_id if isinstance(msg, ToolMessage) else msg.id

    @staticmethod
    def fingerprint(msg: BaseMessage) -> str:
        calls = msg.tool_calls if isinstance(msg, AIMessage) else None
        invalid = msg.invalid_tool_calls if isinstance(msg, AIMessage) else None
        artifact = msg.artifact if isinstance(msg, ToolMessage) else None
        # everything beside the content a reader may be shown (reasoning, a refusal, a legacy
        # function call, audio ...): any change there is a message to check again
        extra = json.dumps(msg.additional_kwargs or {}, sort_keys=True, default=str)
        parts = (
            type(msg).__name__,
            Decided._key(msg),
            msg.content,
            calls,
            invalid,
            artifact,
            extra,
        )
        return hashlib.blake2b(repr(parts).encode("utf-8", "replace"), digest_size=16).hexdigest()

    def add(self, msg: BaseMessage, scope: str) -> None:
        key = self._key(msg)
        if key is None:
            return
        with self._lock:
            self._data[(scope, key)] = self.fingerprint(msg)
            self._data.move_to_end((scope, key))
            if len(self._data) > self._size:
                self._data.popitem(last=False)

    def add_all(self, msgs: Iterable[BaseMessage], scope: str) -> None:
        for m in msgs:
            self.add(m, scope)

    def contains(self, msg: object, scope: str) -> bool:
        if not isinstance(msg, BaseMessage):
            return False
        key = self._key(msg)
        if key is None:
            return False
        with self._lock:
            known = self._data.get((scope, key))
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


def held_bind(
    config: Mapping[str, Any] | None, tenant: str | None, ref: str | None
) -> dict[str, Any]:
    """What a held record is bound to: the run's thread, the tenant and the message it stands
    for (a tool result's call id, else the message id)."""
    thread = ((config or {}).get("configurable") or {}).get("thread_id")
    return {"thread": thread, "tenant": tenant, "ref": ref}


def held_ref(message: BaseMessage) -> str | None:
    """The id a held record of ``message`` is bound to: a tool result's call id, else the
    message id (which its placeholder keeps)."""
    return message.tool_call_id if isinstance(message, ToolMessage) else message.id


def seal(message: BaseMessage, guard: Guard, *, bind: Mapping[str, Any], **fields: Any) -> str:
    """Content held for review, sealed for the state with the guard's key (authenticated
    encryption, :mod:`guard_plugin.sealing`) and bound to ``bind`` (:func:`held_bind`): a UI
    that renders the state or a stream sees an opaque string, and nobody without the key can
    read or forge one, or move it to another thread, tenant or message. Bytes survive; other
    non-JSON values in an artifact come back as their text."""

    def plain(o: Any) -> Any:
        if isinstance(o, (bytes, bytearray)):
            return {"__bytes__": base64.b64encode(bytes(o)).decode("ascii")}
        if isinstance(o, Mapping):
            return {str(k): plain(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [plain(v) for v in o]
        if o is None or isinstance(o, (str, int, float, bool)):
            return o
        return str(o)

    payload = plain({"message": message_to_dict(message), **fields})
    return guard.sealer.seal(payload, bind=bind)


def unseal(sealed: Any, guard: Guard, *, bind: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of :func:`seal`; raises on anything that was not sealed by this deployment
    for ``bind`` (the caller fails closed)."""

    def restore(o: Any) -> Any:
        if isinstance(o, dict):
            if set(o) == {"__bytes__"}:
                return base64.b64decode(o["__bytes__"])
            return {k: restore(v) for k, v in o.items()}
        if isinstance(o, list):
            return [restore(v) for v in o]
        return o

    payload: dict[str, Any] = restore(guard.sealer.open(sealed, bind=bind))
    payload["message"] = messages_from_dict([payload["message"]])[0]
    return payload


HELD_KEY = "guard_plugin_held"
"""Key, in a placeholder's ``additional_kwargs``, of the sealed original (hand-built graphs,
which have no private state keys)."""

ABANDONED = "not reviewed: a new user turn came first"


def read_held(
    sealed: Any, guard: Guard, *, bind: Mapping[str, Any]
) -> tuple[BaseMessage, Decision] | None:
    """The original and its decision from a sealed record; ``None`` when it cannot be opened
    (forged, copied from elsewhere, sealed with another key): the caller keeps the content
    withheld, and the refusal is logged."""
    try:
        record = unseal(sealed, guard, bind=bind)
        original, d = record["message"], Decision.from_dict(record["decision"])
    except Exception as err:  # noqa: BLE001 (an unreadable record is withheld)
        held_refused(err)
        return None
    return (original, d) if isinstance(original, BaseMessage) else None


def held_refused(err: BaseException) -> None:
    """Log a held record that could not be opened (its content stays withheld)."""
    _log.warning("a held record was refused; its content stays withheld: %s", err)


def without_record(msg: BaseMessage) -> dict[str, Any]:
    """The message's ``additional_kwargs`` without a sealed record."""
    return {k: v for k, v in msg.additional_kwargs.items() if k != HELD_KEY}


def withhold(placeholder: BaseMessage, d: Decision | None, guard: Guard) -> BaseMessage:
    """Held content that a new user turn overtook (or whose record cannot be read): withheld
    for good under the placeholder's id, audited as an override when its decision is known.
    A tool result gets the tool refusal, a response the refusal, a user turn the redaction."""
    texts = guard.messages_of(d)
    if d is not None:
        guard.record_override(d, Action.BLOCK, reason=ABANDONED)
    update: dict[str, Any]
    if isinstance(placeholder, ToolMessage):
        update = {"content": texts.tool_refusal, "status": "error"}
    elif isinstance(placeholder, AIMessage):
        update = {"content": texts.refusal}
    else:
        update = {"content": texts.redaction}
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
