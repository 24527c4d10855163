"""Media fixtures, generated (nothing binary is committed)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image

from guard_plugin.testing import make_image_pdf, make_text_pdf


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png(color: str = "white", size: tuple[int, int] = (64, 48)) -> bytes:
    return encode(Image.new("RGB", size, color), "PNG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{b64(data)}"


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid tiny PNG whose header claims width x height pixels."""
    raw = png(size=(1, 1))
    ihdr_at = raw.index(b"IHDR")
    body = bytearray(raw[ihdr_at : ihdr_at + 17])
    body[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(body)) & 0xFFFFFFFF)
    return raw[:ihdr_at] + bytes(body) + crc + raw[ihdr_at + 21 :]


def jpeg_with_orientation(size: tuple[int, int] = (80, 40), orientation: int = 6) -> bytes:
    im = Image.new("RGB", size, "green")
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "JPEG", exif=exif.tobytes())


def encrypted_pdf(password: str = "s3cret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_text_pdf(["secret page"]))))
    writer.encrypt(password)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def empty_pdf() -> bytes:
    """A zero-page PDF as PDFium itself writes one."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def scanned_pdf(pages: int = 2) -> bytes:
    return make_image_pdf(
        [Image.new("RGB", (600, 800), c) for c in ["white", "gray", "black"][:pages] * pages][
            :pages
        ]
    )
