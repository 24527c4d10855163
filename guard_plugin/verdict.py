"""Strict parsing of the model's verdict text.

The rules match NeMo Guardrails' parser for the Nemotron Content Safety models, so a rail
backed by guard_plugin and NeMo's built-in rail agree on every output:

- ``<think>...</think>`` blocks are removed (their text is kept as the reasoning trace); a
  ``<think>`` that is never closed means the trace was truncated: an error.
- ``User Safety`` / ``Response Safety`` stated more than once, anywhere in the text, is an error.
- A verdict is a line starting with ``User Safety: safe|unsafe`` (case-insensitive; trailing
  words are tolerated, ``safely`` or ``undetermined`` are not verdicts).
- A response check reads only ``Response Safety``; its absence is an error, never "safe".
- Categories come from the ``Safety Categories:`` line, split on ","; no line means none.

One rule is stricter than NeMo's: two ``Safety Categories`` lines are an error (NeMo reads the
first), because a per-category policy could otherwise act on a partial list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from guard_plugin.errors import VerdictParseError

__all__ = ["Label", "Verdict", "VerdictParseError", "parse_verdict"]

Label = Literal["safe", "unsafe"]
_LABELS: dict[str, Label] = {"safe": "safe", "unsafe": "unsafe"}

_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_FIELDS = ("User Safety", "Response Safety")


def _mention(field_name: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(field_name)}\s*:\s*(safe|unsafe)\b", re.IGNORECASE)


def _line(field_name: str) -> re.Pattern[str]:
    return re.compile(
        rf"^\s*{re.escape(field_name)}\s*:\s*(safe|unsafe)\b", re.IGNORECASE | re.MULTILINE
    )


_MENTIONS = {name: _mention(name) for name in _FIELDS}
_LINES = {name: _line(name) for name in _FIELDS}
_CATEGORIES = re.compile(r"^\s*Safety Categories\s*:\s*(.*)$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Verdict:
    """A parsed verdict. A label is ``None`` where the model did not rate that turn."""

    user_safety: Label | None
    response_safety: Label | None = None
    categories: tuple[str, ...] = ()
    reasoning: str | None = None
    raw: str = field(default="", repr=False, compare=False)
    #: P(unsafe) per turn where the backend reported it (see ``ClassifierOutput``)
    user_score: float | None = None
    response_score: float | None = None

    def label_for(self, *, response: bool) -> Label | None:
        """The label that decides a check: the response's for a response check, else the user's."""
        return self.response_safety if response else self.user_safety

    def score_for(self, *, response: bool) -> float | None:
        """P(unsafe) of the label that decides a check, where the backend reported it."""
        return self.response_score if response else self.user_score

    def is_unsafe(self, *, response: bool = False) -> bool:
        return self.label_for(response=response) == "unsafe"


def parse_verdict(
    text: str, *, reasoning: str | None = None, expect_response: bool = False
) -> Verdict:
    """Parse the model's output. Raises :class:`VerdictParseError` for anything malformed.

    ``expect_response`` says the request carried an assistant turn: ``Response Safety`` is then
    required (``User Safety`` optional), otherwise ``User Safety`` is required.
    ``reasoning`` is a trace the server returned apart from the content (``reasoning_content``).
    """
    if not isinstance(text, str):
        raise VerdictParseError("model output is not text", repr(text))
    if "<think>" in text:
        traces = [t.strip() for t in _THINK_BLOCK.findall(text)]
        cleaned = _THINK_BLOCK.sub("", text)
    else:
        traces, cleaned = [], text
    if "<think>" in cleaned:
        raise VerdictParseError("unterminated <think> block: the trace was truncated", text)
    if not cleaned.strip():
        raise VerdictParseError("empty model output", text)
    for name in _FIELDS:
        if len(_MENTIONS[name].findall(cleaned)) > 1:
            raise VerdictParseError(f"'{name}' stated more than once", text)

    labels: dict[str, Label | None] = {}
    for name in _FIELDS:
        m = _LINES[name].search(cleaned)
        labels[name] = _LABELS[m.group(1).lower()] if m else None

    required = "Response Safety" if expect_response else "User Safety"
    if labels[required] is None:
        raise VerdictParseError(f"no '{required}: safe|unsafe' line", text)

    cat_lines = _CATEGORIES.findall(cleaned) if "categories" in cleaned.casefold() else []
    if len(cat_lines) > 1:
        raise VerdictParseError("'Safety Categories' stated more than once", text)
    categories = tuple(c.strip() for c in cat_lines[0].split(",") if c.strip()) if cat_lines else ()

    trace_parts = [reasoning.strip()] if reasoning and reasoning.strip() else []
    trace_parts += [t for t in traces if t]
    return Verdict(
        user_safety=labels["User Safety"],
        response_safety=labels["Response Safety"],
        categories=categories,
        reasoning="\n\n".join(trace_parts) or None,
        raw=text,
    )
