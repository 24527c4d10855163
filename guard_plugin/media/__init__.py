"""Images, PDFs and text out of message content, into model inputs, and back (rewrite).

One module per step: :mod:`.formats` reads each block format (and writes documents back in
it), :mod:`.sources` turns what a block carries into bytes under the policy's caps,
:mod:`.images` and :mod:`.pdf` decode, :mod:`.extract` walks a message into typed parts
(:mod:`.parts`), :mod:`.fanout` turns parts into model inputs, and :mod:`.rewrite` takes the
withheld parts out of the original content. No agent framework is imported here: adapters
pass plain dicts, strings and bytes.
"""

from guard_plugin.media.extract import extract_parts
from guard_plugin.media.fanout import fan_out, split_text, text_windows, window_inputs
from guard_plugin.media.formats.text import content_text
from guard_plugin.media.images import SUPPORTED_IMAGE_FORMATS, load_image, sniff_mime
from guard_plugin.media.parts import DocumentPart, FailedPart, ImagePart, Part, PartRef, TextPart
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
    "content_text",
    "extract_parts",
    "fan_out",
    "load_image",
    "load_pdf",
    "rewrite_content",
    "sniff_mime",
    "split_text",
    "text_windows",
    "window_inputs",
    "withheld_refs",
]
