"""Message content in any common format, into typed parts, into model inputs.

Content formats understood (plain dicts, bytes and strings; no framework import):

- LangChain standard blocks: ``{"type": "text"}``, ``{"type": "image" | "file", "base64" |
  "url", "mime_type"}``, and the older ``{"source_type": "base64" | "url", "data"}`` blocks;
- OpenAI chat parts: ``image_url`` (data URL or http URL), ``file`` with ``file_data``, and the
  Responses API's ``input_text`` / ``input_image`` / ``input_file``;
- Anthropic ``image`` / ``document`` blocks with a ``source``;
- raw ``bytes`` (the type is sniffed from the bytes, never taken from a claimed mime type),
  ``pathlib.Path`` objects and ``path`` keys (only where the policy allows local files), and a
  tool's artifact in any of these forms.

An http(s) URL is fetched only when the policy allows it (with a size cap and a timeout);
otherwise it becomes an *unverifiable* part, decided by ``media.unverifiable``.

:func:`fan_out` turns parts into :class:`SafetyInput` objects: one per image, one per PDF page
(with that page's text), and text split into overlapping windows. Each input's ``part`` label
says where it came from (``content[2].page[3]``), so a rewrite can withhold exactly it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from guard_plugin.errors import GuardError, MediaError, UnverifiableMedia
from guard_plugin.media.images import load_image, sniff_mime
from guard_plugin.media.pdf import load_pdf
from guard_plugin.policy import MediaLimits
from guard_plugin.prompting import SafetyInput
from guard_plugin.types import Surface

__all__ = [
    "DocumentPart",
    "FailedPart",
    "ImagePart",
    "Part",
    "PartRef",
    "TextPart",
    "extract_parts",
    "fan_out",
    "split_text",
    "text_windows",
    "window_inputs",
]

_REF = re.compile(
    r"(content|artifact)(?:\[(\d+)(?::(\d+))?\])?(?:\.page\[(\d+)(?::(\d+))?\])?"
    r"(?:\.chars\[(\d+):(\d+)\])?$"
)


@dataclass(frozen=True)
class PartRef:
    """Where a part sits: ``source`` (content or artifact), the block index in list content
    (``None`` for a plain string), for documents the page, and for a window of long text its
    character span ``(start, end)`` in that text, so a rewrite needs no re-computation.

    ``block_end`` / ``page_end`` (exclusive) make a ref stand for a run of blocks or pages:
    everything past a policy cap is one part, however much a message claims to hold."""

    source: str = "content"
    block: int | None = None
    page: int | None = None
    span: tuple[int, int] | None = None
    block_end: int | None = None
    page_end: int | None = None

    @property
    def label(self) -> str:
        out = self.source
        if self.block is not None:
            out += f"[{self.block}{'' if self.block_end is None else f':{self.block_end}'}]"
        if self.page is not None:
            out += f".page[{self.page}{'' if self.page_end is None else f':{self.page_end}'}]"
        if self.span is not None:
            out += f".chars[{self.span[0]}:{self.span[1]}]"
        return out

    @property
    def blocks(self) -> range:
        """The block indices this ref covers (empty when it names no block)."""
        if self.block is None:
            return range(0)
        return range(self.block, self.block + 1 if self.block_end is None else self.block_end)

    @classmethod
    def parse(cls, label: str) -> PartRef | None:
        m = _REF.match(label)
        if m is None:
            return None
        src, block, block_end, page, page_end, start, end = m.groups()

        def num(v: str | None) -> int | None:
            return None if v is None else int(v)

        span = (int(start), int(end)) if start is not None else None
        return cls(src, num(block), num(page), span, num(block_end), num(page_end))


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
    #: the label of a part that is not a piece of message content (an input built by hand)
    label: str | None = None

    @property
    def part(self) -> str:
        return self.label if self.label is not None else self.ref.label


Part = TextPart | ImagePart | DocumentPart | FailedPart

_TEXT_TYPES = {"text", "input_text", "output_text"}
_REASONING_TYPES = {"reasoning", "thinking"}
_SKIPPED_TYPES = {
    "tool_call",
    "tool_use",
    "tool_call_chunk",
    "invalid_tool_call",
    "server_tool_call",
}


# -- decoding helpers ---------------------------------------------------------------------------


def _b64(payload: str | bytes, cap: int, what: str) -> bytes:
    if isinstance(payload, bytes):
        payload = payload.decode("ascii", "replace")
    payload = "".join(payload.split())
    if not payload:
        raise MediaError(f"the {what} has no data")
    if len(payload) * 3 // 4 > cap:  # check before decoding: memory stays bounded
        raise MediaError(f"the {what} is over the policy's limit of {cap:,} bytes")
    try:
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MediaError(f"the {what} is not valid base64") from None


def _data_url(url: str, cap: int) -> bytes:
    header, sep, payload = url[5:].partition(",")
    if not sep or not payload.strip():
        raise MediaError("the data URL has no payload")
    if header.endswith(";base64"):
        return _b64(payload, cap, "data URL")
    raw = unquote_to_bytes(payload)
    if len(raw) > cap:
        raise MediaError(f"the data URL is over the policy's limit of {cap:,} bytes")
    return raw


def _fetch(url: str, limits: MediaLimits, cap: int) -> bytes:
    if not limits.allow_url_fetch:
        raise UnverifiableMedia(
            f"remote content not fetched ({url[:80]}); the policy's media.allow_url_fetch is off"
        )
    import httpx

    try:
        with httpx.stream(
            "GET", url, timeout=limits.fetch_timeout_s, follow_redirects=True
        ) as resp:
            resp.raise_for_status()
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise MediaError(f"{url[:80]} is over the policy's limit of {cap:,} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as err:
        raise UnverifiableMedia(f"cannot fetch {url[:80]}: {type(err).__name__}") from None


def _read_file(path: str | PathLike[str], limits: MediaLimits, cap: int) -> bytes:
    if not limits.allow_local_files:
        raise UnverifiableMedia(
            f"local file {str(path)[:80]} not read; the policy's media.allow_local_files is off"
        )
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > cap:
            raise MediaError(f"{p} is {size:,} bytes, over the policy's limit of {cap:,}")
        return p.read_bytes()
    except OSError as err:
        raise MediaError(f"cannot read {p}: {err.strerror}") from None


def _classify_bytes(
    ref: PartRef, data: bytes, claimed: str | None, filename: str | None = None
) -> Part:
    """Bytes become an image, a document or text by what they are, not by what they claim."""
    if not data:
        return FailedPart(ref, MediaError("the content is empty (0 bytes)"))
    kind = sniff_mime(data)
    if kind == "application/pdf":
        return DocumentPart(ref, data, filename)
    if kind == "image/svg+xml":
        return FailedPart(
            ref, MediaError("SVG images are not supported: rasterise them to PNG first")
        )
    if kind is not None and kind.startswith("image/"):
        return ImagePart(ref, data)
    if claimed and (
        claimed.startswith("text/") or claimed in ("application/json", "application/xml")
    ):
        try:
            return TextPart(ref, data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    if claimed and claimed.startswith("image/"):
        # A lying or unknown image: let the decoder say what is wrong with it.
        return ImagePart(ref, data)
    return FailedPart(
        ref,
        MediaError(f"unsupported content ({claimed or 'unknown type'}); send images, PDFs or text"),
    )


# -- extraction ---------------------------------------------------------------------------------


def _cap(kind: str, limits: MediaLimits) -> int:
    return limits.max_document_bytes if kind == "file" else limits.max_image_bytes


def _from_url(
    ref: PartRef, url: str, kind: str, limits: MediaLimits, claimed: str | None = None
) -> Part:
    cap = _cap(kind, limits)
    try:
        if url.startswith("data:"):
            mime = url[5:].split(",", 1)[0].split(";", 1)[0] or claimed
            return _classify_bytes(ref, _data_url(url, cap), mime)
        if url.startswith(("http://", "https://")):
            return _classify_bytes(ref, _fetch(url, limits, cap), claimed)
        if url.startswith("file://"):
            return _classify_bytes(ref, _read_file(url[7:], limits, cap), claimed)
        raise MediaError(f"unsupported URL scheme in {url[:40]!r}")
    except GuardError as err:
        return FailedPart(ref, err)


def _from_b64(
    ref: PartRef,
    payload: Any,
    kind: str,
    limits: MediaLimits,
    claimed: str | None,
    filename: str | None = None,
) -> Part:
    try:
        return _classify_bytes(
            ref, _b64(payload, _cap(kind, limits), f"{kind} block"), claimed, filename
        )
    except GuardError as err:
        return FailedPart(ref, err)


class _Budget:
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


def _blocks(
    items: Sequence[Any], source: str, start: int, limits: MediaLimits, budget: _Budget
) -> Iterator[Part]:
    """Parts of a run of blocks numbered from ``start``; those past the budget are one part."""
    n = min(len(items), max(budget.left, 0))
    for i in range(n):
        budget.left -= 1
        yield from _block(items[i], PartRef(source, start + i), limits, budget)
    if n < len(items):
        budget.left = 0
        ref = PartRef(source, start + n, block_end=start + len(items))
        yield budget.past_cap(ref, len(items) - n, "blocks")


def _block(
    b: Any, ref: PartRef, limits: MediaLimits, budget: _Budget | None = None
) -> Iterator[Part]:
    budget = budget or _Budget(limits)
    if isinstance(b, str):
        yield TextPart(ref, b)
        return
    if isinstance(b, (bytes, bytearray, memoryview)):
        yield _classify_bytes(ref, bytes(b), None)
        return
    if isinstance(b, PathLike):
        try:
            yield _classify_bytes(
                ref, _read_file(b, limits, limits.max_document_bytes), None, Path(b).name
            )
        except GuardError as err:
            yield FailedPart(ref, err)
        return
    if not isinstance(b, Mapping):
        yield FailedPart(ref, MediaError(f"cannot check content of type {type(b).__name__}"))
        return
    t = b.get("type")
    if t in _TEXT_TYPES:
        text = b.get("text")
        yield TextPart(ref, text if isinstance(text, str) else json.dumps(text, default=str))
        return
    if t in _REASONING_TYPES:
        text = b.get("reasoning") or b.get("thinking") or b.get("text") or ""
        if text:
            yield TextPart(ref, str(text))
        return
    if t in _SKIPPED_TYPES:  # tool calls are checked by the adapters as their own surface
        return
    if t in ("image_url", "input_image"):
        url = b.get("image_url")
        url = url.get("url") if isinstance(url, Mapping) else url
        if isinstance(url, str):
            yield _from_url(ref, url, "image", limits)
        else:
            yield FailedPart(
                ref, UnverifiableMedia("image referenced by file id: its content is not available")
            )
        return
    if t in ("image", "file", "document", "input_file", "audio", "video"):
        kind = "image" if t == "image" else "file"
        if t in ("audio", "video"):
            yield FailedPart(ref, UnverifiableMedia(f"{t} content is not checked"))
            return
        claimed = b.get("mime_type") or b.get("media_type")
        filename = b.get("filename") or (b.get("extras") or {}).get("filename")
        source = b.get("source")
        oai_file = b.get("file")
        if isinstance(source, Mapping):  # Anthropic
            st = source.get("type")
            claimed = source.get("media_type") or claimed
            if st == "base64":
                yield _from_b64(ref, source.get("data", ""), kind, limits, claimed, filename)
            elif st == "url" and isinstance(source.get("url"), str):
                yield _from_url(ref, source["url"], kind, limits, claimed)
            elif st == "text":
                yield TextPart(ref, str(source.get("data", "")))
            elif st == "content" and isinstance(source.get("content"), list):
                subs = source["content"]  # withheld as one block if any piece is unsafe
                n = min(len(subs), max(budget.left, 0))
                budget.left -= n
                for sub in subs[:n]:
                    yield from _block(sub, ref, limits, budget)
                if n < len(subs):
                    yield budget.past_cap(ref, len(subs) - n, "nested blocks")
            else:
                yield FailedPart(
                    ref, UnverifiableMedia(f"{t} source of type '{st}' is not available")
                )
            return
        if isinstance(oai_file, Mapping):  # OpenAI chat `file` part
            filename = oai_file.get("filename") or filename
            data = oai_file.get("file_data")
            if isinstance(data, str) and data.startswith("data:"):
                yield _from_url(ref, data, kind, limits)
            elif isinstance(data, str):
                yield _from_b64(ref, data, kind, limits, claimed or "application/pdf", filename)
            else:
                yield FailedPart(
                    ref,
                    UnverifiableMedia("file referenced by file id: its content is not available"),
                )
            return
        if "base64" in b:  # LangChain standard
            yield _from_b64(ref, b["base64"], kind, limits, claimed, filename)
        elif b.get("source_type") == "base64" and "data" in b:  # older LangChain
            yield _from_b64(ref, b["data"], kind, limits, claimed, filename)
        elif b.get("source_type") == "text" and "text" in b:
            yield TextPart(ref, str(b["text"]))
        elif isinstance(b.get("file_data"), str):  # Responses API input_file
            fd = b["file_data"]
            yield (
                _from_url(ref, fd, kind, limits)
                if fd.startswith("data:")
                else _from_b64(ref, fd, kind, limits, claimed, filename)
            )
        elif isinstance(b.get("url") or b.get("file_url"), str):
            yield _from_url(ref, b.get("url") or b["file_url"], kind, limits, claimed)
        elif isinstance(b.get("path") or b.get("file_path"), str):
            p = b.get("path") or b["file_path"]
            try:
                yield _classify_bytes(
                    ref, _read_file(p, limits, _cap(kind, limits)), claimed, Path(p).name
                )
            except GuardError as err:
                yield FailedPart(ref, err)
        else:
            yield FailedPart(
                ref, UnverifiableMedia(f"{t} block without inline data (file id or unknown source)")
            )
        return
    if isinstance(b.get("text"), str):
        yield TextPart(ref, b["text"])
        return
    yield FailedPart(ref, UnverifiableMedia(f"content block of type '{t}' cannot be checked"))


_B64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]+")


def _media_string(v: str) -> Any:
    """An artifact string that holds media (a data URL, or base64 of an image or a PDF) as
    the block it is; any other string stays text."""
    if v.startswith("data:"):
        return {"type": "image_url", "image_url": {"url": v}}
    if len(v) >= 64 and _B64_TEXT.fullmatch(v[:4096]):
        try:
            head = base64.b64decode("".join(v[:64].split()), validate=True)
        except (binascii.Error, ValueError):
            return v
        kind = sniff_mime(head)
        if kind == "application/pdf":
            return {"type": "file", "base64": v, "mime_type": kind}
        if kind is not None and kind.startswith("image/"):
            return {"type": "image", "base64": v, "mime_type": kind}
    return v


def _artifact_entries(value: Mapping[Any, Any]) -> list[Any]:
    """A tool's artifact dict of named values, as blocks: lists inside it are flattened,
    nested dicts without a ``type`` are checked as their JSON text, strings holding base64 or
    data-URL media as that media, and numbers, booleans and ``None`` carry nothing to check."""
    out: list[Any] = []
    for v in value.values():
        if isinstance(v, str):
            out.append(_media_string(v))
        elif isinstance(v, (list, tuple)):
            out.extend(_media_string(x) if isinstance(x, str) else x for x in v)
        elif isinstance(v, Mapping) and "type" not in v:
            out.append(json.dumps(v, default=str))
        elif v is not None and not isinstance(v, (int, float, bool)):
            out.append(v)
    return out


def extract_parts(
    content: Any, limits: MediaLimits | None = None, *, artifact: Any = None
) -> list[Part]:
    """Typed parts from message content (and, optionally, a tool's artifact), in order.

    Nothing is dropped: a block that cannot be decoded is a :class:`FailedPart`, and blocks
    past the policy's ``media.max_blocks`` (content and artifact together) are one more."""
    limits = limits or MediaLimits()
    budget = _Budget(limits)
    parts: list[Part] = []
    for source, value in (("content", content), ("artifact", artifact)):
        if value is None:
            continue
        if isinstance(value, Mapping) and source == "artifact" and "type" not in value:
            value = _artifact_entries(value)
        if isinstance(value, (list, tuple)):
            parts.extend(_blocks(value, source, 0, limits, budget))
        elif budget.left > 0:
            budget.left -= 1
            ref = PartRef(source, None if source == "content" else 0)
            parts.extend(_block(value, ref, limits, budget))
        else:
            parts.append(budget.past_cap(PartRef(source), 1, "blocks"))
    return parts


# -- fan-out ------------------------------------------------------------------------------------


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


def window_inputs(
    inputs: Sequence[SafetyInput], limits: MediaLimits
) -> list[SafetyInput | FailedPart]:
    """The text rule of :func:`fan_out`, for inputs built by hand (``Guard.check``): text
    longer than ``media.text_window_chars`` is split into overlapping windows, each keeping
    the input's part label (a withheld window withholds its input), and text past
    ``media.max_text_chars`` (all inputs together) is an unverifiable part. On an input with a
    response, the response is windowed and the user text stays its context; an image rides
    with the first window."""
    sizes = [len(i.response if i.response is not None else i.text) for i in inputs]
    if all(n <= limits.text_window_chars for n in sizes) and sum(sizes) <= limits.max_text_chars:
        return list(inputs)  # the common case: nothing to split
    out: list[SafetyInput | FailedPart] = []
    total = 0
    for inp in inputs:
        on_response = inp.response is not None
        text = inp.response if on_response else inp.text
        assert text is not None
        room = limits.max_text_chars - total
        if len(text) > room:
            out.append(
                FailedPart(
                    PartRef(),
                    UnverifiableMedia(
                        f"text past the policy's max_text_chars ({limits.max_text_chars:,})"
                    ),
                    label=inp.part,
                )
            )
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


def fan_out(
    parts: Sequence[Part],
    limits: MediaLimits,
    surface: Surface,
    *,
    context: str = "",
    tool_name: str | None = None,
    password: str | None = None,
) -> list[SafetyInput | FailedPart]:
    """Model inputs for the parts, in order; parts that cannot be classified stay FailedParts.

    On the response surface text is the ``response`` and ``context`` the user turn it answers;
    elsewhere text is user-side. Images and documents in a response are unverifiable.
    """
    out: list[SafetyInput | FailedPart] = []
    total_text = 0
    images_left = limits.max_images

    def past_images(ref: PartRef, what: str) -> FailedPart:
        return FailedPart(
            ref,
            UnverifiableMedia(
                f"{what} past the policy's media.max_images ({limits.max_images}) per message"
            ),
        )

    def text_inputs(ref: PartRef, text: str) -> None:
        nonlocal total_text
        if not text.strip():
            return
        room = limits.max_text_chars - total_text
        if room <= 0:
            out.append(
                FailedPart(
                    ref,
                    UnverifiableMedia(
                        f"text past the policy's max_text_chars ({limits.max_text_chars:,})"
                    ),
                )
            )
            return
        if len(text) > room:
            out.append(
                FailedPart(
                    ref,
                    UnverifiableMedia(
                        f"text past the policy's max_text_chars ({limits.max_text_chars:,})"
                    ),
                )
            )
            text = text[:room]
        total_text += len(text)
        spans = text_windows(text, limits.text_window_chars)
        for a, b in spans:
            w = text[a:b]
            r = replace(ref, span=(a, b)) if len(spans) > 1 else ref
            if surface is Surface.RESPONSE:
                out.append(
                    SafetyInput(
                        text=context, response=w, surface=surface, tool_name=tool_name, part=r.label
                    )
                )
            else:
                out.append(SafetyInput(text=w, surface=surface, tool_name=tool_name, part=r.label))

    for part in parts:
        if isinstance(part, FailedPart):
            out.append(part)
        elif isinstance(part, TextPart):
            text_inputs(part.ref, part.text)
        elif surface is Surface.RESPONSE:
            out.append(
                FailedPart(
                    part.ref,
                    UnverifiableMedia("images and documents in an assistant turn are not checked"),
                )
            )
        elif isinstance(part, ImagePart):
            if images_left <= 0:
                out.append(past_images(part.ref, "an image"))
                continue
            images_left -= 1
            try:
                img = load_image(part.data, limits)
            except MediaError as err:
                out.append(FailedPart(part.ref, err))
            else:
                out.append(
                    SafetyInput(
                        text="",
                        image=img,
                        surface=surface,
                        tool_name=tool_name,
                        part=part.ref.label,
                    )
                )
        elif isinstance(part, DocumentPart):
            if images_left <= 0:
                out.append(past_images(part.ref, "a document"))
                continue
            try:
                pdf = load_pdf(part.data, limits, password=password, max_pages=images_left)
            except MediaError as err:
                out.append(FailedPart(part.ref, err))
                continue
            images_left -= len(pdf.pages)
            for page in pdf.pages:
                pref = replace(part.ref, page=page.index)
                text = page.text.strip()
                spans = text_windows(text, limits.text_window_chars) if text else [(0, 0)]
                for n, (start, end) in enumerate(spans):
                    # the page image rides with the first window; later windows of the page's
                    # text carry the page's label, so they are withheld with the page
                    out.append(
                        SafetyInput(
                            text=text[start:end],
                            image=page.image if n == 0 else None,
                            surface=surface,
                            tool_name=tool_name,
                            part=pref.label,
                        )
                    )
            if pdf.skipped:
                # one part for all of them: a few kilobytes can claim a million pages
                first, n = pdf.skipped[0], len(pdf.skipped)
                cap = (
                    f"max_pdf_pages ({limits.max_pdf_pages})"
                    if first >= limits.max_pdf_pages
                    else f"max_images ({limits.max_images}) per message"
                )
                which = f"page {first + 1}" if n == 1 else f"pages {first + 1}-{first + n}"
                out.append(
                    FailedPart(
                        replace(part.ref, page=first, page_end=None if n == 1 else first + n),
                        UnverifiableMedia(
                            f"{which} of {pdf.page_count:,} past the policy's media.{cap}"
                        ),
                    )
                )
    return out
