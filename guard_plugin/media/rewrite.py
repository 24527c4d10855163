"""Rewrite: the original content with exactly the withheld parts taken out.

The result keeps the input's shape: a string stays a string, a list of blocks stays a list of
blocks in the same formats. Withheld text windows are replaced by the redaction text, an
image block becomes a text block carrying it, and a PDF keeps its safe pages (rebuilt without
the withheld ones) followed by a note saying which pages were withheld.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

from guard_plugin.decision import Decision
from guard_plugin.media.content import PartRef

__all__ = ["artifact_withheld", "rewrite_content", "withheld_refs"]


def withheld_refs(decision: Decision) -> list[PartRef]:
    """The refs of the parts a rewrite must withhold."""
    refs = []
    for i in decision.withheld_parts:
        ref = PartRef.parse(decision.parts[i].part)
        refs.append(ref if ref is not None else PartRef("content"))  # unknown label: whole content
    return refs


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


def _block_data(block: Mapping[str, Any]) -> bytes | None:
    """The raw bytes of a document block, whatever its format."""
    from guard_plugin.media.content import _b64, _data_url

    cap = 1 << 40
    try:
        if isinstance(block.get("source"), Mapping) and block["source"].get("type") == "base64":
            return _b64(block["source"]["data"], cap, "document")
        if isinstance(block.get("file"), Mapping) and isinstance(
            block["file"].get("file_data"), str
        ):
            fd = block["file"]["file_data"]
            return _data_url(fd, cap) if fd.startswith("data:") else _b64(fd, cap, "document")
        for key in ("base64", "data", "file_data"):
            if isinstance(block.get(key), str):
                v = block[key]
                return _data_url(v, cap) if v.startswith("data:") else _b64(v, cap, "document")
    except Exception:
        return None
    return None


def _with_data(block: Mapping[str, Any], data: bytes) -> dict[str, Any]:
    """The same block, same format, carrying new bytes."""
    b64 = base64.b64encode(data).decode("ascii")
    new = dict(block)
    if isinstance(block.get("source"), Mapping):
        new["source"] = {**block["source"], "data": b64}
    elif isinstance(block.get("file"), Mapping):
        fd = block["file"].get("file_data", "")
        new["file"] = {
            **block["file"],
            "file_data": f"data:application/pdf;base64,{b64}"
            if str(fd).startswith("data:")
            else b64,
        }
    else:
        for key in ("base64", "data", "file_data"):
            if key in block:
                old = block[key]
                new[key] = (
                    f"data:application/pdf;base64,{b64}" if str(old).startswith("data:") else b64
                )
                break
    return new


def _text_block(block: Any, text: str) -> Any:
    if isinstance(block, Mapping) and isinstance(block.get("text"), str):
        return {**block, "text": text}
    return {"type": "text", "text": text}


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
    by_block: dict[int | None, list[PartRef]] = {}
    for r in refs:
        if r.block is None:
            by_block.setdefault(None, []).append(r)
        for b in r.blocks[: len(content)]:
            by_block.setdefault(b, []).append(r)
    if None in by_block:  # the whole content was one unit
        return [{"type": "text", "text": redaction}]
    out: list[Any] = []
    for i, block in enumerate(content):
        hits = by_block.get(i)
        if not hits:
            out.append(block)
            continue
        pages = {r.page for r in hits}
        if pages == {None} or any(r.page is None for r in hits if r.block_end is not None):
            text = (
                block
                if isinstance(block, str)
                else (block.get("text") if isinstance(block, Mapping) else None)
            )
            if isinstance(text, str):
                new_text = _redact_text(text, {r.span for r in hits}, redaction)
                out.append(new_text if isinstance(block, str) else _text_block(block, new_text))
            else:
                out.append({"type": "text", "text": redaction})
            continue
        # A document with some pages withheld: keep the others, in the same block format.
        drop = {r.page for r in hits if r.page is not None and r.page_end is None}
        ranges = [(r.page, r.page_end) for r in hits if r.page is not None and r.page_end]
        drop_from = min((a for a, _ in ranges), default=None)
        data = _block_data(block) if isinstance(block, Mapping) and None not in pages else None
        kept = _pdf_without(data, drop, password, drop_from) if data is not None else None
        listed = ", ".join(
            [str(p + 1) for p in sorted(drop)] + [f"{a + 1}-{b}" for a, b in sorted(ranges)]
        )
        if kept is None:
            out.append({"type": "text", "text": redaction})
        else:
            out.append(_with_data(block, kept))
            out.append(
                {
                    "type": "text",
                    "text": f"{redaction} ({'pages' if len(drop) > 1 or ranges else 'page'} "
                    f"{listed} "
                    "of this document)",
                }
            )
    return out
