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

A backend module lists its schemes in a ``SCHEMES`` table of factories; the built-in ones are
imported by name when a spec first asks for their scheme, and :func:`register_scheme` adds
others. :func:`load_classifier` returns the
same instance for the same normalised spec, so every adapter in a process shares one model.
A spec imports only its own backend: a served model needs neither torch nor transformers.

Deployables (the NeMo configs, the LangGraph app, the CLI) read the spec from
``GUARD_PLUGIN_CLASSIFIER`` through :func:`spec_from_env`, which refuses to guess: without it
they stop with a :class:`ConfigError` saying how to set it, never falling back to the
scripted stand-in.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any

from guard_plugin.classifiers.base import Classifier, Factory
from guard_plugin.errors import ConfigError

__all__ = [
    "ENV_CLASSIFIER",
    "clear_registry",
    "is_stand_in",
    "load_classifier",
    "register_scheme",
    "release_classifier",
    "retain_classifier",
    "spec_from_env",
]

#: The environment variable deployables read the classifier spec from.
ENV_CLASSIFIER = "GUARD_PLUGIN_CLASSIFIER"

# Which module provides each built-in scheme (in its SCHEMES table), and the extra it needs.
_BUILTIN: dict[str, tuple[str, str]] = {
    "scripted": ("guard_plugin.testing.scripted", ""),
    "transformers": ("guard_plugin.classifiers.transformers", "local"),
    "hf": ("guard_plugin.classifiers.transformers", "local"),
    **{
        scheme: ("guard_plugin.classifiers.openai_compat", "")
        for base in ("openai", "vllm", "sglang", "nim")
        for scheme in (base, f"{base}+https")
    },
}

_SCHEMES: dict[str, Factory] = {}
_INSTANCES: dict[str, Classifier] = {}
_USERS: dict[str, int] = {}  # Guards that hold each shared instance
_LOCK = threading.Lock()


def register_scheme(scheme: str, factory: Factory) -> None:
    """Make ``scheme:...`` specs load through ``factory``."""
    _SCHEMES[scheme] = factory


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
    if scheme not in _SCHEMES and scheme in _BUILTIN:
        _load_builtin(scheme)
    factory = _SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(sorted({*_SCHEMES, *_BUILTIN}))
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


def retain_classifier(clf: Classifier) -> None:
    """Count one more holder of a shared instance (a :class:`~guard_plugin.Guard`)."""
    with _LOCK:
        for key, inst in _INSTANCES.items():
            if inst is clf:
                _USERS[key] = _USERS.get(key, 0) + 1


def release_classifier(clf: Classifier) -> bool:
    """One holder of ``clf`` is done with it. A shared instance is closed and forgotten when
    its last holder lets go (the next load of its spec builds a new one); an instance that is
    not shared is the caller's to close. Returns True when ``clf`` was closed here."""
    with _LOCK:
        key = next((k for k, inst in _INSTANCES.items() if inst is clf), None)
        if key is None:
            return False
        left = _USERS.get(key, 1) - 1
        if left > 0:
            _USERS[key] = left
            return False
        _INSTANCES.pop(key, None)
        _USERS.pop(key, None)
    clf.close()
    return True


def clear_registry() -> None:
    """Close and forget every shared instance."""
    with _LOCK:
        items = list(_INSTANCES.values())
        _INSTANCES.clear()
        _USERS.clear()
    for inst in items:
        inst.close()


def is_stand_in(spec: str) -> bool:
    """Whether ``spec`` names the scripted test double (a keyword matcher, not a safety model),
    which every deployable says out loud when it runs on it."""
    return _split(spec)[0] == "scripted"


def spec_from_env(spec: str | None = None, *, where: str = "guard_plugin") -> str:
    """``spec`` if given, else ``$GUARD_PLUGIN_CLASSIFIER``; neither is a :class:`ConfigError`.

    Deployables call this instead of defaulting: a deployment that forgot one variable must
    not run on the scripted stand-in, which is a keyword matcher and not a safety model.
    """
    value = (spec or os.environ.get(ENV_CLASSIFIER) or "").strip()
    if not value:
        raise ConfigError(
            f"{where} has no classifier: set {ENV_CLASSIFIER} to the Nemotron Content Safety "
            "model, served (vllm://HOST:8000/v1, sglang://HOST:30000/v1, nim+https://HOST/v1) "
            "or local (transformers:/path/to/model or transformers:nvidia/"
            "Nemotron-3.5-Content-Safety); see docs/serving.md. For the scripted stand-in "
            f"(a test double, not a safety model) set {ENV_CLASSIFIER}=scripted."
        )
    return value


def _load_builtin(scheme: str) -> None:
    """Import the module that provides ``scheme`` (and only that one) and take its table."""
    module, extra = _BUILTIN[scheme]
    try:
        schemes: dict[str, Factory] = importlib.import_module(module).SCHEMES
    except ImportError as err:
        if not extra:
            raise
        raise ConfigError(
            f"'{scheme}:' specs run the model in this process and need the '{extra}' extra "
            f"({err.name or err} is missing): pip install 'guard-plugin[{extra}]' "
            "(on a machine without an NVIDIA GPU, install the CPU build of torch first: "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu). "
            "A served model needs no extra: vllm://, sglang://, nim://, openai://"
        ) from None
    for name, factory in schemes.items():
        _SCHEMES.setdefault(name, factory)
