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

from guard_plugin.errors import ConfigError
from guard_plugin.nemo.actions import (
    ACTIONS,
    NEMO_OUTPUT_ACTION,
    configure,
    ensure_configured,
    get_guard,
    nemo_output_action,
    tenant_var,
)
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
    "use_endpoint",
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


#: Environment variables of :func:`use_endpoint`: the base URL of ``guard-plugin serve``, and
#: the variable that holds the tenant's API key for it.
ENDPOINT_ENV = "GUARD_PLUGIN_ENDPOINT"
ENDPOINT_KEY_ENV = "GUARD_PLUGIN_ENDPOINT_KEY"


def use_endpoint(
    config: Any,
    base_url: str | None = None,
    *,
    api_key_env: str = ENDPOINT_KEY_ENV,
    served_model: str = "guard-plugin",
) -> Any:
    """``config`` (a ``RailsConfig``) with its ``guard_plugin``-engine models pointed at a
    ``guard-plugin serve`` endpoint over HTTP, which is how NeMo's IORails engine
    (``Guardrails(config)``) reaches the shared classifier: it runs only NeMo's own rails and
    calls models only over HTTP, and it runs no ``config.py``. ``base_url`` defaults to
    ``$GUARD_PLUGIN_ENDPOINT``; the tenant's key is read from ``$GUARD_PLUGIN_ENDPOINT_KEY``
    when a request is made. The main LLM follows :data:`MAIN_MODEL_ENV` as under LLMRails."""
    import os

    url = base_url or os.environ.get(ENDPOINT_ENV, "").strip()
    if not url:
        raise ConfigError(
            f"use_endpoint needs the endpoint's base URL: pass it, or set {ENDPOINT_ENV} "
            "(e.g. http://127.0.0.1:8088/v1, where guard-plugin serve listens)"
        )
    for model in getattr(config, "models", None) or []:
        if getattr(model, "engine", None) == ENGINE:
            model.engine = "openai"
            model.model = served_model
            model.parameters = {"base_url": url}
            model.api_key_env_var = api_key_env
    main_model_from_env(config)
    return config


def init(app: Any) -> None:
    """NeMo's config.py hook: register the actions and the ``guard_plugin`` engine, and point
    the main LLM where :data:`MAIN_MODEL_ENV` says. Where ``$GUARD_PLUGIN_ENDPOINT`` is set, a
    config whose content-safety model uses the ``guard_plugin`` engine (``nemo_flows``) calls
    that endpoint over HTTP instead (:func:`use_endpoint`), as IORails does: then no
    classifier is loaded in this process.

    Raises :class:`~guard_plugin.ConfigError` when the config needs a guard in this process
    and neither :func:`configure` was called nor ``GUARD_PLUGIN_CLASSIFIER`` is set: the rails
    never fall back to the scripted stand-in."""
    import os

    register()
    models = getattr(app.config, "models", None) or []
    served = os.environ.get(ENDPOINT_ENV, "").strip() and any(
        getattr(m, "engine", None) == ENGINE for m in models
    )
    if served:
        use_endpoint(app.config)  # also applies MAIN_MODEL_ENV
    else:
        ensure_configured()
        main_model_from_env(app.config)
    for name, fn in ACTIONS.items():
        app.register_action(fn, name=name)
    if _runs_nemo_output_flow(app.config):
        # NeMo's own output flow checks the answer and returns the reasoning trace unchecked
        wrapped = nemo_output_action()
        if wrapped is not None:
            app.register_action(wrapped, name=NEMO_OUTPUT_ACTION)
    if _colang2(app.config) and hasattr(app, "stream_async"):
        app.stream_async = _refuse_stream  # streamed Colang 2 answers are never checked


def _runs_nemo_output_flow(config: Any) -> bool:
    rails = getattr(config, "rails", None)
    flows = getattr(getattr(rails, "output", None), "flows", None) or []
    return any(str(f).startswith("content safety check output") for f in flows)


def _colang2(config: Any) -> bool:
    return str(getattr(config, "colang_version", "1.0")).startswith("2")


def _refuse_stream(*args: Any, **kwargs: Any) -> Any:
    """``stream_async`` of a Colang 2 app: NeMo Guardrails (0.24) runs streaming output rails
    only for Colang 1 flows, so a Colang 2 answer would stream before its check."""
    raise ConfigError(
        "stream_async() is refused on a Colang 2 config: NeMo Guardrails runs streaming "
        "output rails only for Colang 1 flows, so the answer would be shown before its check. "
        "Use generate_async(), or the colang1 or nemo_flows folder, which check a streamed "
        "answer as it streams (rails.output.streaming)."
    )
