"""Verdicts (or errors) for the parts of one check, turned into one decision under a policy.

Aggregation: any unsafe part makes the whole unsafe; categories are unioned in order of first
appearance; the parts that were unsafe (or failed, unless ``on_error`` is ``allow``) are kept so
``rewrite`` can withhold exactly those. An error never reads as safe: its decision comes from
``on_error`` and carries ``status == "error"`` even when that action is ``allow``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from guard_plugin import taxonomy
from guard_plugin.errors import GuardError
from guard_plugin.policy import CompiledPolicy
from guard_plugin.types import Action, PartRef, Status, Surface, strictest
from guard_plugin.verdict import Verdict

__all__ = ["Decision", "PartOutcome", "Status", "decide", "error_decision", "outcome_for"]


@dataclass(frozen=True)
class PartOutcome:
    """The result for one part of the checked content; ``ref`` says which part (``part`` is
    its label, as it reads in JSON and in the audit log)."""

    index: int
    ref: PartRef
    status: Status
    categories: tuple[str, ...] = ()
    suppressed: tuple[str, ...] = ()
    error: str | None = None
    error_kind: str | None = None
    reasoning: str | None = None
    cached: bool = False
    #: P(unsafe) where the backend reported it; the policy's threshold acts on it
    score: float | None = None
    #: the policy has a threshold for this surface, but the backend reported no score
    threshold_unapplied: bool = False
    verdict: Verdict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.ref, str):  # a label, as JSON and hand-built outcomes give it
            object.__setattr__(self, "ref", PartRef.parse(self.ref))

    @property
    def part(self) -> str:
        return self.ref.label

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["ref"], d["verdict"]
        return {
            "index": self.index,
            "part": self.part,
            **{k: v for k, v in d.items() if k != "index"},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartOutcome:
        p = {k: v for k, v in data.items() if k != "part"}
        return cls(
            **{
                **p,
                "ref": PartRef.parse(str(data.get("part", "content"))),
                "categories": tuple(p.get("categories") or ()),
                "suppressed": tuple(p.get("suppressed") or ()),
            }
        )


@dataclass(frozen=True)
class Decision:
    """What to do with checked content. A block is a value; adapters choose how to apply it.

    ``replacement`` is the text to put in place of the content for ``block`` / ``rewrite`` (and
    the fallback text for ``escalate``). ``withheld_parts`` lists the part indices a rewrite
    should remove. ``score`` is the highest P(unsafe) among the parts that have one (``None``
    where the backend reports none, e.g. text generation without logprobs).
    """

    action: Action
    surface: Surface
    status: Status
    tenant: str | None = None
    categories: tuple[str, ...] = ()
    suppressed: tuple[str, ...] = ()
    replacement: str | None = None
    parts: tuple[PartOutcome, ...] = ()
    withheld_parts: tuple[int, ...] = ()
    error: str | None = None
    error_kind: str | None = None
    reasoning: str | None = None
    policy_id: str = "default"
    policy_version: str = "1"
    policy_fingerprint: str = ""
    model: str | None = None
    latency_ms: float = 0.0
    request_id: str | None = None
    cached: bool = False
    score: float | None = None
    #: some part had a threshold that could not apply (no score): the model's label decided
    threshold_unapplied: bool = False
    #: the language of the user's turn, where the policy answers by language (ISO 639-1)
    language: str | None = None

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    @property
    def is_error(self) -> bool:
        return self.status == "error"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["action"] = self.action.value
        d["surface"] = self.surface.value
        d["parts"] = [p.to_dict() for p in self.parts]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """The inverse of :meth:`to_dict` (part verdicts are not kept), for decisions that
        wait in a checkpoint, e.g. a response held for human review."""
        d = dict(data)
        d["action"] = Action(d["action"])
        d["surface"] = Surface(d["surface"])
        for key in ("categories", "suppressed", "withheld_parts"):
            d[key] = tuple(d.get(key) or ())
        d["parts"] = tuple(PartOutcome.from_dict(p) for p in d.get("parts") or ())
        return cls(**d)


def _replacement(
    action: Action, surface: Surface, policy: CompiledPolicy, language: str | None, failed: bool
) -> str | None:
    if action is Action.ALLOW:
        return None
    msgs = policy.policy.messages.resolved(language, failed=failed)
    if action is Action.REWRITE:
        return {
            Surface.INPUT: msgs.rewrite_note,
            Surface.TOOL: msgs.redaction,
            Surface.RESPONSE: str(msgs.refusal),
        }[surface]
    return msgs.tool_refusal if surface is Surface.TOOL else str(msgs.refusal)


def outcome_for(
    index: int,
    part: PartRef,
    result: Verdict | BaseException,
    policy: CompiledPolicy,
    surface: Surface,
    *,
    cached: bool = False,
) -> PartOutcome:
    """One part's outcome: the verdict's label for the surface, with suppression applied."""
    if isinstance(result, BaseException):
        kind = result.kind if isinstance(result, GuardError) else "unexpected"
        return PartOutcome(
            index, part, "error", error=f"{type(result).__name__}: {result}", error_kind=kind
        )
    response = surface is Surface.RESPONSE
    label = result.label_for(response=response)
    score = result.score_for(response=response)
    if score is not None and not 0.0 <= score <= 1.0:  # NaN or out of range: no score
        score = None
    threshold = policy.threshold_for(surface)
    unapplied = threshold is not None and score is None
    if unapplied and policy.requires_score:
        return PartOutcome(
            index,
            part,
            "error",
            error="the tenant's threshold requires a score, and the classifier reported none",
            error_kind="no_score",
            verdict=result,
        )
    if label is not None and score is not None and threshold is not None:
        label = "unsafe" if score >= threshold else "safe"
    if label is None:  # parse_verdict guarantees the label for the surface it was asked for
        return PartOutcome(
            index,
            part,
            "error",
            error="the verdict does not rate this surface",
            error_kind="parse",
            verdict=result,
        )
    if label == "safe":
        return PartOutcome(
            index,
            part,
            "safe",
            reasoning=result.reasoning,
            cached=cached,
            score=score,
            threshold_unapplied=unapplied,
            verdict=result,
        )
    names = tuple(dict.fromkeys(taxonomy.canonical_name(c) for c in result.categories))
    kept = tuple(c for c in names if not policy.is_suppressed(c))
    dropped = tuple(c for c in names if policy.is_suppressed(c))
    # Only a verdict whose categories are all switched off becomes safe; an unsafe verdict
    # with no categories at all stays unsafe.
    status: Status = "safe" if names and not kept else "unsafe"
    return PartOutcome(
        index,
        part,
        status,
        categories=kept,
        suppressed=dropped,
        reasoning=result.reasoning,
        cached=cached,
        score=score,
        threshold_unapplied=unapplied,
        verdict=result,
    )


class _Tally:
    """One pass over the parts of a check (this runs on every check, so it stays lean)."""

    __slots__ = (
        "all_cached",
        "cats",
        "dropped",
        "first_error",
        "media",
        "n_errors",
        "n_unsafe",
        "n_unverifiable",
        "on_error",
        "score",
        "traces",
        "unapplied",
        "withheld",
    )

    def __init__(self, media: str, on_error: str) -> None:
        self.media = media  # what an unverifiable part does (media.unverifiable)
        self.on_error = on_error
        self.cats: dict[str, None] = {}
        self.dropped: dict[str, None] = {}
        self.withheld: list[int] = []
        self.traces: list[str] = []
        self.first_error: PartOutcome | None = None
        self.score: float | None = None
        self.n_unsafe = self.n_errors = self.n_unverifiable = 0
        self.all_cached = True
        self.unapplied = False

    def add(self, p: PartOutcome) -> None:
        if p.status == "unsafe":
            self.n_unsafe += 1
            self.withheld.append(p.index)
            for c in p.categories:
                self.cats[c] = None
        elif p.status == "error":
            self._error(p)
        for c in p.suppressed:
            self.dropped[c] = None
        if p.reasoning:
            self.traces.append(p.reasoning)
        if p.score is not None and (self.score is None or p.score > self.score):
            self.score = p.score
        self.all_cached = self.all_cached and p.cached
        self.unapplied = self.unapplied or p.threshold_unapplied

    def _error(self, p: PartOutcome) -> None:
        self.n_errors += 1
        self.first_error = self.first_error or p
        unverifiable = p.error_kind == "unverifiable"
        self.n_unverifiable += unverifiable
        if (self.media if unverifiable else self.on_error) != "allow":
            self.withheld.append(p.index)

    def action(self, policy: CompiledPolicy, surface: Surface) -> Action:
        action = policy.action_for(surface, tuple(self.cats)) if self.n_unsafe else Action.ALLOW
        if self.n_unverifiable < self.n_errors:
            action = strictest(action, policy.error_action())
        if self.n_unverifiable:
            action = strictest(action, Action(self.media))
        return action

    def status(self, any_parts: bool) -> Status:
        if self.n_errors:
            return "error"
        if self.n_unsafe:
            return "unsafe"
        return "safe" if any_parts else "empty"


def decide(
    parts: Sequence[PartOutcome],
    policy: CompiledPolicy,
    surface: Surface,
    **meta: Any,
) -> Decision:
    """Aggregate part outcomes into a decision under the policy's action table.

    ``meta`` fills the bookkeeping fields (tenant, model, latency_ms, request_id).
    """
    if not isinstance(surface, Surface):
        surface = Surface(surface)
    t = _Tally(policy.policy.media.unverifiable, policy.policy.on_error)
    for p in parts:
        t.add(p)
    action = t.action(policy, surface)
    first_error = t.first_error
    status = t.status(bool(parts))
    language = meta.pop("language", None)
    return Decision(
        action=action,
        surface=surface,
        status=status,
        categories=tuple(t.cats),
        suppressed=tuple(t.dropped),
        replacement=_replacement(action, surface, policy, language, status == "error"),
        parts=tuple(parts),
        withheld_parts=tuple(sorted(t.withheld)) if action is not Action.ALLOW else (),
        error=first_error.error if first_error else None,
        error_kind=first_error.error_kind if first_error else None,
        reasoning="\n\n".join(t.traces) or None,
        policy_id=policy.id,
        policy_version=policy.version,
        policy_fingerprint=policy.fingerprint,
        cached=bool(parts) and t.all_cached,
        score=t.score,
        threshold_unapplied=t.unapplied,
        language=language,
        **meta,
    )


def error_decision(
    error: BaseException, policy: CompiledPolicy, surface: Surface, **meta: Any
) -> Decision:
    """A decision for a check that failed as a whole (every part counts as failed)."""
    return decide([outcome_for(0, PartRef("all"), error, policy, surface)], policy, surface, **meta)
