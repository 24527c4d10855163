"""The public surface is deliberate: this test pins it."""

from __future__ import annotations

import subprocess
import sys

import guard_plugin

PUBLIC = {
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
}


def test_all_is_pinned() -> None:
    assert set(guard_plugin.__all__) == PUBLIC
    for name in guard_plugin.__all__:
        assert hasattr(guard_plugin, name)


def test_core_imports_no_framework_and_no_torch() -> None:
    code = (
        "import sys, guard_plugin, guard_plugin.media, guard_plugin.cli;"
        "mods=('torch','transformers','peft','langchain','langchain_core','langgraph','nemoguardrails');"
        "bad=[m for m in mods if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_scripted_classifier_says_what_it_is() -> None:
    assert "NOT a safety model" in repr(guard_plugin.ScriptedClassifier())
    assert "NOT a safety model" in (guard_plugin.ScriptedClassifier.__doc__ or "") + (
        sys.modules["guard_plugin.classifiers.scripted"].__doc__ or ""
    )
