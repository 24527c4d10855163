"""NeMo Guardrails integration: rail actions, an engine provider, and registration glue.

Ready configs live in ``integrations/nemoguardrails/`` (Colang 1 and Colang 2). To add the
rails to your own config, put this in its ``config.py``::

    from guard_plugin.nemo import init  # noqa: F401  (NeMo calls init(app))

and use the flows ``guard plugin check input`` / ``output`` / ``tool input``.
"""

from __future__ import annotations

from typing import Any

try:
    import nemoguardrails  # noqa: F401
except ImportError as _err:  # pragma: no cover
    raise ImportError(
        "guard_plugin.nemo needs NeMo Guardrails: pip install 'guard-plugin[nemo]'"
    ) from _err

from guard_plugin.nemo.actions import ACTIONS, configure, ensure_configured, get_guard, tenant_var
from guard_plugin.nemo.provider import ENGINE, GuardPluginModel, register

__all__ = [
    "ACTIONS",
    "ENGINE",
    "GuardPluginModel",
    "configure",
    "ensure_configured",
    "get_guard",
    "init",
    "main_model_from_env",
    "register",
    "tenant_var",
]


#: Environment variables that point the config's main LLM at a server of the user's (read by
#: :func:`init` before NeMo builds its models): the model's name, the base URL of an
#: OpenAI-compatible server, and the engine. NeMo 0.24 reads no ``OPENAI_BASE_URL`` of its
#: own, so that variable is honoured too where ``MAIN_BASE_URL`` is not set.
MAIN_MODEL_ENV = ("MAIN_MODEL", "MAIN_BASE_URL", "MAIN_ENGINE")


def main_model_from_env(config: Any) -> None:
    """Point the config's ``type: main`` model at what :data:`MAIN_MODEL_ENV` names, so a
    shipped folder runs unmodified against any OpenAI-compatible server."""
    import os

    name = os.environ.get("MAIN_MODEL", "").strip()
    engine = os.environ.get("MAIN_ENGINE", "").strip()
    base_url = (os.environ.get("MAIN_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or "").strip()
    for model in getattr(config, "models", None) or []:
        if getattr(model, "type", None) != "main":
            continue
        if name:
            model.model = name
        if engine:
            model.engine = engine
        if base_url and (model.engine or "openai") == "openai":
            model.parameters = {**(model.parameters or {}), "base_url": base_url}


def init(app: Any) -> None:
    """NeMo's config.py hook: register the actions and the ``guard_plugin`` engine, and point
    the main LLM where :data:`MAIN_MODEL_ENV` says.

    Raises :class:`~guard_plugin.ConfigError` when neither :func:`configure` was called nor
    ``GUARD_PLUGIN_CLASSIFIER`` is set: the rails never fall back to the scripted stand-in."""
    register()
    ensure_configured()
    main_model_from_env(app.config)
    for name, fn in ACTIONS.items():
        app.register_action(fn, name=name)
