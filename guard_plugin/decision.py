"""Verdicts (or errors) for the parts of one check, turned into one decision under a policy.

Aggregation: any unsafe part makes the whole unsafe; categories are unioned in order of first
appearance; the parts that were unsafe (or failed, unless ``on_error`` is ``allow``) are kept so
``rewrite`` can withhold exactly those. An error never reads as safe: its decision comes from
``on_error`` and carries ``status == "error"`` even when that action is ``allow``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from guard_plugin import taxonomy
from guard_plugin.errors import GuardError
from guard_plugin.policy import CompiledPolicy
from guard_plugin.types import Action, Surface, strictest
from guard_plugin.verdict import Verdict

__all__ = ["Decision", "PartOutcome", "Status", "decide", "error_decision"]

Status = Literal["safe", "unsafe", "error", "empty"]


@dataclass(frozen=True)
class PartOutcome:
    """The result for one part of the checked content."""

    index: int
    part: str
    status: Status
    categories: tuple[str, ...] = ()
    suppressed: tuple[str, ...] = ()
    error: str | None = None
    error_kind: str | None = None
    reasoning: str | None = None
    cached: bool = False
    #: P(unsafe) where the backend reported it; the policy's threshold acts on it
    score: float | None = None
    verdict: Verdict | None = field(default=None, repr=False, compare=False)


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
        for p in d["parts"]:
            p.pop("verdict", None)
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
        d["parts"] = tuple(
            PartOutcome(
                **{
                    **p,
                    "categories": tuple(p.get("categories") or ()),
                    "suppressed": tuple(p.get("suppressed") or ()),
                }
            )
            for p in d.get("parts") or ()
        )
        return cls(**d)


def _replacement(action: Action, surface: Surface, policy: CompiledPolicy) -> str | None:
    msgs = policy.policy.messages
    if action is Action.ALLOW:
        return None
    if action is Action.REWRITE:
        return {
            Surface.INPUT: msgs.rewrite_note,
            Surface.TOOL: msgs.redaction,
            Surface.RESPONSE: msgs.refusal,
        }[surface]
    return msgs.tool_refusal if surface is Surface.TOOL else msgs.refusal


def outcome_for(
    index: int,
    part: str,
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
    threshold = policy.threshold_for(surface)
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
        verdict=result,
    )


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
    # One pass over the parts (this runs on every check, so it stays lean).
    media = policy.policy.media.unverifiable
    on_error = policy.policy.on_error
    cats: dict[str, None] = {}
    dropped: dict[str, None] = {}
    withheld: list[int] = []
    traces: list[str] = []
    first_error: PartOutcome | None = None
    score: float | None = None
    n_unsafe = n_errors = n_unverifiable = 0
    all_cached = bool(parts)
    for p in parts:
        if p.status == "unsafe":
            n_unsafe += 1
            withheld.append(p.index)
            for c in p.categories:
                cats[c] = None
        elif p.status == "error":
            n_errors += 1
            first_error = first_error or p
            if p.error_kind == "unverifiable":
                n_unverifiable += 1
                if media != "allow":
                    withheld.append(p.index)
            elif on_error != "allow":
                withheld.append(p.index)
        for c in p.suppressed:
            dropped[c] = None
        if p.reasoning:
            traces.append(p.reasoning)
        if p.score is not None and (score is None or p.score > score):
            score = p.score
        all_cached = all_cached and p.cached
    categories = tuple(cats)

    action = Action.ALLOW
    if n_unsafe:
        action = policy.action_for(surface, categories)
    if n_unverifiable < n_errors:
        action = strictest(action, policy.error_action())
    if n_unverifiable:
        action = strictest(action, Action(media))

    status: Status
    if n_errors:
        status = "error"
    elif n_unsafe:
        status = "unsafe"
    elif parts:
        status = "safe"
    else:
        status = "empty"
    reasoning = "\n\n".join(traces) or None
    return Decision(
        action=action,
        surface=surface,
        status=status,
        categories=categories,
        suppressed=tuple(dropped),
        replacement=_replacement(action, surface, policy),
        parts=tuple(parts),
        withheld_parts=tuple(sorted(withheld)) if action is not Action.ALLOW else (),
        error=first_error.error if first_error else None,
        error_kind=first_error.error_kind if first_error else None,
        reasoning=reasoning,
        policy_id=policy.id,
        policy_version=policy.version,
        policy_fingerprint=policy.fingerprint,
        cached=all_cached,
        score=score,
        **meta,
    )


def error_decision(
    error: BaseException, policy: CompiledPolicy, surface: Surface, **meta: Any
) -> Decision:
    """A decision for a check that failed as a whole (every part counts as failed)."""
    return decide([outcome_for(0, "all", error, policy, surface)], policy, surface, **meta)
