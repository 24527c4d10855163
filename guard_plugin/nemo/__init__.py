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
    "register",
    "tenant_var",
]


def init(app: Any) -> None:
    """NeMo's config.py hook: register the actions and the ``guard_plugin`` engine.

    Raises :class:`~guard_plugin.ConfigError` when neither :func:`configure` was called nor
    ``GUARD_PLUGIN_CLASSIFIER`` is set: the rails never fall back to the scripted stand-in."""
    register()
    ensure_configured()
    for name, fn in ACTIONS.items():
        app.register_action(fn, name=name)
