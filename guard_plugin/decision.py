"""Verdicts (or errors) for the parts of one check, turned into one decision under a policy.

Aggregation: any unsafe part makes the whole unsafe; categories are unioned in order of first
appearance; the parts that were unsafe (or failed, unless ``on_error`` is ``allow``) are kept so
``rewrite`` can withhold exactly those. An error never reads as safe: its decision comes from
``on_error`` and carries ``status == "error"`` even when that action is ``allow``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    verdict: Verdict | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Decision:
    """What to do with checked content. A block is a value; adapters choose how to apply it.

    ``replacement`` is the text to put in place of the content for ``block`` / ``rewrite`` (and
    the fallback text for ``escalate``). ``withheld_parts`` lists the part indices a rewrite
    should remove.
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
    label = result.label_for(response=surface is Surface.RESPONSE)
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
            index, part, "safe", reasoning=result.reasoning, cached=cached, verdict=result
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
    surface = Surface(surface)
    unsafe = [p for p in parts if p.status == "unsafe"]
    errors = [p for p in parts if p.status == "error"]
    categories = tuple(dict.fromkeys(c for p in unsafe for c in p.categories))
    suppressed = tuple(dict.fromkeys(c for p in parts for c in p.suppressed))

    unverifiable = [p for p in errors if p.error_kind == "unverifiable"]
    candidates: list[Action] = []
    if unsafe:
        candidates.append(policy.action_for(surface, categories))
    if len(unverifiable) < len(errors):
        candidates.append(policy.error_action())
    if unverifiable:
        candidates.append(Action(policy.policy.media.unverifiable))
    action = strictest(*candidates)

    status: Status
    if errors:
        status = "error"
    elif unsafe:
        status = "unsafe"
    elif parts:
        status = "safe"
    else:
        status = "empty"

    withheld = [p.index for p in unsafe]
    for p in errors:
        lenient = (
            policy.policy.media.unverifiable
            if p.error_kind == "unverifiable"
            else policy.policy.on_error
        )
        if lenient != "allow":
            withheld.append(p.index)
    reasoning = "\n\n".join(p.reasoning for p in parts if p.reasoning) or None
    first_error = errors[0] if errors else None
    return Decision(
        action=action,
        surface=surface,
        status=status,
        categories=categories,
        suppressed=suppressed,
        replacement=_replacement(action, surface, policy),
        parts=tuple(parts),
        withheld_parts=tuple(sorted(withheld)) if action is not Action.ALLOW else (),
        error=first_error.error if first_error else None,
        error_kind=first_error.error_kind if first_error else None,
        reasoning=reasoning,
        policy_id=policy.id,
        policy_version=policy.version,
        policy_fingerprint=policy.fingerprint,
        cached=bool(parts) and all(p.cached for p in parts),
        **meta,
    )


def error_decision(
    error: BaseException, policy: CompiledPolicy, surface: Surface, **meta: Any
) -> Decision:
    """A decision for a check that failed as a whole (every part counts as failed)."""
    return decide([outcome_for(0, "all", error, policy, surface)], policy, surface, **meta)
