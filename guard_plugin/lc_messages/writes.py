"""What a tool call or a model node writes into the state's messages, so the guard decides
all of it before LangGraph applies it.

A tool answers its call with a ``ToolMessage``, or with a LangGraph ``Command`` whose update
writes messages: the one answering the call and any others (a handoff's turns, a tool that
adds a user or assistant turn of its own, results for other calls), as message objects or as
the dicts, tuples and strings ``add_messages`` accepts; a tool may also return a list of
both. With ``graph=Command.PARENT`` the messages go to the parent graph, where no model step
of this agent will ever check them. :func:`tool_writes` reads every message a result writes:
the call's own message is decided as tool output, every other one as :mod:`.history` decides
a message the guard did not make (by its role), and :meth:`Writes.rebuild` puts the
decided messages back in their places, with the rest of the result (other state keys,
``goto``, ``graph``, ``resume``) as it was.

A model node's return value (a state update or a ``Command``) is read the same way
(:func:`node_writes`): its last message, when an assistant message, is the response; every
other message it writes is decided by the same rule.

Messages other than tool results without an id get one here (``add_messages`` would give
them one anyway; a tool result is known by its call id), so the messages in the state are the
ones decided and remembered as decided.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    RemoveMessage,
    ToolMessage,
    convert_to_messages,
)

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.lc_messages.base import Check
from guard_plugin.lc_messages.held import Decided
from guard_plugin.lc_messages.history import HistoryItem, apply_history, find_history
from guard_plugin.lc_messages.tools import tool_check_args
from guard_plugin.types import Surface

__all__ = [
    "Writes",
    "message_writes",
    "node_writes",
    "settle_writes",
    "tool_writes",
    "writes_checks",
]

MESSAGES_KEY = "messages"
_ROOT = "__root__"  # a Command's update when the state is the message list itself


@dataclass
class _Unit:
    """One piece of a result (the result itself, or one item of a list result) and how to
    rebuild it around new messages."""

    size: int  # how many messages of the flat list it holds
    build: Callable[[list[BaseMessage], Mapping[str, Any]], Any]


@dataclass
class Writes:
    """Every message a node's or a tool call's result writes: ``own`` (the message the
    result is for: the tool call's answer, a model node's response; None where there is
    none) and ``others``, in order (each with an id, tool results with their call id)."""

    own: BaseMessage | None
    others: list[BaseMessage]
    _messages: list[BaseMessage] = field(repr=False)
    _own_index: int | None = field(repr=False)
    _units: list[_Unit] = field(repr=False)
    _is_list: bool = field(repr=False)
    #: whether reading the result changed any message (converted it, gave it an id)
    changed: bool = field(default=False, repr=False)

    def rebuild(
        self,
        own: BaseMessage | None = None,
        replaced: Mapping[int, BaseMessage] | None = None,
        update: Mapping[str, Any] | None = None,
        *,
        before: Sequence[BaseMessage] = (),
    ) -> Any:
        """The result with ``own`` in the own message's place, ``replaced[i]`` in the place
        of ``others[i]``, ``update`` (more state keys) written beside the own message, and
        ``before`` written ahead of the first message."""
        msgs = list(self._messages)
        places = [i for i in range(len(msgs)) if i != self._own_index]
        for i, new in (replaced or {}).items():
            msgs[places[i]] = new
        if own is not None and self._own_index is not None:
            msgs[self._own_index] = own
        out: list[Any] = []
        start = 0
        for unit in self._units:
            holds_own = self._own_index is not None and (
                start <= self._own_index < start + unit.size
            )
            extra = (update or {}) if holds_own else {}
            piece = msgs[start : start + unit.size]
            if before and unit.size:
                piece, before = [*before, *piece], ()
            out.append(unit.build(piece, extra))
            start += unit.size
        return out if self._is_list else out[0]


def tool_writes(result: Any, call_id: str | None) -> Writes | None:
    """The messages ``result`` (what a tool call returned through a ``ToolNode``) writes,
    its own being the ``ToolMessage`` answering ``call_id``; ``None`` when it writes none."""
    return _read(
        result,
        lambda msgs: next(
            (
                i
                for i, m in enumerate(msgs)
                if isinstance(m, ToolMessage) and (call_id is None or m.tool_call_id == call_id)
            ),
            None,
        ),
    )


def node_writes(out: Any) -> Writes | None:
    """The messages a model node's return value (a state update, a ``Command``) writes, its
    own being the last one when that is an assistant message (the node's response); ``None``
    when it writes none."""
    return _read(
        out,
        lambda msgs: len(msgs) - 1 if msgs and isinstance(msgs[-1], AIMessage) else None,
    )


def _read(result: Any, own_of: Callable[[list[BaseMessage]], int | None]) -> Writes | None:
    from langgraph.types import Command

    items = result if isinstance(result, list) else [result]
    messages: list[BaseMessage] = []
    units: list[_Unit] = []
    changed = False
    for item in items:
        if isinstance(item, ToolMessage):
            messages.append(item)
            units.append(_Unit(1, _tool_message_unit))
            continue
        if isinstance(item, Command):
            found, unit, conv = _update_unit(item, item.update)
        elif isinstance(item, Mapping):
            found, unit, conv = _update_unit(None, item)
        else:
            units.append(_Unit(0, _as_it_was(item)))
            continue
        messages += found
        units.append(unit)
        changed = changed or conv
    if not messages:
        return None
    named, renamed = _named(messages)
    return _writes(named, own_of(named), units, isinstance(result, list), changed or renamed)


def message_writes(messages: Sequence[BaseMessage], own: int | None) -> Writes:
    """A plain list of messages (what a model step returns), ``messages[own]`` its own;
    :meth:`Writes.rebuild` gives the list back."""
    named, renamed = _named(messages)
    unit = _Unit(len(named), lambda msgs, _update: list(msgs))
    return _writes(named, own, [unit], False, renamed)


def _named(messages: Sequence[BaseMessage]) -> tuple[list[BaseMessage], bool]:
    """The messages with an id where they need one, and whether any got one."""
    named = [
        m.model_copy(update={"id": str(uuid4())})
        if m.id is None and not isinstance(m, (RemoveMessage, ToolMessage))
        else m
        for m in messages
    ]
    return named, any(a is not b for a, b in zip(named, messages, strict=True))


def _writes(
    named: list[BaseMessage],
    own_index: int | None,
    units: list[_Unit],
    is_list: bool,
    changed: bool,
) -> Writes:
    own = named[own_index] if own_index is not None else None
    others = [m for i, m in enumerate(named) if i != own_index]
    return Writes(own, others, named, own_index, units, is_list, changed)


def _as_it_was(item: Any) -> Callable[[list[BaseMessage], Mapping[str, Any]], Any]:
    """A piece of a list result that writes no message, kept as it is."""
    return lambda _msgs, _update: item


def _tool_message_unit(msgs: list[BaseMessage], update: Mapping[str, Any]) -> Any:
    from langgraph.types import Command

    if len(msgs) == 1 and not update:
        return msgs[0]
    return Command(update={MESSAGES_KEY: msgs, **update})


def _update_unit(cmd: Any, raw: Any) -> tuple[list[BaseMessage], _Unit, bool]:
    """The messages a state update (a node's return value, or a ``Command``'s update)
    writes, how to rebuild it, and whether any was converted from a dict, tuple or string."""
    if isinstance(raw, list) and not _is_pairs(raw):
        pairs: Sequence[tuple[str, Any]] = [(_ROOT, raw)]
    elif cmd is not None:
        pairs = list(cmd._update_as_tuples())
    else:
        pairs = list(raw.items())
    found: list[BaseMessage] = []
    sizes: list[int | None] = []
    overwrites: list[bool] = []
    converted = False
    for key, value in pairs:
        overwrite, value = _overwrite(value)
        overwrites.append(overwrite)
        if key not in (MESSAGES_KEY, _ROOT) or value is None:
            sizes.append(None)
            continue
        listed = value if isinstance(value, (list, tuple)) else [value]
        msgs = convert_to_messages(listed)
        converted = converted or any(a is not b for a, b in zip(listed, msgs, strict=True))
        found += msgs
        sizes.append(len(msgs))

    def build(msgs: list[BaseMessage], update: Mapping[str, Any]) -> Any:
        new_pairs: list[tuple[str, Any]] = []
        start, extra = 0, len(msgs) - len(found)  # messages written ahead of the first
        for (key, value), size, overwrite in zip(pairs, sizes, overwrites, strict=True):
            if size is None:
                new_pairs.append((key, value))
            else:
                written = list(msgs[start : start + size + extra])
                new_pairs.append((key, _overwritten(written) if overwrite else written))
                start += size + extra
                extra = 0
        if len(new_pairs) == 1 and new_pairs[0][0] == _ROOT:  # the state is the message list
            new: Any = new_pairs[0][1]
        elif isinstance(raw, list):  # (key, value) pairs, applied in order
            new = [*new_pairs, *update.items()]
            update = {}
        else:
            new = {**dict(new_pairs), **update}
        if cmd is None:
            return new
        return dataclasses.replace(cmd, update=new)

    return found, _Unit(len(found), build), converted


def _overwrite(value: Any) -> tuple[bool, Any]:
    """Whether ``value`` replaces the channel instead of going through its reducer (LangGraph's
    ``Overwrite``, or its dict forms), and the value written."""
    if type(value).__name__ == "Overwrite" and hasattr(value, "value"):
        return True, value.value
    if isinstance(value, Mapping):
        if len(value) == 1 and "__overwrite__" in value:
            return True, value["__overwrite__"]
        if value.get("type") == "__overwrite__" and "value" in value:
            return True, value["value"]
    return False, value


def _overwritten(messages: list[BaseMessage]) -> Any:
    from langgraph.types import Overwrite  # where LangGraph has it, an Overwrite was read

    return Overwrite(messages)


def _is_pairs(update: list[Any]) -> bool:
    return bool(update) and all(
        isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str) for t in update
    )


def writes_checks(
    writes: Writes,
    decided: Decided,
    scope: str,
    tenant: str | None,
    config: Mapping[str, Any] | None,
    *,
    own: bool = True,
    applies: Callable[[Surface], bool] = lambda _s: True,
) -> tuple[list[Check], list[HistoryItem]]:
    """The checks of a tool call's writes: the call's own message first (with ``own``),
    then each other message the guard has not decided whose surface ``applies``."""
    checks: list[Check] = []
    if own and isinstance(writes.own, ToolMessage):
        checks.append(Check(writes.own.content, tool_check_args(writes.own, tenant, config)))
    items = [
        h
        for h in find_history(writes.others, decided, scope, tenant, config)
        if applies(Surface(h.check.kwargs["surface"]))
    ]
    return checks + [h.check for h in items], items


def settle_writes(
    writes: Writes,
    items: Sequence[HistoryItem],
    decisions: Sequence[Decision],
    guard: Guard,
    decided: Decided,
    scope: str,
) -> dict[int, BaseMessage]:
    """The other messages' decisions applied (as :func:`apply_history` applies them: an
    escalation takes the tenant's fallback, since nobody can review a message that is not
    the tool's answer before the state has it): the replacements by place in
    ``writes.others``, each remembered as decided with the messages allowed as they are."""
    replaced: dict[int, BaseMessage] = {}
    for item, d in zip(items, decisions, strict=True):
        new, _ = apply_history([item], [d], guard)
        if new:
            replaced[item.index] = new[0]
    kept = [
        replaced.get(i, m) for i, m in enumerate(writes.others) if not isinstance(m, RemoveMessage)
    ]
    decided.add_all(kept, scope)
    return replaced
