"""The content of one model call: user-side text, at most one image, an optional response."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from guard_plugin.types import TEXT, PartRef, Surface

__all__ = ["ImageData", "SafetyInput"]


class ImageData:
    """A model-ready image. Produced by :mod:`guard_plugin.media` from decoded, oriented, RGB,
    downscaled pixels; the encoded bytes (PNG) are made only when a backend asks for them.

    ``ImageData(data)`` wraps already encoded bytes as they are. Two images are equal when
    their digests are; the digest is of the source bytes, so it identifies the content.
    """

    __slots__ = ("_data", "_digest", "_pil", "height", "mime_type", "width")

    def __init__(
        self,
        data: bytes | None = None,
        mime_type: str = "image/png",
        width: int | None = None,
        height: int | None = None,
        *,
        pil: Any = None,
        digest: str | None = None,
    ) -> None:
        if data is None and pil is None:
            raise ValueError("ImageData needs encoded bytes or a PIL image")
        self._data = data
        self._pil = pil
        self._digest = digest
        self.mime_type = mime_type
        self.width = width if width is not None else (pil.size[0] if pil is not None else None)
        self.height = height if height is not None else (pil.size[1] if pil is not None else None)

    @property
    def data(self) -> bytes:
        """Encoded bytes (PNG for decoded images), made on first use."""
        if self._data is None:
            import io

            buf = io.BytesIO()
            self._pil.save(buf, format="PNG", compress_level=1)
            self._data = buf.getvalue()
            self.mime_type = "image/png"
        return self._data

    @property
    def sha256(self) -> str:
        if self._digest is None:
            self._digest = hashlib.sha256(self.data).hexdigest()
        return self._digest

    def data_url(self) -> str:
        data = self.data
        return f"data:{self.mime_type};base64,{base64.b64encode(data).decode('ascii')}"

    def to_pil(self) -> Any:
        """The image as an RGB ``PIL.Image`` (shared: do not modify it)."""
        if self._pil is None:
            import io

            from PIL import Image

            with Image.open(io.BytesIO(self._data or b"")) as im:
                self._pil = im.convert("RGB")
        return self._pil

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageData) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"ImageData({self.width}x{self.height}, sha256={self.sha256[:12]}...)"


@dataclass(frozen=True)
class SafetyInput:
    """One model call's worth of content.

    ``text`` is the user-side text (the user's turn, or a tool result's text); ``image`` at most
    one image; ``response`` the assistant turn to classify (required on the response surface,
    with ``text`` as the user turn it answers). ``part`` says which piece of a larger message
    this input came from (a :class:`~guard_plugin.types.PartRef`, or its label such as
    ``"content[2].page[3]"``), so a rewrite can withhold it alone.
    """

    text: str = ""
    image: ImageData | None = None
    response: str | None = None
    surface: Surface = Surface.INPUT
    tool_name: str | None = None
    part: PartRef = TEXT

    def __post_init__(self) -> None:
        if isinstance(self.part, str):
            object.__setattr__(self, "part", PartRef.parse(self.part))
        if not isinstance(self.text, str):
            raise TypeError(f"SafetyInput.text must be str, not {type(self.text).__name__}")
        if self.response is not None and not isinstance(self.response, str):
            raise TypeError("SafetyInput.response must be str or None")
        if self.image is not None and not isinstance(self.image, ImageData):
            raise TypeError(
                "SafetyInput.image must be an ImageData; decode images with guard_plugin.media"
            )
        if not isinstance(self.surface, Surface):
            object.__setattr__(self, "surface", Surface(self.surface))
        if self.surface is Surface.RESPONSE and self.response is None:
            raise ValueError(
                "a response-surface SafetyInput needs `response` (the assistant text); "
                "put the user turn it answers in `text`"
            )

    @property
    def is_empty(self) -> bool:
        return not self.text.strip() and self.image is None and not (self.response or "").strip()

    def content_digest(self) -> str:
        """SHA-256 of the content (text, response, image); computed once."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            image = self.image.sha256 if self.image else ""
            joined = f"{self.text}\x00{self.response or ''}\x00{image}"
            cached = hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()
            object.__setattr__(self, "_digest", cached)
        return cached

    def content_length(self) -> int:
        return (
            len(self.text) + len(self.response or "") + (len(self.image.data) if self.image else 0)
        )
