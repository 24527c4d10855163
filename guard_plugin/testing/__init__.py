"""Test doubles and offline test models. Nothing here is a safety model.

- :class:`ScriptedClassifier`: a keyword matcher behind the classifier seam, the stand-in of
  the demo and the notebooks (a TEST DOUBLE, always labelled as one).
- :func:`build_tiny_gemma3` / :func:`build_verdict_test_model`: small Gemma 3 folders that load
  through the same code as the real model (``local`` extra); :func:`cached_verdict_test_model`
  trains the latter once per machine and keeps it under a key of the code that builds it.
- :func:`make_text_pdf`, :func:`make_image_pdf`, :func:`make_screenshot`: media for tests.
- ``ScriptedChatModel`` and ``tool_call`` (``langchain`` extra): a chat model that replies
  from a script, imported from :mod:`guard_plugin.testing.langchain` on first use.
"""

from __future__ import annotations

from typing import Any

from guard_plugin.testing.documents import make_image_pdf, make_screenshot, make_text_pdf
from guard_plugin.testing.models import (
    TEST_MODEL_MARKERS,
    TINY_CHAT_TEMPLATE,
    TinyModel,
    build_tiny_gemma3,
    build_verdict_test_model,
    cached_verdict_test_model,
)
from guard_plugin.testing.scripted import DEMO_RULES, ScriptedClassifier, ScriptedRule

__all__ = [
    "DEMO_RULES",
    "TEST_MODEL_MARKERS",
    "TINY_CHAT_TEMPLATE",
    "ScriptedChatModel",
    "ScriptedClassifier",
    "ScriptedRule",
    "TinyModel",
    "build_tiny_gemma3",
    "build_verdict_test_model",
    "cached_verdict_test_model",
    "make_image_pdf",
    "make_screenshot",
    "make_text_pdf",
    "tool_call",
]

_LANGCHAIN = frozenset({"ScriptedChatModel", "tool_call"})


def __getattr__(name: str) -> Any:
    # the LangChain doubles need langchain-core; import them only when asked for
    if name in _LANGCHAIN:
        from guard_plugin.testing import langchain

        return getattr(langchain, name)
    raise AttributeError(f"module 'guard_plugin.testing' has no attribute {name!r}")
