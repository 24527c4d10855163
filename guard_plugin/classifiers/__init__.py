"""Classifier backends behind one seam (see :mod:`guard_plugin.classifiers.base`).

:mod:`.registry` builds one shared instance per spec; :mod:`.batching` is the worker thread
a local model runs on; :mod:`.openai_compat` talks to vLLM, SGLang and NIM; the local model is
:mod:`.transformers` (``local`` extra). The scripted test double lives in
:mod:`guard_plugin.testing`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from guard_plugin.classifiers.base import (
    BaseClassifier,
    Classifier,
    ClassifierOutput,
    ClassifierResult,
)
from guard_plugin.classifiers.registry import (
    ENV_CLASSIFIER,
    clear_registry,
    load_classifier,
    register_scheme,
    spec_from_env,
)

__all__ = [
    "ENV_CLASSIFIER",
    "BaseClassifier",
    "Classifier",
    "ClassifierOutput",
    "ClassifierResult",
    "clear_registry",
    "load_classifier",
    "register_scheme",
    "spec_from_env",
]

_MOVED = {"DEMO_RULES", "ScriptedClassifier", "ScriptedRule"}


def __getattr__(name: str) -> Any:
    # the test double moved to guard_plugin.testing; these names still import from here
    if name not in _MOVED:
        raise AttributeError(f"module 'guard_plugin.classifiers' has no attribute {name!r}")
    warnings.warn(
        f"guard_plugin.classifiers.{name} moved: import it from guard_plugin.testing",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("guard_plugin.testing"), name)
