"""Images into model inputs: decode with limits, orient, convert to RGB, downscale.

Every limit comes from the tenant's :class:`~guard_plugin.policy.MediaLimits`; memory stays
bounded whatever a file claims, because the declared size is checked from the header before
any pixel is decoded. Failures raise :class:`~guard_plugin.errors.MediaError` with a message
that says what is wrong with the input.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import Any

from guard_plugin.errors import MediaError
from guard_plugin.policy import MediaLimits
from guard_plugin.prompting import ImageData

__all__ = ["SUPPORTED_IMAGE_FORMATS", "load_image", "sniff_mime"]

SUPPORTED_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"%PDF-", "application/pdf"),
)


def sniff_mime(data: bytes) -> str | None:
    """The media type from the file's leading bytes (never from what a caller claims)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    head = data[:1024].lstrip()
    if head.startswith(b"<?xml") or head[:4].lower() == b"<svg" or b"<svg" in head[:256].lower():
        return "image/svg+xml"
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return None


def load_image(data: bytes, limits: MediaLimits | None = None) -> ImageData:
    """Decode an image (PNG, JPEG, WebP, GIF first frame, BMP, TIFF) into model input.

    Checks the byte size and the declared pixel count before decoding, applies EXIF
    orientation, converts to RGB and reduces the image to less than twice ``limits.image_size``
    on its longer side (large JPEGs decode in draft mode straight to a near size); the final
    resample to the model's input size is left to the model's preprocessing. The result holds
    the pixels; nothing is re-encoded unless a backend needs bytes.
    """
    limits = limits or MediaLimits()
    if not data:
        raise MediaError("the image is empty (0 bytes)")
    if len(data) > limits.max_image_bytes:
        raise MediaError(
            f"the image is {len(data):,} bytes, over the policy's max_image_bytes "
            f"({limits.max_image_bytes:,})"
        )
    im = _open(data)
    source = im
    try:
        _check_header(im, limits)
        im = _decode(im, limits.image_size)
        factor = max(im.size) // limits.image_size
        if factor >= 2:
            # An integer box reduction (antialiased, a few ms) to between 1x and 2x the model's
            # input; the single final resample to 896x896 is the model's own preprocessing.
            im = im.reduce(factor)
        return ImageData(pil=im, digest=hashlib.sha256(data).hexdigest())
    except MemoryError:
        raise MediaError("not enough memory to decode the image") from None
    finally:
        if im is not source:
            source.close()


def _open(data: bytes) -> Any:
    """The image with its header read (nothing decoded yet)."""
    from PIL import Image, UnidentifiedImageError

    mime = sniff_mime(data)
    if mime == "image/svg+xml":
        raise MediaError("SVG images are not supported: rasterise them to PNG first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if mime is not None and mime.startswith("image/"):
            kind = mime.split("/")[1].upper()
            raise MediaError(f"the {kind} data is truncated or corrupt") from None
        raise MediaError(
            f"not a decodable image ({mime or 'unknown format'}); supported: "
            + ", ".join(SUPPORTED_IMAGE_FORMATS)
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise MediaError(f"image rejected as a decompression bomb: {err}") from None
    except Exception as err:  # noqa: BLE001 (Pillow raises many types for broken headers)
        raise MediaError(f"cannot read the image header: {err}") from None


def _check_header(im: Any, limits: MediaLimits) -> None:
    """The format and the declared size, before any pixel is decoded."""
    if im.format not in SUPPORTED_IMAGE_FORMATS:
        raise MediaError(
            f"unsupported image format {im.format}; supported: {', '.join(SUPPORTED_IMAGE_FORMATS)}"
        )
    w, h = im.size
    if w <= 0 or h <= 0:
        raise MediaError("the image has no pixels")
    if w * h > limits.max_image_pixels:
        raise MediaError(
            f"the image declares {w}x{h} = {w * h:,} pixels, over the policy's "
            f"max_image_pixels ({limits.max_image_pixels:,})"
        )


def _decode(im: Any, target: int) -> Any:
    """The first frame's pixels, upright, in RGB (transparency over white)."""
    from PIL import Image, ImageOps

    w, h = im.size
    if im.format == "JPEG" and max(w, h) > 2 * target:
        # Decode at 1/2, 1/4 or 1/8 scale directly: much faster and lighter than full size.
        im.draft("RGB", (max(1, w * target // max(w, h)), max(1, h * target // max(w, h))))
    try:
        im.seek(0)  # first frame of a GIF / multi-page TIFF
        im.load()
    except Exception as err:  # noqa: BLE001 (any decoder failure is a MediaError)
        raise MediaError(f"the image data is truncated or corrupt: {err}") from None
    if im.getexif().get(0x0112, 1) not in (0, 1):  # EXIF orientation
        im = ImageOps.exif_transpose(im) or im
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "P", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")
