"""What every block-format reader gets: the policy's limits, the message's block budget, and a
way to read blocks nested in a block."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from guard_plugin.errors import UnverifiableMedia
from guard_plugin.media.parts import FailedPart, Part, PartRef
from guard_plugin.policy import MediaLimits

__all__ = ["Budget", "MediaBlock", "Reader"]


class Budget:
    """How many more blocks one message may have looked at (``media.max_blocks``)."""

    def __init__(self, limits: MediaLimits) -> None:
        self.left = limits.max_blocks
        self.cap = limits.max_blocks

    def past_cap(self, ref: PartRef, n: int, what: str) -> FailedPart:
        return FailedPart(
            ref,
            UnverifiableMedia(
                f"{n:,} {what} past the policy's media.max_blocks ({self.cap}) not checked"
            ),
        )


@dataclass
class Reader:
    limits: MediaLimits
    budget: Budget
    #: reads one block (nested blocks keep their parent's ref)
    block: Callable[[Any, PartRef], Iterator[Part]]


@dataclass(frozen=True)
class MediaBlock:
    """A media block's common fields, whatever its format."""

    kind: str  # "image" or "file" (the size cap that applies)
    claimed: str | None  # the mime type it claims (a tie-breaker for text only)
    filename: str | None
