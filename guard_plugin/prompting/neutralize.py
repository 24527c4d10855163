"""Untrusted text made safe to put in the classifier's prompt.

The model's own chat template carries the classifier instructions, taxonomy and output format;
we send only the content (one user turn: image first, then text; optionally one assistant turn)
and the template kwargs compiled from the tenant's policy.

Untrusted text is neutralised first: tokenizer control tokens (``<start_of_turn>``,
``<end_of_turn>``, ``<start_of_image>`` ...), the template's conversation markers and verdict
labels are rewritten with look-alike characters, so they stay readable to the classifier but can
no longer close the user turn, open a model turn or pose as a verdict.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["GEMMA_CONTROL_TOKENS", "neutralize"]

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
