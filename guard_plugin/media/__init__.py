"""Images, PDFs and text out of message content, into model inputs, and back (rewrite).

No agent framework is imported here: adapters pass plain dicts, strings and bytes.
"""

from guard_plugin.media.content import (
    DocumentPart,
    FailedPart,
    ImagePart,
    Part,
    PartRef,
    TextPart,
    extract_parts,
    fan_out,
    split_text,
    text_windows,
)
from guard_plugin.media.images import SUPPORTED_IMAGE_FORMATS, load_image, sniff_mime
from guard_plugin.media.pdf import PdfContent, PdfPage, aload_pdf, load_pdf
from guard_plugin.media.rewrite import artifact_withheld, rewrite_content, withheld_refs

__all__ = [
    "SUPPORTED_IMAGE_FORMATS",
    "DocumentPart",
    "FailedPart",
    "ImagePart",
    "Part",
    "PartRef",
    "PdfContent",
    "PdfPage",
    "TextPart",
    "aload_pdf",
    "artifact_withheld",
    "extract_parts",
    "fan_out",
    "load_image",
    "load_pdf",
    "rewrite_content",
    "sniff_mime",
    "split_text",
    "text_windows",
    "withheld_refs",
]
