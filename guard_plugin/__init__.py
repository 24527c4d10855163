"""guard_plugin: Nemotron Content Safety guardrails for agent loops.

The core (this package's top level) imports no agent framework. Adapters live in
``guard_plugin.langchain``, ``guard_plugin.langgraph`` and ``guard_plugin.nemo``.
"""

from guard_plugin.audit import (
    AuditEvent,
    AuditSink,
    JsonlAuditSink,
    LoggingAuditSink,
    MemoryAuditSink,
    MultiAuditSink,
)
from guard_plugin.classifiers import (
    BaseClassifier,
    Classifier,
    ClassifierOutput,
    ScriptedClassifier,
    ScriptedRule,
    load_classifier,
)
from guard_plugin.decision import Decision, PartOutcome, decide
from guard_plugin.errors import (
    ClassifierError,
    ClassifierTimeout,
    ClassifierUnavailable,
    ConfigError,
    GuardBlocked,
    GuardError,
    InjectionDetected,
    MediaError,
    ModelLoadError,
    PolicyError,
    QueueFullError,
    UnknownTenantError,
    VerdictParseError,
)
from guard_plugin.guard import Guard
from guard_plugin.policy import (
    CompiledPolicy,
    CustomCategory,
    CustomPolicy,
    Policy,
    PolicyStore,
    compile_policy,
    load_policy,
)
from guard_plugin.prompting import ImageData, ModelRequest, SafetyInput, build_request, neutralize
from guard_plugin.types import Action, Surface
from guard_plugin.verdict import Verdict, parse_verdict

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AuditEvent",
    "AuditSink",
    "BaseClassifier",
    "Classifier",
    "ClassifierError",
    "ClassifierOutput",
    "ClassifierTimeout",
    "ClassifierUnavailable",
    "CompiledPolicy",
    "ConfigError",
    "CustomCategory",
    "CustomPolicy",
    "Decision",
    "Guard",
    "GuardBlocked",
    "GuardError",
    "ImageData",
    "InjectionDetected",
    "JsonlAuditSink",
    "LoggingAuditSink",
    "MediaError",
    "MemoryAuditSink",
    "ModelLoadError",
    "ModelRequest",
    "MultiAuditSink",
    "PartOutcome",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "QueueFullError",
    "SafetyInput",
    "ScriptedClassifier",
    "ScriptedRule",
    "Surface",
    "UnknownTenantError",
    "Verdict",
    "VerdictParseError",
    "__version__",
    "build_request",
    "compile_policy",
    "decide",
    "load_classifier",
    "load_policy",
    "neutralize",
    "parse_verdict",
]
