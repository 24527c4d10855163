"""Rewrite: the original content with exactly the withheld parts taken out.

The result keeps the input's shape: a string stays a string, a list of blocks stays a list of
blocks in the same formats. Withheld text windows are replaced by the redaction text, an
image block becomes a text block carrying it, and a PDF keeps its safe pages (rebuilt without
the withheld ones) followed by a note saying which pages were withheld.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from guard_plugin.decision import Decision
from guard_plugin.media.formats import document_bytes, with_document
from guard_plugin.media.formats.text import text_of, with_text
from guard_plugin.types import PartRef

__all__ = ["artifact_withheld", "rewrite_content", "withheld_refs"]


def withheld_refs(decision: Decision) -> list[PartRef]:
    """The refs of the parts a rewrite must withhold; a part that is no piece of message
    content (an input built by hand) stands for the whole content."""
    refs = [decision.parts[i].ref for i in decision.withheld_parts]
    return [r if r.is_message_content else PartRef("content") for r in refs]


def artifact_withheld(decision: Decision) -> bool:
    """True when any part of the tool's artifact was withheld (the adapter drops it)."""
    return any(r.source == "artifact" for r in withheld_refs(decision))


def _redact_text(text: str, spans: set[tuple[int, int] | None], redaction: str) -> str:
    if None in spans:
        return redaction
    cut = sorted(s for s in spans if s is not None)
    out: list[str] = []
    pos = 0
    for a, b in cut:
        if b <= pos:
            continue
        if a > pos:
            out.append(text[pos:a])
            out.append(redaction)
        elif not out or out[-1] != redaction:
            out.append(redaction)
        pos = b
    out.append(text[pos:])
    return "".join(out)


def _pdf_without(
    data: bytes, drop: set[int], password: str | None, drop_from: int | None = None
) -> bytes | None:
    """The document without the pages in ``drop`` and every page from ``drop_from`` on."""
    import pypdfium2 as pdfium

    src = pdfium.PdfDocument(data, password=password)
    try:
        end = len(src) if drop_from is None else min(len(src), drop_from)
        keep = [i for i in range(end) if i not in drop]
        if not keep:
            return None
        dst = pdfium.PdfDocument.new()
        dst.import_pages(src, pages=keep)
        buf = io.BytesIO()
        dst.save(buf)
        dst.close()
        return buf.getvalue()
    finally:
        src.close()


def _rewrite_text_block(block: Any, hits: list[PartRef], redaction: str) -> Any:
    text = text_of(block)
    if text is None:
        return {"type": "text", "text": redaction}
    return with_text(block, _redact_text(text, {r.span for r in hits}, redaction))


def _rewrite_document(
    block: Any, hits: list[PartRef], redaction: str, password: str | None
) -> list[Any]:
    """A document with some pages withheld: the others, in the same block format, and a note."""
    pages = {r.page for r in hits}
    drop = {r.page for r in hits if r.page is not None and r.page_end is None}
    ranges = [(r.page, r.page_end) for r in hits if r.page is not None and r.page_end]
    drop_from = min((a for a, _ in ranges), default=None)
    data = document_bytes(block) if isinstance(block, Mapping) and None not in pages else None
    kept = _pdf_without(data, drop, password, drop_from) if data is not None else None
    if kept is None:
        return [{"type": "text", "text": redaction}]
    listed = ", ".join(
        [str(p + 1) for p in sorted(drop)] + [f"{a + 1}-{b}" for a, b in sorted(ranges)]
    )
    noun = "pages" if len(drop) > 1 or ranges else "page"
    note = f"{redaction} ({noun} {listed} of this document)"
    return [with_document(block, kept), {"type": "text", "text": note}]


def rewrite_content(
    content: Any,
    decision: Decision,
    *,
    redaction: str | None = None,
    password: str | None = None,
) -> Any:
    """``content`` with the decision's withheld parts replaced by ``redaction`` (default: the
    decision's replacement text). Content with nothing withheld comes back unchanged."""
    redaction = redaction if redaction is not None else (decision.replacement or "[withheld]")
    refs = [r for r in withheld_refs(decision) if r.source == "content"]
    if not refs:
        return content
    if isinstance(content, str):
        return _redact_text(content, {r.span for r in refs}, redaction)
    if not isinstance(content, Sequence) or isinstance(content, (bytes, bytearray)):
        return redaction
    by_block: dict[int, list[PartRef]] = {}
    for r in refs:
        if r.block is None:  # the whole content was one unit
            return [{"type": "text", "text": redaction}]
        for b in r.blocks[: len(content)]:
            by_block.setdefault(b, []).append(r)
    out: list[Any] = []
    for i, block in enumerate(content):
        hits = by_block.get(i)
        if not hits:
            out.append(block)
        elif all(r.page is None for r in hits) or any(
            r.page is None for r in hits if r.block_end is not None
        ):
            out.append(_rewrite_text_block(block, hits, redaction))
        else:
            out.extend(_rewrite_document(block, hits, redaction, password))
    return out
