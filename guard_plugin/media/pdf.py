"""PDFs into model inputs: each page rendered for the model's 896 px input, with its text.

PDFium is not thread-safe, so pages of one document are rendered in parallel by worker
processes (each opens its own copy) when the document is large enough for that to pay;
otherwise in the calling thread. Async callers use :func:`aload_pdf`, which never blocks the
event loop. Pages past the policy's ``max_pdf_pages`` are reported in ``skipped`` (a range:
a file of a few kilobytes can claim a million pages), never silently dropped.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import multiprocessing
import os
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from guard_plugin.errors import MediaError
from guard_plugin.policy import MediaLimits
from guard_plugin.prompting import ImageData

__all__ = ["PdfContent", "PdfPage", "aload_pdf", "load_pdf"]

_PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD
_EMPTY_PAGE_TREE = re.compile(rb"/Count\s*0\s*/Kids\s*\[\s*\]|/Kids\s*\[\s*\]\s*/Count\s*0\b")
#: documents with fewer pages render in the calling thread
PARALLEL_MIN_PAGES = 6
#: on fewer cores worker processes do not pay: moving a rendered page back (~1.8 MB of RGB)
#: costs about what rendering it does (measured on 2 cores: text pages 2.0 ms serial vs
#: 6.4 ms in processes; scanned pages 16-17 ms either way)
PARALLEL_MIN_CORES = 4


@dataclass(frozen=True)
class PdfPage:
    index: int  # 0-based page number in the document
    image: ImageData
    text: str


@dataclass(frozen=True)
class PdfContent:
    pages: tuple[PdfPage, ...]
    page_count: int
    skipped: range  # page numbers past the page limit
    sha256: str


def _open(data: bytes, password: str | None) -> Any:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data, password=password)
    except pdfium.PdfiumError as err:
        code = getattr(err, "err_code", None)
        if code == _PASSWORD_ERROR:
            if password is None:
                raise MediaError(
                    "the PDF is encrypted: it needs a password to be checked"
                ) from None
            raise MediaError("the PDF's password is wrong") from None
        # PDFium refuses an empty page tree without setting an error of its own (the code it
        # reports is then stale), so recognise that case from the bytes for a clear message.
        if _EMPTY_PAGE_TREE.search(data):
            raise MediaError("the PDF has no pages") from None
        raise MediaError(f"the PDF is corrupt or not a PDF: {err}") from None


def _render(doc: Any, indices: list[int], size: int) -> list[tuple[int, Any, str]]:
    """Render pages of an open document to RGB PIL images, with their text."""
    out = []
    for i in indices:
        page = doc[i]
        try:
            w, h = page.get_size()
            bitmap = page.render(scale=size / max(w, h, 1.0))
            pil = bitmap.to_pil()
            if pil.mode != "RGB":
                pil = pil.convert("RGB")
            textpage = page.get_textpage()
            try:
                text = textpage.get_text_range()
            finally:
                textpage.close()
        finally:
            page.close()
        out.append((i, pil, text))
    return out


def _render_pages(
    data: bytes, password: str | None, indices: list[int], size: int
) -> list[tuple[int, tuple[int, int], bytes, str]]:
    """Worker-process entry: open the document and render pages to raw RGB bytes."""
    doc = _open(data, password)
    try:
        return [(i, pil.size, pil.tobytes(), text) for i, pil, text in _render(doc, indices, size)]
    finally:
        doc.close()


_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ProcessPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            ctx = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
            _POOL = ProcessPoolExecutor(
                max_workers=max(2, min(os.cpu_count() or 2, 8)), mp_context=ctx
            )
            atexit.register(_POOL.shutdown, wait=False, cancel_futures=True)
        return _POOL


def _render_in_pool(
    data: bytes, password: str | None, wanted: list[int], size: int, cores: int
) -> list[tuple[int, tuple[int, int], bytes, str]] | None:
    """Render across worker processes; ``None`` when the pool cannot be used (the caller then
    renders in its own thread: a broken pool costs speed, never a check)."""
    global _POOL
    chunks = [wanted[k::cores] for k in range(cores) if wanted[k::cores]]
    try:
        futures = [_pool().submit(_render_pages, data, password, c, size) for c in chunks]
        return [r for f in futures for r in f.result()]
    except MediaError:
        raise
    except Exception:  # noqa: BLE001 (BrokenProcessPool, pickling or start-up failures)
        with _POOL_LOCK:
            if _POOL is not None:
                _POOL.shutdown(wait=False, cancel_futures=True)
                _POOL = None
        return None


def load_pdf(
    data: bytes,
    limits: MediaLimits | None = None,
    *,
    password: str | None = None,
    parallel: bool | None = None,
    max_pages: int | None = None,
) -> PdfContent:
    """Render the first ``limits.max_pdf_pages`` pages (or ``max_pages``, when smaller) and
    extract their text.

    ``parallel``: ``None`` decides by page count and cores; ``True`` / ``False`` force it.
    Raises :class:`MediaError` for an empty, oversized, corrupt or encrypted document, or one
    whose pages cannot be loaded.
    """
    import pypdfium2 as pdfium
    from PIL import Image

    limits = limits or MediaLimits()
    if not data:
        raise MediaError("the PDF is empty (0 bytes)")
    if len(data) > limits.max_document_bytes:
        raise MediaError(
            f"the PDF is {len(data):,} bytes, over the policy's max_document_bytes "
            f"({limits.max_document_bytes:,})"
        )
    if not data.lstrip()[:5] == b"%PDF-":
        raise MediaError("not a PDF (no %PDF- header)")
    doc = _open(data, password)
    count = 0
    try:
        count = len(doc)
        if count == 0:
            raise MediaError("the PDF has no pages")
        cap = limits.max_pdf_pages if max_pages is None else min(max_pages, limits.max_pdf_pages)
        wanted = list(range(min(count, max(cap, 0))))
        cores = os.cpu_count() or 1
        auto = len(wanted) >= PARALLEL_MIN_PAGES and cores >= PARALLEL_MIN_CORES
        rendered = None
        if parallel if parallel is not None else auto:
            pooled = _render_in_pool(data, password, wanted, limits.image_size, cores)
            if pooled is not None:
                rendered = [(i, Image.frombytes("RGB", sz, raw), t) for i, sz, raw, t in pooled]
        if rendered is None:
            rendered = _render(doc, wanted, limits.image_size)
    except pdfium.PdfiumError as err:
        # a page tree that claims pages it does not have, or a page PDFium cannot parse
        raise MediaError(f"the PDF claims {count:,} pages but one cannot be read ({err})") from None
    finally:
        doc.close()
    digest = hashlib.sha256(data).hexdigest()
    pages = tuple(
        PdfPage(i, ImageData(pil=img, digest=f"{digest}:page:{i}"), text)
        for i, img, text in sorted(rendered, key=lambda r: r[0])
    )
    return PdfContent(pages, count, range(len(wanted), count), digest)


async def aload_pdf(
    data: bytes,
    limits: MediaLimits | None = None,
    *,
    password: str | None = None,
    max_pages: int | None = None,
) -> PdfContent:
    """:func:`load_pdf` off the event loop."""
    return await asyncio.to_thread(load_pdf, data, limits, password=password, max_pages=max_pages)
