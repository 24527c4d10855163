"""A policy compiled once: template kwargs, suppression set, action tables, request settings
and a fingerprint (part of every cache key)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from guard_plugin import taxonomy
from guard_plugin.policy.schema import Policy
from guard_plugin.types import Action, Surface, strictest

__all__ = ["CompiledPolicy", "compile_policy", "settings_text"]


def settings_text(template_kwargs: Mapping[str, Any], max_new_tokens: int) -> str:
    """A stable text of a request's settings: part of its cache key."""
    return f"{sorted(template_kwargs.items())!r}|{max_new_tokens}"


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy with everything a check needs precomputed."""

    policy: Policy
    fingerprint: str
    mode: str
    template_kwargs: Mapping[str, Any]
    suppressed: frozenset[str]
    _actions: Mapping[Surface, tuple[Action, Mapping[str, Action]]] = field(repr=False)
    _settings: Mapping[bool, tuple[Mapping[str, Any], int, str]] = field(
        repr=False, default_factory=dict
    )
    #: some refusal text depends on the user's language (a check then detects it)
    by_language: bool = False

    @property
    def id(self) -> str:
        return self.policy.id

    @property
    def version(self) -> str:
        return self.policy.version

    def is_suppressed(self, category: str) -> bool:
        return taxonomy.category_key(category) in self.suppressed

    def action_for(self, surface: Surface, categories: Iterable[str]) -> Action:
        """The action for unsafe content with these categories: the strictest override among
        them, the surface default for categories without one (and for no category at all)."""
        default, overrides = self._actions[surface]
        chosen = [overrides.get(taxonomy.category_key(c), default) for c in categories]
        return strictest(*chosen) if chosen else default

    def error_action(self) -> Action:
        return Action(self.policy.on_error)

    def threshold_for(self, surface: Surface) -> float | None:
        """The tenant's P(unsafe) threshold on ``surface``; ``None``: the model's own label."""
        return getattr(self.policy.thresholds, surface.value)

    @property
    def requires_score(self) -> bool:
        """Whether a check on a surface with a threshold needs a score (else: an error)."""
        return self.policy.thresholds.require_score

    def request_settings(self, think: bool) -> tuple[dict[str, Any], int, str]:
        """Template kwargs (a fresh dict), token budget, and a stable text of both."""
        kwargs, budget, text = self._settings[think]
        return dict(kwargs), budget, text


def compile_policy(policy: Policy) -> CompiledPolicy:
    """Validate-once, compile-once: template kwargs, suppression set, action tables."""
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]

    mode = policy.model.mode
    if mode == "auto":
        if policy.custom_policy is not None:
            mode = "custom_policy"
        elif policy.categories_off or policy.custom_categories:
            mode = "custom_taxonomy"
        else:
            mode = "builtin"

    suppressed = frozenset(
        taxonomy.category_key(taxonomy.canonical_name(c)) for c in policy.categories_off
    )
    kwargs: dict[str, Any] = {
        "request_categories": "/categories"
        if policy.model.request_categories
        else "/no_categories",
    }
    if mode == "custom_policy":
        assert policy.custom_policy is not None
        kwargs["custom_policy"] = policy.custom_policy.render()
    elif mode == "custom_taxonomy":
        entries: list[tuple[str, str | None]] = [
            (c.name, c.description)
            for c in taxonomy.CATEGORIES
            if taxonomy.category_key(c.name) not in suppressed
        ]
        entries += [(c.name, c.description) for c in policy.custom_categories]
        kwargs["custom_taxonomy"] = taxonomy.render_taxonomy(entries)

    actions: dict[Surface, tuple[Action, Mapping[str, Action]]] = {}
    for s in Surface:
        sa = policy.actions.for_surface(s)
        overrides = {
            taxonomy.category_key(taxonomy.canonical_name(k)): v
            for k, v in policy.actions.categories.items()
        }
        overrides.update(
            {taxonomy.category_key(taxonomy.canonical_name(k)): v for k, v in sa.categories.items()}
        )
        actions[s] = (sa.default, overrides)

    settings: dict[bool, tuple[Mapping[str, Any], int, str]] = {}
    for think in (False, True):
        kw = {**kwargs, "enable_thinking": think}
        budget = policy.model.reasoning_max_new_tokens if think else policy.model.max_new_tokens
        settings[think] = (kw, budget, settings_text(kw, budget))
    return CompiledPolicy(
        policy=policy,
        fingerprint=fingerprint,
        mode=mode,
        template_kwargs=kwargs,
        suppressed=suppressed,
        _actions=actions,
        _settings=settings,
        by_language=policy.messages.by_language,
    )
