"""Tenant policies: validated once when loaded, compiled once, looked up per check.

A policy file is YAML with the fields of :class:`Policy`; unknown keys are errors. A folder of
policy files is a :class:`PolicyStore`: one file per tenant (the file name is the tenant id),
plus ``default.yaml`` for tenants without a file of their own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from guard_plugin import taxonomy
from guard_plugin.errors import PolicyError, UnknownTenantError
from guard_plugin.types import Action, Surface, strictest

__all__ = [
    "Actions",
    "AuditOptions",
    "CompiledPolicy",
    "CustomCategory",
    "CustomPolicy",
    "EscalationOptions",
    "MediaLimits",
    "Messages",
    "ModelOptions",
    "Policy",
    "PolicyStore",
    "SurfaceActions",
    "Thresholds",
    "builtin_policies",
    "compile_policy",
    "load_policy",
]

ErrorAction = Literal["block", "allow", "escalate"]
ReasoningMode = Literal["off", "on", "audit"]

CUSTOM_POLICY_PREAMBLE = (
    "Evaluate the user prompt for compliance with the given policy "
    "ignoring any previous policies you know about."
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelOptions(_Model):
    """How the model is asked.

    ``mode``: ``auto`` picks ``custom_policy`` when a custom policy is set, ``custom_taxonomy``
    when categories are switched off or added, else ``builtin``. ``builtin`` with categories
    switched off keeps the model's own taxonomy and applies the suppression only to its output.
    """

    mode: Literal["auto", "builtin", "custom_taxonomy", "custom_policy"] = "auto"
    request_categories: bool = True
    max_new_tokens: int = Field(64, ge=8, le=4096)
    reasoning_max_new_tokens: int = Field(1024, ge=64, le=16384)


class SurfaceActions(_Model):
    """The action for unsafe content on one surface, with per-category overrides.

    In YAML a bare action (``input: block``) is shorthand for ``{default: block}``.
    """

    default: Action = Action.BLOCK
    categories: dict[str, Action] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, Action)):
            return {"default": value}
        return value


class Actions(_Model):
    """Actions per surface. ``categories`` applies to every surface unless a surface overrides."""

    input: SurfaceActions = SurfaceActions()
    tool: SurfaceActions = SurfaceActions()
    response: SurfaceActions = SurfaceActions()
    categories: dict[str, Action] = Field(default_factory=dict)

    def for_surface(self, surface: Surface) -> SurfaceActions:
        return getattr(self, surface.value)  # type: ignore[no-any-return]


class Thresholds(_Model):
    """P(unsafe) at or above which a part counts as unsafe, per surface.

    ``None`` (the default) keeps the model's own label (its argmax). A threshold acts only
    where the backend reports a score; elsewhere the model's label decides. In YAML a bare
    number (``thresholds: 0.3``) applies to every surface.
    """

    input: float | None = Field(None, gt=0, lt=1)
    tool: float | None = Field(None, gt=0, lt=1)
    response: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"input": value, "tool": value, "response": value}
        return value


class CustomCategory(_Model):
    name: str = Field(min_length=1)
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("a custom category needs a non-empty name")
        return v


class CustomPolicy(_Model):
    """A policy that replaces the model's built-in instructions and taxonomy.

    Either structured (``name``, ``description``, ``disallowed``, ``allowed``), rendered into
    the shape the model was trained on, or ``text`` passed to the model verbatim.
    """

    name: str | None = None
    description: str | None = None
    disallowed: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    text: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> CustomPolicy:
        structured = bool(self.name or self.description or self.disallowed or self.allowed)
        if self.text is not None and structured:
            raise ValueError("give either 'text' or the structured fields, not both")
        if self.text is not None and not self.text.strip():
            raise ValueError("'text' is empty: write the policy or remove custom_policy")
        if self.text is None:
            if not structured:
                raise ValueError(
                    "custom_policy is empty: give 'text', or 'name' with 'disallowed' behaviours"
                )
            if not self.disallowed:
                raise ValueError("a structured custom_policy needs at least one 'disallowed' item")
        return self

    def render(self) -> str:
        if self.text is not None:
            return self.text.strip()
        lines = [CUSTOM_POLICY_PREAMBLE, "### Policy"]
        if self.name:
            lines.append(f"Name: {self.name.strip()}")
        if self.description:
            lines.append(f"Description: {self.description.strip()}")
        lines.append("Disallowed Behaviors:")
        lines += [f"- {item.strip()}" for item in self.disallowed]
        if self.allowed:
            lines.append("Allowed Behaviors:")
            lines += [f"- {item.strip()}" for item in self.allowed]
        return "\n".join(lines)


class Messages(_Model):
    """Texts the adapters put in place of content."""

    refusal: str = "I'm sorry, I can't help with that."
    tool_refusal: str = (
        "The result of this tool call was withheld by the content safety policy. "
        "Do not retry it; tell the user it could not be used."
    )
    redaction: str = "[withheld by content safety policy]"
    rewrite_note: str = (
        "[The user's message was withheld by the content safety policy. "
        "Reply with a short, polite refusal and offer help with something else.]"
    )
    review_pending: str = "This answer is being held for review by a person."


class MediaLimits(_Model):
    max_image_bytes: int = Field(20 * 2**20, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    image_size: int = Field(896, ge=64, le=4096)
    max_document_bytes: int = Field(50 * 2**20, gt=0)
    max_pdf_pages: int = Field(20, gt=0)
    #: content blocks, artifact entries and nested blocks looked at per message
    max_blocks: int = Field(256, gt=0)
    #: images and PDF pages classified per message (each is one model input)
    max_images: int = Field(64, gt=0)
    max_text_chars: int = Field(200_000, gt=0)
    text_window_chars: int = Field(6000, ge=200)
    allow_local_files: bool = False
    allow_url_fetch: bool = False
    fetch_timeout_s: float = Field(5.0, gt=0)
    unverifiable: ErrorAction = "block"


class AuditOptions(_Model):
    include_content: bool = False


class EscalationOptions(_Model):
    """What adapters without a human-review mechanism do with ``escalate``."""

    fallback: Literal["block", "allow"] = "block"


class Policy(_Model):
    """One tenant's policy. Frozen; unknown keys are rejected."""

    id: str = "default"
    version: str = "1"
    description: str = ""
    model: ModelOptions = ModelOptions()
    categories_off: tuple[str, ...] = ()
    custom_categories: tuple[CustomCategory, ...] = ()
    custom_policy: CustomPolicy | None = None
    reasoning: ReasoningMode = "off"
    actions: Actions = Actions()
    on_error: ErrorAction = "block"
    thresholds: Thresholds = Thresholds()
    messages: Messages = Messages()
    media: MediaLimits = MediaLimits()
    time_budget_ms: int = Field(10_000, gt=0)
    audit: AuditOptions = AuditOptions()
    escalation: EscalationOptions = EscalationOptions()

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) else v

    @field_validator("reasoning", mode="before")
    @classmethod
    def _yaml_booleans(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `off` / `on` as a boolean.
        if v is False:
            return "off"
        if v is True:
            return "on"
        return v

    @model_validator(mode="after")
    def _check_categories(self) -> Policy:
        custom = {taxonomy.category_key(c.name) for c in self.custom_categories}
        if len(custom) != len(self.custom_categories):
            raise ValueError("custom_categories: two categories have the same name")
        for c in self.custom_categories:
            if taxonomy.lookup(c.name) is not None:
                raise ValueError(
                    f"custom_categories: '{c.name}' is a built-in category; choose another name"
                )
        if self.custom_policy is not None:
            return self  # the policy defines its own category names
        known = ", ".join(c.name for c in taxonomy.CATEGORIES)

        def check(name: str, where: str) -> None:
            if taxonomy.lookup(name) is None and taxonomy.category_key(name) not in custom:
                raise ValueError(
                    f"{where}: unknown category '{name}'. Known categories: {known}; "
                    "or declare it under custom_categories"
                )

        for name in self.categories_off:
            check(name, "categories_off")
        for name in self.actions.categories:
            check(name, "actions.categories")
        for s in Surface:
            for name in self.actions.for_surface(s).categories:
                check(name, f"actions.{s.value}.categories")
        if self.model.mode == "custom_policy":
            raise ValueError("model.mode: custom_policy is selected but no custom_policy is given")
        return self


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
        return getattr(self.policy.thresholds, surface.value)  # type: ignore[no-any-return]

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
        settings[think] = (kw, budget, f"{sorted(kw.items())!r}|{budget}")
    return CompiledPolicy(
        policy=policy,
        fingerprint=fingerprint,
        mode=mode,
        template_kwargs=kwargs,
        suppressed=suppressed,
        _actions=actions,
        _settings=settings,
    )


# ---------------------------------------------------------------------------------------------
# Loading


def _problem(error: Any) -> tuple[str | None, str]:
    """One pydantic error as (field, message-with-the-fix)."""
    loc = ".".join(str(p) for p in error["loc"]) or None
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = error["loc"][:-1]
        model: type[BaseModel] = Policy
        for part in parent:
            sub = model.model_fields.get(str(part))
            ann = getattr(sub, "annotation", None) if sub else None
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                model = ann
        allowed = ", ".join(model.model_fields)
        return loc, f"unknown key; allowed keys here are: {allowed}"
    if kind in ("enum", "literal_error"):
        return loc, str(error["msg"])
    msg = str(error["msg"]).removeprefix("Value error, ")
    # Policy-level checks start their message with the field they are about.
    head, sep, rest = msg.partition(": ")
    if loc is None and sep and head.replace(".", "").replace("_", "").isalnum():
        loc, msg = head, rest
    return loc, msg


def _format_validation_error(err: ValidationError, source: str) -> PolicyError:
    problems = [_problem(e) for e in err.errors()]
    if len(problems) == 1:
        loc, msg = problems[0]
        return PolicyError(msg, source=source, field=loc, problems=problems)
    listed = "\n".join("  - " + (f"field '{loc}': " if loc else "") + msg for loc, msg in problems)
    return PolicyError(f"{len(problems)} problems:\n{listed}", source=source, problems=problems)


def policy_from_mapping(
    data: Any, *, source: str = "<policy>", default_id: str | None = None
) -> Policy:
    """Build a :class:`Policy` from parsed YAML/JSON, with errors that name source and field.
    Every problem is reported, not only the first."""
    if data is None:
        raise PolicyError(
            "the policy is empty; a policy file holds at least its actions "
            "(see guard_plugin/policies/default.yaml)",
            source=source,
        )
    if not isinstance(data, Mapping):
        raise PolicyError(
            f"a policy must be a mapping of fields, not {type(data).__name__}", source=source
        )
    data = dict(data)
    if default_id is not None:
        file_id = data.get("id")
        if file_id is not None and str(file_id) != default_id:
            raise PolicyError(
                f"id '{file_id}' differs from the file name '{default_id}'; "
                "rename the file or remove the id",
                source=source,
                field="id",
            )
        data.setdefault("id", default_id)
    try:
        return Policy.model_validate(data)
    except ValidationError as err:
        raise _format_validation_error(err, source) from None


def load_policy(path: str | Path) -> Policy:
    """Load one policy file. Raises :class:`PolicyError` naming the file, the field and the fix."""
    p = Path(path)
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(f"cannot read the file: {err}", source=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise PolicyError(f"invalid YAML{where}: {problem}", source=source) from None
    stem = p.stem
    return policy_from_mapping(data, source=source, default_id=stem)


def builtin_policies() -> Path:
    """The folder of example policies shipped with the package (``default``, ``devops``,
    ``healthcare``, ``kids_education``), wherever it is installed."""
    from importlib import resources

    return Path(str(resources.files("guard_plugin") / "policies"))


class PolicyStore:
    """Compiled policies by tenant.

    ``unknown_tenant``: ``"default"`` serves the default policy to tenants without one of their
    own; ``"error"`` refuses them (the guard then blocks and audits an ``unknown_tenant`` error).
    """

    def __init__(
        self,
        policies: Mapping[str, Policy] | Iterable[Policy] = (),
        *,
        default: Policy | None = None,
        unknown_tenant: Literal["default", "error"] = "default",
    ) -> None:
        if unknown_tenant not in ("default", "error"):
            raise PolicyError("unknown_tenant must be 'default' or 'error'", field="unknown_tenant")
        items = policies.items() if isinstance(policies, Mapping) else ((p.id, p) for p in policies)
        self._compiled: dict[str, CompiledPolicy] = {t: compile_policy(p) for t, p in items}
        if default is None:
            default = self._compiled["default"].policy if "default" in self._compiled else Policy()
        self._default = compile_policy(default)
        self.unknown_tenant = unknown_tenant

    @classmethod
    def from_dir(
        cls, path: str | Path, *, unknown_tenant: Literal["default", "error"] = "default"
    ) -> PolicyStore:
        """Load every ``*.yaml`` / ``*.yml`` in a folder; ``default.yaml`` is the default.
        ``"builtin"`` is the example folder shipped with the package.

        Every file is read before anything is refused: the error lists each bad file with
        each of its problems."""
        folder = builtin_policies() if str(path) == "builtin" else Path(path)
        if not folder.is_dir():
            raise PolicyError("not a folder of policy files", source=str(folder))
        files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        policies: dict[str, Policy] = {}
        errors: list[PolicyError] = []
        for f in files:
            if f.stem in policies:
                errors.append(PolicyError(f"two files for tenant '{f.stem}'", source=str(f)))
                continue
            try:
                policies[f.stem] = load_policy(f)
            except PolicyError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            listed = "\n".join(str(e) for e in errors)
            raise PolicyError(
                f"{len(errors)} policy files are invalid:\n{listed}",
                source=str(folder),
                problems=[p for e in errors for p in e.problems],
            )
        return cls(policies, unknown_tenant=unknown_tenant)

    @property
    def default(self) -> CompiledPolicy:
        return self._default

    def tenants(self) -> list[str]:
        return sorted(self._compiled)

    def get(self, tenant: str | None = None) -> CompiledPolicy:
        """The compiled policy for a tenant (``None``: the default)."""
        if tenant is None:
            return self._default
        found = self._compiled.get(tenant)
        if found is not None:
            return found
        if self.unknown_tenant == "default":
            return self._default
        raise UnknownTenantError(
            f"no policy for tenant '{tenant}'; "
            f"known tenants: {', '.join(self.tenants()) or 'none'}. "
            "Add a policy file for it or create the store with unknown_tenant='default'"
        )
