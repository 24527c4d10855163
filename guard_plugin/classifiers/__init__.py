"""Classifier backends behind one seam (see :mod:`guard_plugin.classifiers.base`)."""

from guard_plugin.classifiers.base import (
    BaseClassifier,
    Classifier,
    ClassifierOutput,
    ClassifierResult,
)
from guard_plugin.classifiers.registry import clear_registry, load_classifier, register_scheme
from guard_plugin.classifiers.scripted import DEMO_RULES, ScriptedClassifier, ScriptedRule

__all__ = [
    "DEMO_RULES",
    "BaseClassifier",
    "Classifier",
    "ClassifierOutput",
    "ClassifierResult",
    "ScriptedClassifier",
    "ScriptedRule",
    "clear_registry",
    "load_classifier",
    "register_scheme",
]
