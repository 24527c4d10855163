"""What the message checks share: the updates a check returns, the text of a message, and
the policy a decision was made under."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.media import content_text
from guard_plugin.media.formats import call_text
from guard_plugin.media.formats.text import REASONING_TYPES, reasoning_text
from guard_plugin.types import Action

__all__ = [
    "REASONING_KWARGS",
    "SHOWN_KWARGS",
    "Check",
    "Outcome",
    "arun_checks",
    "last_index",
    "preview",
    "reasoning_of",
    "record_dropped",
    "run_checks",
    "shown",
    "text_of",
    "tool_call_text",
    "without_extras",
    "without_kwargs",
    "without_reasoning",
]

M = TypeVar("M", bound=BaseMessage)

#: where providers put an assistant turn's reasoning outside its content blocks
REASONING_KWARGS = ("reasoning_content", "reasoning", "thinking")
#: what else providers put in ``additional_kwargs`` that a user may be shown or a model may
#: read back: a refusal's text, a legacy function call, a spoken answer (its audio and
#: transcript), and raw tool calls (which langchain-openai sends back to the model in place
#: of a turn's ``tool_calls`` when those are empty)
SHOWN_KWARGS = ("refusal", "function_call", "audio", "tool_calls")


@dataclass(frozen=True)
class Check:
    """One guard call: message content (``Guard.check_content``) or, with ``inputs``, inputs
    built by hand (``Guard.check``)."""

    content: Any
    kwargs: dict[str, Any]
    inputs: bool = False

    def run(self, guard: Guard) -> Decision:
        if self.inputs:
            return guard.check(self.content, **self.kwargs)
        return guard.check_content(self.content, **self.kwargs)

    async def arun(self, guard: Guard) -> Decision:
        if self.inputs:
            return await guard.acheck(self.content, **self.kwargs)
        return await guard.acheck_content(self.content, **self.kwargs)


def run_checks(guard: Guard, checks: Sequence[Check]) -> list[Decision]:
    """One decision per check, in order."""
    return [c.run(guard) for c in checks]


async def arun_checks(guard: Guard, checks: Sequence[Check]) -> list[Decision]:
    """One decision per check, in order; the checks run together (one classifier batch)."""
    if len(checks) == 1:
        return [await checks[0].arun(guard)]
    return list(await asyncio.gather(*(c.arun(guard) for c in checks)))


@dataclass
class Outcome:
    """Message updates for the state, and whether the turn ends here."""

    messages: list[BaseMessage] = field(default_factory=list)
    end: bool = False
    decisions: list[Decision] = field(default_factory=list)


def text_of(msg: BaseMessage | None) -> str:
    """The text of a message's content (its text blocks, joined)."""
    return "" if msg is None else content_text(msg.content)


def reasoning_of(msg: BaseMessage | None) -> str:
    """The reasoning an assistant turn carries beside its text: ``reasoning`` / ``thinking``
    content blocks (their text, or a summary's texts) and a provider's ``reasoning_content``
    (or ``reasoning``) in ``additional_kwargs``. A user may be shown it, so it is checked."""
    if msg is None:
        return ""
    content = msg.content if isinstance(msg.content, list) else []
    blocks = [b for b in content if isinstance(b, Mapping) and b.get("type") in REASONING_TYPES]
    extra = getattr(msg, "additional_kwargs", None) or {}
    fields = [extra[k] for k in REASONING_KWARGS if k in extra]
    return reasoning_text([*blocks, *fields])


def without_reasoning(msg: M) -> M:
    """``msg`` without its reasoning (the blocks and the provider fields of
    :func:`reasoning_of`)."""
    msg = without_kwargs(msg, REASONING_KWARGS)
    if not isinstance(msg.content, list):
        return msg
    content = [
        b for b in msg.content if not (isinstance(b, Mapping) and b.get("type") in REASONING_TYPES)
    ]
    return msg if len(content) == len(msg.content) else msg.model_copy(update={"content": content})


def without_kwargs(msg: M, keys: Sequence[str] = SHOWN_KWARGS) -> M:
    """``msg`` without the ``additional_kwargs`` fields ``keys``."""
    extra = getattr(msg, "additional_kwargs", None) or {}
    if not any(k in extra for k in keys):
        return msg
    kept = {k: v for k, v in extra.items() if k not in keys}
    return msg.model_copy(update={"additional_kwargs": kept})


def without_extras(msg: M) -> M:
    """``msg`` with nothing beside its text and tool calls: no reasoning, none of the
    provider fields of :data:`SHOWN_KWARGS` (what goes with a text that is replaced)."""
    return without_kwargs(without_reasoning(msg))


def last_index(messages: Sequence[BaseMessage], kind: type) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], kind):
            return i
    return None


def tool_call_text(call: Mapping[str, Any]) -> str:
    return call_text(call.get("name"), call.get("args", {}))


def record_dropped(guard: Guard, ds: Sequence[Decision], message: Any = None) -> None:
    """Audit a speculative model answer the checks did not let through (an ``override``
    of the first decision that did not allow, with the tokens the answer cost where the
    model reported them)."""
    d = next((d for d in ds if d.action is not Action.ALLOW), ds[-1] if ds else None)
    if d is None:
        return
    usage = getattr(message, "usage_metadata", None)
    tokens = f", {usage.get('total_tokens')} tokens" if isinstance(usage, Mapping) else ""
    guard.record_override(d, d.action, reason=f"speculative model response dropped{tokens}")


def shown(d: Decision, guard: Guard) -> int:
    """How many characters of held content a review request may show (the tenant's
    ``escalation.review_preview_chars``)."""
    return int(guard.policy_of(d).escalation.review_preview_chars)


def preview(text: str, limit: int = 500) -> str:
    """The first ``limit`` characters of ``text`` (what a review request shows of it)."""
    if limit <= 0:
        return "" if not text else f"[{len(text)} characters, not shown by the tenant's policy]"
    return text if len(text) <= limit else text[:limit] + "..."
