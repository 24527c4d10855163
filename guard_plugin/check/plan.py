"""What one check is made of before and after the classifier runs.

A :class:`Plan` holds the tenant's policy and the checked content in order: model inputs
and parts that could not be classified (:class:`~guard_plugin.media.FailedPart`). Each input
has a :class:`Slot` with its model request, its cache key and, once known, its verdict or
error. :class:`ContentCheck` is the content of a ``check_content`` call;
:func:`normalise_inputs` the content of a ``check`` call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guard_plugin.decision import Decision
from guard_plugin.media import FailedPart, extract_parts, fan_out
from guard_plugin.media.formats.text import REASONING_TYPES, TEXT_TYPES
from guard_plugin.policy import CompiledPolicy, MediaLimits
from guard_plugin.prompting import ModelRequest, SafetyInput
from guard_plugin.types import PartRef, Surface
from guard_plugin.verdict import Verdict

__all__ = ["Content", "ContentCheck", "Plan", "Slot", "normalise_inputs"]

Item = SafetyInput | FailedPart
Content = str | SafetyInput | Sequence[Item]


@dataclass
class Slot:
    """One model input of a check: its request, cache key and result."""

    input: SafetyInput
    request: ModelRequest
    key: str
    result: Verdict | BaseException | None = None
    cached: bool = False


@dataclass
class Plan:
    t0: float
    request_id: str
    tenant: str | None
    surface: Surface
    policy: CompiledPolicy
    #: content order: every input, and parts that could not be classified (media errors)
    items: list[Item] = field(default_factory=list)
    #: one per input among ``items``, in the same order
    slots: list[Slot] = field(default_factory=list)
    #: the slots the classifier is asked for (cache misses)
    pending: list[Slot] = field(default_factory=list)
    #: set when the check is decided without the classifier (unknown tenant, unreadable content)
    done: Decision | None = None

    @property
    def inputs(self) -> list[SafetyInput]:
        return [s.input for s in self.slots]

    def remaining(self) -> float:
        """Seconds left of the policy's time budget."""
        return self.policy.policy.time_budget_ms / 1000.0 - (time.perf_counter() - self.t0)

    def budget_exceeded(self) -> str:
        return f"no verdict within the time budget of {self.policy.policy.time_budget_ms} ms"


_TEXT_BLOCKS = TEXT_TYPES | REASONING_TYPES  # blocks with nothing to decode


@dataclass(frozen=True)
class ContentCheck:
    """Message content to check, in any common format, with what it needs to be read."""

    content: Any
    surface: Surface
    context: str = ""
    tool_name: str | None = None
    artifact: Any = None
    password: str | None = None

    @property
    def text_only(self) -> bool:
        """Content with nothing to decode (no images, files or bytes)."""
        if self.artifact is not None:
            return False
        c = self.content
        if isinstance(c, str):
            return True
        if isinstance(c, list):
            return all(
                isinstance(b, str) or (isinstance(b, dict) and b.get("type") in _TEXT_BLOCKS)
                for b in c
            )
        return False

    def items(self, limits: MediaLimits) -> list[Item]:
        """Model inputs and failed parts, in content order. May raise what a decoder raises."""
        c = self.content
        if isinstance(c, str) and self.artifact is None and len(c) <= limits.text_window_chars:
            # The common case, one short text: no extraction or windowing needed.
            ref = PartRef("content")
            if self.surface is Surface.RESPONSE:
                return [
                    SafetyInput(
                        text=self.context,
                        response=c,
                        surface=self.surface,
                        tool_name=self.tool_name,
                        part=ref,
                    )
                ]
            return [SafetyInput(text=c, surface=self.surface, tool_name=self.tool_name, part=ref)]
        parts = extract_parts(c, limits, artifact=self.artifact)
        return fan_out(
            parts,
            limits,
            self.surface,
            context=self.context,
            tool_name=self.tool_name,
            password=self.password,
        )


def as_surface(surface: Surface | str) -> Surface:
    try:
        return Surface(surface)
    except ValueError:
        valid = ", ".join(repr(s.value) for s in Surface)
        raise ValueError(f"surface {surface!r} is not one of {valid}") from None


def normalise_inputs(content: Content, surface: Surface | str | None) -> list[Item]:
    """The inputs of a ``Guard.check`` call, all on one surface (and any parts that cannot
    be classified, which an adapter found beside them)."""
    surf = as_surface(surface) if surface is not None else None
    if isinstance(content, str):  # the common case
        if surf is Surface.RESPONSE:
            return [SafetyInput(text="", response=content, surface=Surface.RESPONSE)]
        return [SafetyInput(text=content, surface=surf or Surface.INPUT)]
    items: list[Item]
    if isinstance(content, SafetyInput):
        items = [content]
    elif isinstance(content, (list, tuple)):
        items = list(content)
        for it in items:
            if not isinstance(it, (SafetyInput, FailedPart)):
                raise TypeError(
                    "Guard.check takes text, a SafetyInput or a list of SafetyInputs (and "
                    f"FailedParts), not {type(it).__name__}"
                )
    else:
        raise TypeError(
            "Guard.check takes text, a SafetyInput or a list of them, not "
            f"{type(content).__name__}; for message content (blocks, images, files, bytes) "
            "use Guard.check_content"
        )
    _one_surface(items, surf)
    return items


def _one_surface(items: list[Item], surf: Surface | None) -> None:
    inputs = [it for it in items if isinstance(it, SafetyInput)]
    if surf is None:
        if len({it.surface for it in inputs}) > 1:
            raise ValueError("all SafetyInputs of one check must have the same surface")
        return
    for it in inputs:
        if it.surface is not surf:
            raise ValueError(
                f"a SafetyInput for surface '{it.surface.value}' "
                f"was passed with surface='{surf.value}'"
            )
