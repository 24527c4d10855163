"""Moved to :mod:`guard_plugin.testing.scripted`; this path keeps old imports working."""

from guard_plugin.testing.scripted import DEMO_RULES, ScriptedClassifier, ScriptedRule

__all__ = ["DEMO_RULES", "ScriptedClassifier", "ScriptedRule"]
