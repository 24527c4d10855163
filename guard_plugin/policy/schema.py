"""The policy schema: what a tenant's policy file may say, validated once when loaded
(pydantic, frozen, unknown keys refused)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guard_plugin import taxonomy
from guard_plugin.types import Action, Surface

__all__ = [
    "CUSTOM_POLICY_PREAMBLE",
    "Actions",
    "AuditOptions",
    "CustomCategory",
    "CustomPolicy",
    "EscalationOptions",
    "MediaLimits",
    "Messages",
    "ModelOptions",
    "Policy",
    "Streaming",
    "SurfaceActions",
    "Texts",
    "Thresholds",
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
        if isinstance(value, str) and value not in {a.value for a in Action}:
            raise ValueError(f"'{value}' is not an action; use allow, rewrite, escalate or block")
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
        return getattr(self, surface.value)


class Thresholds(_Model):
    """P(unsafe) at or above which a part counts as unsafe, per surface.

    ``None`` (the default) keeps the model's own label (its argmax). A threshold acts only
    where the backend reports a score; elsewhere the model's label decides, and the decision
    and its audit event say that the threshold could not apply (``threshold_unapplied``).
    ``require_score: true`` makes a check without a score an error instead (through
    ``on_error``: block by default). In YAML a bare number (``thresholds: 0.3``) applies to
    every surface.
    """

    input: float | None = Field(None, gt=0, lt=1)
    tool: float | None = Field(None, gt=0, lt=1)
    response: float | None = Field(None, gt=0, lt=1)
    require_score: bool = False

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


_LANG = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?")


class Messages(_Model):
    """Texts the adapters put in place of content. ``refusal`` and ``failure`` may be a
    mapping by language code (``{default: ..., de: ..., ja: ...}``): the user turn's language
    picks one (``guard-plugin[multilingual]``), else ``default``. ``failure`` answers a check
    that reached no verdict (the classifier down or too slow, media that cannot be read),
    where ``refusal`` answers a policy's block; without it, ``refusal`` answers both."""

    refusal: str | dict[str, str] = "I'm sorry, I can't help with that."
    failure: str | dict[str, str] | None = None
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
    review_pending_input: str = "Your message is being held for review by a person."
    review_pending_tool: str = "This tool result is being held for review by a person."

    @field_validator("refusal", "failure")
    @classmethod
    def _by_language(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if "default" not in value:
            raise ValueError("a mapping by language needs a 'default' text")
        for code in value:
            if code != "default" and not _LANG.fullmatch(str(code)):
                raise ValueError(f"'{code}' is not a language code (en, de, ja, pt-BR, ...)")
        return {str(k).lower(): str(v) for k, v in value.items()}

    @property
    def by_language(self) -> bool:
        """Whether any text depends on the user's language."""
        return isinstance(self.refusal, dict) or isinstance(self.failure, dict)

    def resolved(self, language: str | None, *, failed: bool = False) -> Texts:
        """Every text as a string for ``language`` (else the default); with ``failed``, the
        refusal is the failure text."""

        def pick(text: str | dict[str, str] | None) -> str | None:
            if not isinstance(text, dict):
                return text
            lang = (language or "").lower()
            return text.get(lang) or text.get(lang.split("-")[0]) or text["default"]

        refusal = pick(self.refusal) or ""
        failure = pick(self.failure)
        return Texts(
            refusal=failure if failed and failure is not None else refusal,
            tool_refusal=self.tool_refusal,
            redaction=self.redaction,
            rewrite_note=self.rewrite_note,
            review_pending=self.review_pending,
            review_pending_input=self.review_pending_input,
            review_pending_tool=self.review_pending_tool,
        )


@dataclass(frozen=True)
class Texts:
    """A policy's :class:`Messages` for one decision: every text a string."""

    refusal: str
    tool_refusal: str
    redaction: str
    rewrite_note: str
    review_pending: str
    review_pending_input: str
    review_pending_tool: str


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
    #: with ``allow_local_files``: the folder local files must lie in (symlinks resolved);
    #: unset, any file the process can read
    local_files_root: str | None = None
    allow_url_fetch: bool = False
    #: with ``allow_url_fetch``: whether a URL may name a host on a private, loopback or
    #: link-local network (off: such URLs are unverifiable, so user content cannot make the
    #: guard request internal services)
    fetch_private_networks: bool = False
    fetch_timeout_s: float = Field(5.0, gt=0)
    unverifiable: ErrorAction = "block"


class AuditOptions(_Model):
    include_content: bool = False


class EscalationOptions(_Model):
    """What adapters without a human-review mechanism do with ``escalate``, and how much of
    the held content a reviewer's request (LangGraph's ``__interrupt__`` payload, which every
    stream consumer and ``get_state`` caller of the thread sees) carries: the first
    ``review_preview_chars`` characters of its text (0: none, only the categories and the
    tool calls' names and arguments, which the reviewer approves or edits)."""

    fallback: Literal["block", "allow"] = "block"
    review_preview_chars: int = Field(500, ge=0, le=100_000)


class Streaming(_Model):
    """How a streamed response is checked while it streams (:mod:`guard_plugin.streams`).

    The stream is cut into windows: the first of ``first_chunk_size`` units (small, so the
    first words come quickly), then ``chunk_size`` units each, cut at a sentence end or a word
    end where one lies in the window's second half. Each window is checked as a response with
    the user turn it answers and at least ``context_size`` units of the text before it (the
    whole answer so far until that passes twice ``context_size``). A unit is a word or
    punctuation mark of the text (each character in CJK scripts), or, with ``unit: chars``,
    a character.

    ``mode``: ``hold`` releases text only after the window holding it passed (nothing
    unchecked is shown); ``first`` shows text at once and checks it behind (a block ends the
    stream, and the audit says how much unchecked text was shown)."""

    mode: Literal["hold", "first"] = "hold"
    unit: Literal["tokens", "chars"] = "tokens"
    chunk_size: int = Field(64, ge=1, le=100_000)
    first_chunk_size: int = Field(4, ge=1, le=100_000)
    context_size: int = Field(256, ge=0, le=100_000)


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
    #: call the model while the user turn is checked (its answer is used only if the check
    #: allows the turn unchanged; its tokens are not streamed); off by default: a refused
    #: turn still costs the model call
    speculative: bool = False
    streaming: Streaming = Streaming()
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
