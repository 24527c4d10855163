"""What message content is made of, once read: text, an image, a document, or a part that
cannot be classified. Each part knows where it sits (a :class:`~guard_plugin.types.PartRef`)."""

from __future__ import annotations

from dataclasses import dataclass

from guard_plugin.errors import GuardError
from guard_plugin.types import PartRef

__all__ = ["DocumentPart", "FailedPart", "ImagePart", "Part", "PartRef", "TextPart"]


@dataclass(frozen=True)
class TextPart:
    ref: PartRef
    text: str


@dataclass(frozen=True)
class ImagePart:
    ref: PartRef
    data: bytes


@dataclass(frozen=True)
class DocumentPart:
    ref: PartRef
    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class FailedPart:
    """A part that cannot be classified: bad input (``MediaError``) or content the guard may
    not look at (``UnverifiableMedia``)."""

    ref: PartRef
    error: GuardError

    @property
    def part(self) -> PartRef:
        return self.ref


Part = TextPart | ImagePart | DocumentPart | FailedPart
