"""Parts into model inputs: one per image, one per PDF page (with that page's text), and text
in overlapping windows. What a policy cap leaves out becomes an unverifiable part, never a
silent drop: a run past a cap is one part whose ref names the range."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from guard_plugin.errors import MediaError, UnverifiableMedia
from guard_plugin.media.images import load_image
from guard_plugin.media.parts import DocumentPart, FailedPart, ImagePart, Part, PartRef, TextPart
from guard_plugin.media.pdf import PdfContent, load_pdf
from guard_plugin.policy import MediaLimits
from guard_plugin.prompting import ImageData, SafetyInput
from guard_plugin.types import Surface

__all__ = ["fan_out", "split_text", "text_windows", "window_inputs"]

Item = SafetyInput | FailedPart


def text_windows(text: str, window: int, overlap: int = 200) -> list[tuple[int, int]]:
    """``(start, end)`` spans of at most ``window`` characters, cut at white space where
    possible and overlapping by about ``overlap`` characters, so nothing straddling a cut is
    missed."""
    if len(text) <= window:
        return [(0, len(text))]
    overlap = min(overlap, window // 4)
    spans, start = [], 0
    while start < len(text):
        end = min(start + window, len(text))
        if end < len(text):
            cut = max(
                text.rfind(" ", start + window // 2, end),
                text.rfind("\n", start + window // 2, end),
            )
            if cut > start:
                end = cut
        spans.append((start, end))
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return spans


def split_text(text: str, window: int, overlap: int = 200) -> list[str]:
    """The text of :func:`text_windows`."""
    return [text[a:b] for a, b in text_windows(text, window, overlap)]


def _past_text_cap(ref: PartRef, limits: MediaLimits) -> FailedPart:
    return FailedPart(
        ref,
        UnverifiableMedia(f"text past the policy's max_text_chars ({limits.max_text_chars:,})"),
    )


#: why a response's images and documents are not classified (decided by media.unverifiable)
RESPONSE_MEDIA = "images and documents in an assistant turn are not checked"


def window_inputs(inputs: Sequence[SafetyInput | FailedPart], limits: MediaLimits) -> list[Item]:
    """The text rule of :func:`fan_out`, for inputs built by hand (``Guard.check``): text
    longer than ``media.text_window_chars`` is split into overlapping windows, each keeping
    the input's part (a withheld window withholds its input), and text past
    ``media.max_text_chars`` (all inputs together) is an unverifiable part. On an input with a
    response, the response is windowed and the user text stays its context; an image rides
    with the first window. Failed parts pass as they are."""
    sizes = [
        len(i.response if i.response is not None else i.text)
        for i in inputs
        if isinstance(i, SafetyInput)
    ]
    if all(n <= limits.text_window_chars for n in sizes) and sum(sizes) <= limits.max_text_chars:
        return list(inputs)  # the common case: nothing to split
    out: list[Item] = []
    total = 0
    for inp in inputs:
        if isinstance(inp, FailedPart):
            out.append(inp)
            continue
        on_response = inp.response is not None
        text = inp.response if inp.response is not None else inp.text
        room = limits.max_text_chars - total
        if len(text) > room:
            out.append(_past_text_cap(inp.part, limits))
            text = text[: max(room, 0)]
        total += len(text)
        if not text and inp.image is None:
            continue  # all of it was past the cap: the failed part says so
        for n, (a, b) in enumerate(text_windows(text, limits.text_window_chars)):
            window = text[a:b]
            image = inp.image if n == 0 else None
            out.append(
                replace(inp, response=window, image=image)
                if on_response
                else replace(inp, text=window, image=image)
            )
    return out


@dataclass
class _FanOut:
    """The state of one :func:`fan_out`: the inputs so far and what the caps leave."""

    limits: MediaLimits
    surface: Surface
    context: str
    tool_name: str | None
    password: str | None
    out: list[Item] = field(default_factory=list)
    text_total: int = 0
    images_left: int = 0

    def input(self, text: str, ref: PartRef, image: ImageData | None = None) -> SafetyInput:
        if self.surface is Surface.RESPONSE:
            return SafetyInput(
                text=self.context,
                response=text,
                surface=self.surface,
                tool_name=self.tool_name,
                part=ref,
            )
        return SafetyInput(
            text=text,
            image=image,
            surface=self.surface,
            tool_name=self.tool_name,
            part=ref,
        )

    def past_images(self, ref: PartRef, what: str) -> FailedPart:
        cap = self.limits.max_images
        return FailedPart(
            ref, UnverifiableMedia(f"{what} past the policy's media.max_images ({cap}) per message")
        )

    def text(self, ref: PartRef, text: str) -> None:
        if not text.strip():
            return
        room = self.limits.max_text_chars - self.text_total
        if room <= 0 or len(text) > room:
            self.out.append(_past_text_cap(ref, self.limits))
            if room <= 0:
                return
            text = text[:room]
        self.text_total += len(text)
        spans = text_windows(text, self.limits.text_window_chars)
        for a, b in spans:
            r = replace(ref, span=(a, b)) if len(spans) > 1 else ref
            self.out.append(self.input(text[a:b], r))

    def image(self, part: ImagePart) -> None:
        if self.images_left <= 0:
            self.out.append(self.past_images(part.ref, "an image"))
            return
        self.images_left -= 1
        try:
            img = load_image(part.data, self.limits)
        except MediaError as err:
            self.out.append(FailedPart(part.ref, err))
        else:
            self.out.append(self.input("", part.ref, img))

    def document(self, part: DocumentPart) -> None:
        if self.images_left <= 0:
            self.out.append(self.past_images(part.ref, "a document"))
            return
        try:
            pdf = load_pdf(
                part.data, self.limits, password=self.password, max_pages=self.images_left
            )
        except MediaError as err:
            self.out.append(FailedPart(part.ref, err))
            return
        self.images_left -= len(pdf.pages)
        for page in pdf.pages:
            pref = replace(part.ref, page=page.index)
            text = page.text.strip()
            spans = text_windows(text, self.limits.text_window_chars) if text else [(0, 0)]
            for n, (start, end) in enumerate(spans):
                # the page image rides with the first window; later windows of the page's
                # text carry the page's ref, so they are withheld with the page
                self.out.append(self.input(text[start:end], pref, page.image if n == 0 else None))
        if pdf.skipped:
            self.out.append(self._skipped_pages(part.ref, pdf))

    def _skipped_pages(self, ref: PartRef, pdf: PdfContent) -> FailedPart:
        # one part for all of them: a few kilobytes can claim a million pages
        first, n = pdf.skipped[0], len(pdf.skipped)
        limits = self.limits
        cap = (
            f"max_pdf_pages ({limits.max_pdf_pages})"
            if first >= limits.max_pdf_pages
            else f"max_images ({limits.max_images}) per message"
        )
        which = f"page {first + 1}" if n == 1 else f"pages {first + 1}-{first + n}"
        return FailedPart(
            replace(ref, page=first, page_end=None if n == 1 else first + n),
            UnverifiableMedia(f"{which} of {pdf.page_count:,} past the policy's media.{cap}"),
        )


def fan_out(
    parts: Sequence[Part],
    limits: MediaLimits,
    surface: Surface,
    *,
    context: str = "",
    tool_name: str | None = None,
    password: str | None = None,
) -> list[Item]:
    """Model inputs for the parts, in order; parts that cannot be classified stay FailedParts.

    On the response surface text is the ``response`` and ``context`` the user turn it answers;
    elsewhere text is user-side. Images and documents in a response are unverifiable.
    """
    f = _FanOut(limits, surface, context, tool_name, password, images_left=limits.max_images)
    for part in parts:
        if isinstance(part, FailedPart):
            f.out.append(part)
        elif isinstance(part, TextPart):
            f.text(part.ref, part.text)
        elif surface is Surface.RESPONSE:
            f.out.append(FailedPart(part.ref, UnverifiableMedia(RESPONSE_MEDIA)))
        elif isinstance(part, ImagePart):
            f.image(part)
        else:
            f.document(part)
    return f.out
