"""Bytes out of what a block carries (base64, data URLs, http(s) URLs, local paths), with the
policy's size caps checked before decoding, and bytes into a part by what they are (sniffed),
not by what they claim."""

from __future__ import annotations

import base64
import binascii
import os
import stat
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from guard_plugin.errors import GuardError, MediaError, UnverifiableMedia
from guard_plugin.media.fetching import fetch
from guard_plugin.media.images import sniff_mime
from guard_plugin.media.parts import DocumentPart, FailedPart, ImagePart, Part, PartRef, TextPart
from guard_plugin.policy import MediaLimits

__all__ = [
    "b64_bytes",
    "cap_for",
    "data_url_bytes",
    "fetch",
    "from_b64",
    "from_url",
    "part_from_bytes",
    "read_file",
]


def b64_bytes(payload: str | bytes, cap: int, what: str) -> bytes:
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


def data_url_bytes(url: str, cap: int) -> bytes:
    header, sep, payload = url[5:].partition(",")
    if not sep or not payload.strip():
        raise MediaError("the data URL has no payload")
    if header.endswith(";base64"):
        return b64_bytes(payload, cap, "data URL")
    raw = unquote_to_bytes(payload)
    if len(raw) > cap:
        raise MediaError(f"the data URL is over the policy's limit of {cap:,} bytes")
    return raw


def read_file(path: str | PathLike[str], limits: MediaLimits, cap: int) -> bytes:
    if not limits.allow_local_files:
        raise UnverifiableMedia(
            f"local file {str(path)[:80]} not read; the policy's media.allow_local_files is off"
        )
    p = Path(path)
    try:
        if limits.local_files_root is not None:
            root = Path(limits.local_files_root).resolve()
            if not p.resolve().is_relative_to(root):
                raise UnverifiableMedia(
                    f"local file {str(path)[:80]} not read: it is outside the policy's "
                    f"media.local_files_root ({root})"
                )
        with p.open("rb") as f:
            # a regular file only: a device (/dev/zero) or a pipe never ends, and /proc files
            # report no size; and never more than the cap, whatever the size said
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise MediaError(f"{p} is not a regular file")
            data = f.read(cap + 1)
        if len(data) > cap:
            raise MediaError(f"{p} is over the policy's limit of {cap:,} bytes")
        return data
    except OSError as err:
        raise MediaError(f"cannot read {p}: {err.strerror}") from None


def part_from_bytes(
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


def cap_for(kind: str, limits: MediaLimits) -> int:
    return limits.max_document_bytes if kind == "file" else limits.max_image_bytes


def from_url(
    ref: PartRef, url: str, kind: str, limits: MediaLimits, claimed: str | None = None
) -> Part:
    cap = cap_for(kind, limits)
    try:
        if url.startswith("data:"):
            mime = url[5:].split(",", 1)[0].split(";", 1)[0] or claimed
            return part_from_bytes(ref, data_url_bytes(url, cap), mime)
        if url.startswith(("http://", "https://")):
            return part_from_bytes(ref, fetch(url, limits, cap), claimed)
        if url.startswith("file://"):
            return part_from_bytes(ref, read_file(url[7:], limits, cap), claimed)
        raise MediaError(f"unsupported URL scheme in {url[:40]!r}")
    except GuardError as err:
        return FailedPart(ref, err)


def from_b64(
    ref: PartRef,
    payload: Any,
    kind: str,
    limits: MediaLimits,
    claimed: str | None,
    filename: str | None = None,
) -> Part:
    try:
        return part_from_bytes(
            ref,
            b64_bytes(
                payload,
                cap_for(kind, limits),
                f"{kind} block" + (f" '{filename}'" if filename else ""),
            ),
            claimed,
            filename,
        )
    except GuardError as err:
        return FailedPart(ref, err)
