"""guard_plugin: Nemotron Content Safety guardrails for agent loops.

The names here are what an application needs: a :class:`Guard`, its :class:`Policy` and
:class:`PolicyStore`, the :class:`Decision` it returns, the content it takes
(:class:`SafetyInput`, :class:`ImageData`), :func:`rewrite_content` to apply a rewrite, an
audit sink, and the errors. The building blocks live one level down, one package per layer:
:mod:`guard_plugin.policy`, :mod:`guard_plugin.media`, :mod:`guard_plugin.check`,
:mod:`guard_plugin.classifiers`, :mod:`guard_plugin.audit`, :mod:`guard_plugin.testing`.

The core imports no agent framework and no torch. Adapters live in
:mod:`guard_plugin.langchain`, :mod:`guard_plugin.langgraph` and :mod:`guard_plugin.nemo`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from guard_plugin.audit import AuditEvent, JsonlAuditSink
from guard_plugin.check import Guard
from guard_plugin.classifiers import load_classifier
from guard_plugin.decision import Decision
from guard_plugin.errors import (
    ClassifierError,
    ConfigError,
    GuardBlocked,
    GuardError,
    MediaError,
    PolicyError,
    UnverifiableMedia,
)
from guard_plugin.media import rewrite_content
from guard_plugin.policy import Policy, PolicyStore, load_policy
from guard_plugin.prompting import ImageData, SafetyInput
from guard_plugin.types import Action, Status, Surface

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AuditEvent",
    "ClassifierError",
    "ConfigError",
    "Decision",
    "Guard",
    "GuardBlocked",
    "GuardError",
    "ImageData",
    "JsonlAuditSink",
    "MediaError",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "SafetyInput",
    "Status",
    "Surface",
    "UnverifiableMedia",
    "__version__",
    "load_classifier",
    "load_policy",
    "rewrite_content",
]

# Names this package exported before its building blocks moved one level down: still
# importable from here (with a DeprecationWarning naming the new home).
_MOVED = {
    "AuditSink": "guard_plugin.audit",
    "LoggingAuditSink": "guard_plugin.audit",
    "MemoryAuditSink": "guard_plugin.audit",
    "MultiAuditSink": "guard_plugin.audit",
    "BaseClassifier": "guard_plugin.classifiers",
    "Classifier": "guard_plugin.classifiers",
    "ClassifierOutput": "guard_plugin.classifiers",
    "ScriptedClassifier": "guard_plugin.testing",
    "ScriptedRule": "guard_plugin.testing",
    "PartOutcome": "guard_plugin.decision",
    "decide": "guard_plugin.decision",
    "ClassifierTimeout": "guard_plugin.errors",
    "ClassifierUnavailable": "guard_plugin.errors",
    "InjectionDetected": "guard_plugin.errors",
    "ModelLoadError": "guard_plugin.errors",
    "QueueFullError": "guard_plugin.errors",
    "UnknownTenantError": "guard_plugin.errors",
    "VerdictParseError": "guard_plugin.errors",
    "CompiledPolicy": "guard_plugin.policy",
    "CustomCategory": "guard_plugin.policy",
    "CustomPolicy": "guard_plugin.policy",
    "compile_policy": "guard_plugin.policy",
    "ModelRequest": "guard_plugin.prompting",
    "build_request": "guard_plugin.prompting",
    "neutralize": "guard_plugin.prompting",
    "Verdict": "guard_plugin.verdict",
    "parse_verdict": "guard_plugin.verdict",
}


def __getattr__(name: str) -> Any:
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'guard_plugin' has no attribute {name!r}")
    warnings.warn(
        f"guard_plugin.{name} moved: import it from {home}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(home), name)
