"""Documents and screenshots for tests and demos, written without a PDF library."""

from __future__ import annotations

from typing import Any

__all__ = ["make_image_pdf", "make_screenshot", "make_text_pdf"]


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_text_pdf(
    pages: list[str],
    *,
    width: int = 612,
    height: int = 792,
    claimed_pages: int | None = None,
) -> bytes:
    """A PDF with one page per string (lines split on newlines), in Helvetica, text extractable.

    Written by hand (objects, content streams, a cross-reference table), so no PDF library is
    needed to make test documents. ``claimed_pages`` writes that count into the page tree
    instead of the real one: a page-count bomb (PDFium reports the claim).
    """
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    pages_id = len(objects) + 1 + 2 * len(pages)  # reserved: the Pages object comes last
    kids = []
    for text in pages:
        lines = text.encode("latin-1", "replace").decode("latin-1").split("\n")
        ops = ["BT", "/F1 14 Tf", "18 TL", f"54 {height - 72} Td"]
        for line in lines:
            ops += [f"({_pdf_escape(line)}) Tj", "T*"]
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
                b"/Resources << /Font << /F1 %d 0 R >> >> >>"
                % (pages_id, width, height, content, font)
            )
        )
    kid_refs = b" ".join(b"%d 0 R" % k for k in kids)
    count = len(kids) if claimed_pages is None else claimed_pages
    assert add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, count)) == pages_id
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        xref,
    )
    return bytes(out)


def make_image_pdf(images: list[Any]) -> bytes:
    """A PDF whose pages are only images (like a scan), from PIL images."""
    import io

    buf = io.BytesIO()
    rgb = [im.convert("RGB") for im in images]
    rgb[0].save(buf, "PDF", save_all=True, append_images=rgb[1:], resolution=150)
    return buf.getvalue()


def make_screenshot(
    text: str,
    *,
    size: tuple[int, int] = (1920, 1080),
    background: str = "white",
    banner: str = "#dde3ea",
    fmt: str = "PNG",
) -> bytes:
    """An encoded image with ``text`` drawn large on it under a top banner, like a browser
    screenshot."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(im)
    try:
        font: Any = ImageFont.load_default(size=max(12, size[1] // 20))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw.rectangle((0, 0, size[0], size[1] // 12), fill=banner)
    draw.text((size[0] // 40, size[1] // 6), text, fill="black", font=font)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()
