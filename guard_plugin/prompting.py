"""From content to what the model is sent.

The model's own chat template carries the classifier instructions, taxonomy and output format;
we send only the content (one user turn: image first, then text; optionally one assistant turn)
and the template kwargs compiled from the tenant's policy.

Untrusted text is neutralised first: tokenizer control tokens (``<start_of_turn>``,
``<end_of_turn>``, ``<start_of_image>`` ...), the template's conversation markers and verdict
labels are rewritten with look-alike characters, so they stay readable to the classifier but can
no longer close the user turn, open a model turn or pose as a verdict.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guard_plugin.types import Surface

if TYPE_CHECKING:
    from guard_plugin.policy import CompiledPolicy

__all__ = [
    "GEMMA_CONTROL_TOKENS",
    "ImageData",
    "ModelRequest",
    "SafetyInput",
    "build_request",
    "neutralize",
]

#: Control tokens of the Gemma 3 tokenizer that text must never be able to produce.
GEMMA_CONTROL_TOKENS: tuple[str, ...] = (
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<bos>",
    "<eos>",
    "<pad>",
    "<unk>",
    "<mask>",
    "[@BOS@]",
)

# Tag-shaped control tokens, including Gemma's reserved <unusedN> and any <start_of_*> /
# <end_of_*> a future template may add; matched case-sensitively like the tokenizer does.
_TAG_TOKEN = re.compile(
    r"<(/?)(start_of_[a-z_]+|end_of_[a-z_]+|image_soft_token|bos|eos|pad|unk|mask|unused\d+)>"
)
_LT, _GT, _COLON = "\u2039", "\u203a", "\ua789"  # angle quotes and a modifier-letter colon

# Template markers and verdict labels are matched on a folded skeleton of the text, not on the
# text itself, so spacing, case, compatibility forms (fullwidth, mathematical letters), letters
# of other scripts that look Latin, accents and invisible characters do not hide them. They are
# defused by replacing, in the original text, the characters that fold to ':' with a modifier
# colon and those that fold to '<' / '>' with angle quotes: still readable, no longer a marker.
# Those three replacements are not colon- or angle-like by this definition; that is what makes
# the rewrite final (and neutralize idempotent).
_GAP = "[\\s\\x00]*"  # white space, or characters that fold to nothing (NUL in the skeleton)


def _word(word: str) -> str:
    return "\\x00*".join(word)


_SKELETON_MARKERS = re.compile(
    "|".join(
        [
            f"<{_GAP}(?:{_word('begin')}|{_word('end')}){_GAP}{_word('conversation')}{_GAP}>",
            f"(?:{_word('user')}|{_word('response')}){_GAP}{_word('safety')}{_GAP}:",
            f"{_word('safety')}{_GAP}{_word('categories')}{_GAP}:",
            f"{_word('response')}{_GAP}:{_GAP}{_word('agent')}{_GAP}:",
            f"^{_GAP}{_word('output')}{_GAP}:",
        ]
    ),
    re.MULTILINE,
)
_COLON_LIKE = ":\u02d0\u02f8\u0589\u05c3\u0703\u0704\u16ec\u205a\u2236\ufe13\ufe55\uff1a"
_ANGLE_LIKE = (
    "<>\u02c2\u02c3\u1438\u1433\u2329\u232a\u27e8\u27e9\u3008\u3009\ufe64\ufe65\uff1c\uff1e"
)
# Letters of other scripts (and Latin small capitals) that read as the Latin letters of the
# markers; applied after case folding and compatibility decomposition.
_LOOKALIKE = str.maketrans(
    {
        **dict(zip("авекмнорстухіјѕԁɡԛ", "abekmhopctyxijsdgq", strict=True)),
        **dict(zip("αβεηικνορτυχγϲ", "abenikvoptuxyc", strict=True)),
        **dict(zip("ıɑʏɪʀᴜꜱᴇᴏᴛᴀɢɴᴄᴠᴅʙ", "iayiruseotagncvdb", strict=True)),
        **dict.fromkeys(_COLON_LIKE, ":"),
        **dict.fromkeys(_ANGLE_LIKE[0::2], "<"),
        **dict.fromkeys(_ANGLE_LIKE[1::2], ">"),
    }
)
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Mn", "Me", "Cs", "Co", "Cn"})
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Every rewrite below needs one of these characters; most text has none of them.
_MAY_NEED = re.compile(f"[\\[{re.escape(_COLON_LIKE + _ANGLE_LIKE)}]")


def _fold_char(c: str) -> str:
    """What one character reads as in the skeleton: exactly one character, NUL for invisible
    ones (so positions in the skeleton are positions in the text). Of the rare characters
    that fold to several (ligatures, ``ß``), the first stands for them; none of the markers'
    letters comes from such a character."""
    if c.isspace():
        return " "
    # look-alikes first too: some (the lunate sigma) decompose into letters that do not
    folded = unicodedata.normalize("NFKD", c.translate(_LOOKALIKE)).casefold()
    visible = "".join(d for d in folded if unicodedata.category(d) not in _INVISIBLE_CATEGORIES)
    return visible.translate(_LOOKALIKE)[:1] or "\x00"


class _FoldTable(dict[int, str]):
    """A ``str.translate`` table that folds each character on first sight (bounded)."""

    def __missing__(self, code: int) -> str:
        folded = _fold_char(chr(code))
        if len(self) < 65536:
            self[code] = folded
        return folded


_FOLD = _FoldTable({c: chr(c).lower() for c in range(32, 127)})


def _skeleton(text: str) -> str:
    """The folded text, position for position."""
    if text.isascii() and not _ASCII_CONTROL.search(text):
        return text.lower()
    return text.translate(_FOLD)


_DEFUSED = {":": _COLON, "<": _LT, ">": _GT}


def _defuse_markers(text: str) -> str:
    skel = _skeleton(text)
    hits: dict[int, str] = {}
    for m in _SKELETON_MARKERS.finditer(skel):
        for k in range(m.start(), m.end()):
            rep = _DEFUSED.get(skel[k])
            if rep is not None:
                hits[k] = rep
    if not hits:
        return text
    out = list(text)
    for i, rep in hits.items():
        out[i] = rep
    return "".join(out)


def neutralize(text: str, *, extra_tokens: Iterable[str] = ()) -> str:
    """Rewrite control tokens and prompt markers in untrusted text with look-alikes.

    Control tokens are matched as the tokenizer matches them (exactly); the template's
    conversation markers and the verdict labels whatever their spacing, case, script or
    invisible characters. ``extra_tokens`` adds a tokenizer's own special tokens to the
    built-in Gemma set.
    """
    if not text or (not extra_tokens and not _MAY_NEED.search(text)):
        return text
    out = _TAG_TOKEN.sub(lambda m: f"{_LT}{m.group(1)}{m.group(2)}{_GT}", text)
    out = out.replace("[@BOS@]", f"[@BOS@{_GT}")
    for tok in extra_tokens:
        if tok and tok in out:
            out = out.replace(tok, _defuse(tok))
    return _defuse_markers(out)


def _defuse(token: str) -> str:
    if token.startswith("<") and token.endswith(">") and len(token) > 2:
        return f"{_LT}{token[1:-1]}{_GT}"
    # Any other shape: break it after its first character with a word joiner.
    return token[0] + "\u2060" + token[1:]


class ImageData:
    """A model-ready image. Produced by :mod:`guard_plugin.media` from decoded, oriented, RGB,
    downscaled pixels; the encoded bytes (PNG) are made only when a backend asks for them.

    ``ImageData(data)`` wraps already encoded bytes as they are. Two images are equal when
    their digests are; the digest is of the source bytes, so it identifies the content.
    """

    __slots__ = ("_data", "_digest", "_pil", "height", "mime_type", "width")

    def __init__(
        self,
        data: bytes | None = None,
        mime_type: str = "image/png",
        width: int | None = None,
        height: int | None = None,
        *,
        pil: Any = None,
        digest: str | None = None,
    ) -> None:
        if data is None and pil is None:
            raise ValueError("ImageData needs encoded bytes or a PIL image")
        self._data = data
        self._pil = pil
        self._digest = digest
        self.mime_type = mime_type
        self.width = width if width is not None else (pil.size[0] if pil is not None else None)
        self.height = height if height is not None else (pil.size[1] if pil is not None else None)

    @property
    def data(self) -> bytes:
        """Encoded bytes (PNG for decoded images), made on first use."""
        if self._data is None:
            import io

            buf = io.BytesIO()
            self._pil.save(buf, format="PNG", compress_level=1)
            self._data = buf.getvalue()
            self.mime_type = "image/png"
        return self._data

    @property
    def sha256(self) -> str:
        if self._digest is None:
            self._digest = hashlib.sha256(self.data).hexdigest()
        return self._digest

    def data_url(self) -> str:
        data = self.data
        return f"data:{self.mime_type};base64,{base64.b64encode(data).decode('ascii')}"

    def to_pil(self) -> Any:
        """The image as an RGB ``PIL.Image`` (shared: do not modify it)."""
        if self._pil is None:
            import io

            from PIL import Image

            with Image.open(io.BytesIO(self._data or b"")) as im:
                self._pil = im.convert("RGB")
        return self._pil

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageData) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"ImageData({self.width}x{self.height}, sha256={self.sha256[:12]}...)"


@dataclass(frozen=True)
class SafetyInput:
    """One model call's worth of content.

    ``text`` is the user-side text (the user's turn, or a tool result's text); ``image`` at most
    one image; ``response`` the assistant turn to classify (required on the response surface,
    with ``text`` as the user turn it answers). ``part`` names the piece of a larger message this
    input came from (``"text"``, ``"image:0"``, ``"page:3"``) so a rewrite can withhold it alone.
    """

    text: str = ""
    image: ImageData | None = None
    response: str | None = None
    surface: Surface = Surface.INPUT
    tool_name: str | None = None
    part: str = "text"

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"SafetyInput.text must be str, not {type(self.text).__name__}")
        if self.response is not None and not isinstance(self.response, str):
            raise TypeError("SafetyInput.response must be str or None")
        if self.image is not None and not isinstance(self.image, ImageData):
            raise TypeError(
                "SafetyInput.image must be an ImageData; decode images with guard_plugin.media"
            )
        if not isinstance(self.surface, Surface):
            object.__setattr__(self, "surface", Surface(self.surface))
        if self.surface is Surface.RESPONSE and self.response is None:
            raise ValueError(
                "a response-surface SafetyInput needs `response` (the assistant text); "
                "put the user turn it answers in `text`"
            )

    @property
    def is_empty(self) -> bool:
        return not self.text.strip() and self.image is None and not (self.response or "").strip()

    def content_digest(self) -> str:
        """SHA-256 of the content (text, response, image); computed once."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            image = self.image.sha256 if self.image else ""
            joined = f"{self.text}\x00{self.response or ''}\x00{image}"
            cached = hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()
            object.__setattr__(self, "_digest", cached)
        return cached

    def content_length(self) -> int:
        return (
            len(self.text) + len(self.response or "") + (len(self.image.data) if self.image else 0)
        )


@dataclass(frozen=True)
class ModelRequest:
    """What a classifier backend sends to the model for one :class:`SafetyInput`."""

    user_text: str
    response_text: str | None
    image: ImageData | None
    template_kwargs: Mapping[str, Any]
    max_new_tokens: int
    key: str

    @property
    def expects_response(self) -> bool:
        return self.response_text is not None

    def messages(
        self, image_part: Callable[[ImageData], dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Chat messages: a user turn (image part first, then text) and an optional assistant
        turn. ``image_part`` turns the image into a backend's content part."""
        content: list[dict[str, Any]] = []
        if self.image is not None:
            content.append(image_part(self.image) if image_part else {"type": "image"})
        content.append({"type": "text", "text": self.user_text})
        msgs: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if self.response_text is not None:
            msgs.append(
                {"role": "assistant", "content": [{"type": "text", "text": self.response_text}]}
            )
        return msgs


def build_request(
    inp: SafetyInput,
    policy: CompiledPolicy,
    *,
    reasoning: bool | None = None,
    extra_tokens: Iterable[str] = (),
) -> ModelRequest:
    """The model request for one input under a compiled policy.

    ``reasoning`` overrides the policy's thinking switch (the audit mode runs a second,
    reasoning request in the background).
    """
    think = policy.policy.reasoning == "on" if reasoning is None else reasoning
    kwargs, max_new, settings = policy.request_settings(think)
    extra = tuple(extra_tokens)
    user_text = neutralize(inp.text, extra_tokens=extra)
    if inp.image is not None and (not user_text or user_text[0] in "\r\n"):
        # Gemma 3 expands the image to "\n\n<start_of_image>...<end_of_image>\n\n". A newline
        # right after it merges into one token, and vLLM then cannot find the image's
        # placeholder (HTTP 500). A leading space keeps every backend's tokens the same.
        user_text = " " + user_text
    response_text = None if inp.response is None else neutralize(inp.response, extra_tokens=extra)
    # The request key: the content digest and the request settings (kwargs, token budget).
    key = hashlib.sha256(f"{inp.content_digest()}|{settings}".encode()).hexdigest()
    return ModelRequest(
        user_text=user_text,
        response_text=response_text,
        image=inp.image,
        template_kwargs=kwargs,
        max_new_tokens=max_new,
        key=key,
    )
