"""Classifier backends behind one seam (see :mod:`guard_plugin.classifiers.base`)."""

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
from guard_plugin.classifiers.scripted import DEMO_RULES, ScriptedClassifier, ScriptedRule

__all__ = [
    "DEMO_RULES",
    "ENV_CLASSIFIER",
    "BaseClassifier",
    "Classifier",
    "ClassifierOutput",
    "ClassifierResult",
    "ScriptedClassifier",
    "ScriptedRule",
    "clear_registry",
    "load_classifier",
    "register_scheme",
    "spec_from_env",
]
