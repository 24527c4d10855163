"""One-line classifier configuration and the process-wide registry of shared instances.

Specs::

    scripted                                  the scripted test double (NOT a safety model)
    transformers:/path/to/model               local model folder (needs the `local` extra)
    transformers:nvidia/Nemotron-3.5-Content-Safety?adapter=/lora&device=cuda:0&dtype=bfloat16
    openai://host:8000/v1?model=NAME          any OpenAI-compatible server over http
    openai+https://host/v1?model=NAME&api_key_env=VAR
    vllm://h1:8000/v1,h2:8000/v1?model=NAME   several replicas: round-robin with fail-over
    sglang://host:30000/v1                    folds the response into the user turn
    nim+https://host/v1?model=NAME            NVIDIA NIM

Backends register a scheme with :func:`register_scheme`; :func:`load_classifier` returns the
same instance for the same normalised spec, so every adapter in a process shares one model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from guard_plugin.classifiers.base import Classifier
from guard_plugin.errors import ConfigError

__all__ = ["clear_registry", "load_classifier", "register_scheme"]

Factory = Callable[[str, dict[str, Any]], tuple[str, Callable[[], Classifier]]]
"""``(rest_of_spec, options) -> (normalised key, constructor)``."""

_SCHEMES: dict[str, Factory] = {}
_INSTANCES: dict[str, Classifier] = {}
_LOCK = threading.Lock()


def register_scheme(scheme: str, factory: Factory) -> None:
    """Make ``scheme:...`` specs load through ``factory``."""
    _SCHEMES[scheme] = factory


def _scripted(rest: str, options: dict[str, Any]) -> tuple[str, Callable[[], Classifier]]:
    from guard_plugin.classifiers.scripted import ScriptedClassifier

    if rest not in ("", "demo"):
        raise ConfigError(f"unknown scripted preset '{rest}'; use 'scripted' or 'scripted:demo'")
    return "scripted:demo", lambda: ScriptedClassifier(**options)


register_scheme("scripted", _scripted)


def _split(spec: str) -> tuple[str, str]:
    spec = spec.strip()
    if "://" in spec:
        scheme, _, rest = spec.partition("://")
        return scheme.lower(), "//" + rest
    scheme, _, rest = spec.partition(":")
    return scheme.lower(), rest


def load_classifier(spec: str, *, shared: bool = True, **options: Any) -> Classifier:
    """A classifier from a one-line spec. With ``shared`` (default) the same spec returns the
    same instance process-wide; ``options`` go to the backend's constructor."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("a classifier spec is a non-empty string such as 'scripted'")
    scheme, rest = _split(spec)
    if scheme not in _SCHEMES:
        _load_builtin_schemes()
    factory = _SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_SCHEMES))
        raise ConfigError(f"unknown classifier scheme '{scheme}' in '{spec}'; known: {known}")
    key, make = factory(rest, dict(options))
    if options:
        key += "|" + repr(sorted(options.items()))
    if not shared:
        return make()
    with _LOCK:
        inst = _INSTANCES.get(key)
        if inst is None:
            inst = make()
            _INSTANCES[key] = inst
        return inst


def clear_registry() -> None:
    """Close and forget every shared instance."""
    with _LOCK:
        items = list(_INSTANCES.values())
        _INSTANCES.clear()
    for inst in items:
        inst.close()


def _load_builtin_schemes() -> None:
    # Backends register themselves on import; importing is cheap and needs no extra installed.
    import importlib

    for mod in ("guard_plugin.classifiers.transformers", "guard_plugin.classifiers.openai_compat"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise
