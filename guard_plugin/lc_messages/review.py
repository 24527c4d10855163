"""Human review of an escalated check, in the shape of LangChain's human-in-the-loop
requests: what a reviewer is asked, which answers each request accepts, and how the answers
read (anything malformed is a rejection)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.lc_messages.run import can_interrupt, interrupt
from guard_plugin.sealing import SealError, open_review
from guard_plugin.types import Action, PartRef, Surface

__all__ = [
    "REVIEW_DECISIONS",
    "allowed_decisions",
    "answer_kinds",
    "ask",
    "read_answers",
    "review_payload",
]

_log = logging.getLogger("guard_plugin")

REVIEW_DECISIONS = ["approve", "edit", "reject", "respond"]
"""Every answer type a reviewer may give (LangChain's human-in-the-loop decision types)."""

# What each kind of review request accepts; any other answer counts as a rejection.
_ALLOWED = {
    "tool_call": ["approve", "edit", "reject", "respond"],  # as HumanInTheLoopMiddleware
    "text": ["approve", "edit", "reject"],  # an assistant's text: edit replaces it
    "tool_result": ["approve", "reject", "respond"],  # respond answers for the tool
    "input": ["approve", "reject"],
}


def allowed_decisions(request: Mapping[str, Any]) -> list[str]:
    """The answer types a review request accepts, from its ``part`` or its name."""
    part = PartRef.parse(str(request.get("part", "")))
    if part.source == "tool_call":
        return _ALLOWED["tool_call"]
    if part.source == "text":
        return _ALLOWED["text"]
    name = str(request.get("name", ""))
    if name.startswith("tool_result:"):
        return _ALLOWED["tool_result"]
    return _ALLOWED["input"]


def review_payload(
    d: Decision, surface: Surface, action_requests: list[dict[str, Any]]
) -> dict[str, Any]:
    """An interrupt payload in the shape of LangChain's HITL requests, plus the safety details,
    so review UIs built for ``HumanInTheLoopMiddleware`` work unchanged."""
    return {
        "action_requests": [
            {
                "name": r["name"],
                "args": r.get("args", {}),
                "description": (
                    f"Content safety review ({surface.value}): "
                    f"{', '.join(d.categories) or d.error_kind or 'unsafe'}"
                ),
            }
            for r in action_requests
        ],
        "review_configs": [
            {"action_name": r["name"], "allowed_decisions": list(allowed_decisions(r))}
            for r in action_requests
        ],
        "safety": {
            "surface": surface.value,
            "status": d.status,
            "categories": list(d.categories),
            "reasoning": d.reasoning,
            "error": d.error,
            "policy_id": d.policy_id,
            "policy_version": d.policy_version,
            "request_id": d.request_id,
            "tenant": d.tenant,
        },
    }


def read_answers(resume: Any, n: int, d: Decision, guard: Guard) -> list[dict[str, Any]]:
    """The reviewer's answers to the escalation ``d``; anything malformed counts as a
    rejection (fail closed), and so, where the guard has a reviewers' key, does any answer
    not sealed with it for this escalation."""
    items = resume.get("decisions") if isinstance(resume, Mapping) else None
    if guard.review_sealer is not None:
        try:
            items = open_review(
                guard.review_sealer, resume, request_id=d.request_id, tenant=d.tenant
            )
        except SealError as err:
            _log.warning("review answer for %s refused: %s", d.request_id, err)
            return [{"type": "reject", "message": "review answer not signed by a reviewer"}] * n
    if (
        not isinstance(items, list)
        or len(items) != n
        or not all(isinstance(x, Mapping) for x in items)
    ):
        return [{"type": "reject", "message": "malformed review answer"}] * n
    return [dict(x) for x in items]


def answer_kinds(
    answers: Sequence[Mapping[str, Any]],
    requests: Sequence[Mapping[str, Any]],
    *,
    edits: bool = False,
) -> list[str]:
    """The answer types as audited, as they are applied: a type the request does not accept
    counts as a rejection, and so does an edit without an edited action where ``edits``
    apply, and a ``respond`` without a message."""
    kinds = []
    for a, r in zip(answers, requests, strict=True):
        kind = a.get("type")
        if edits and kind == "edit" and not isinstance(a.get("edited_action"), Mapping):
            kind = "reject"
        if kind == "respond" and not isinstance(a.get("message"), str):
            kind = "reject"
        kinds.append(str(kind) if kind in allowed_decisions(r) else "reject")
    return kinds


def ask(
    d: Decision,
    surface: Surface,
    requests: list[dict[str, Any]],
    guard: Guard,
    escalate: bool,
    tool_name: str | None = None,
) -> tuple[Action, str | None]:
    """For ``escalate``: ask a human (interrupt) where the adapter may, else fall back. Returns
    the action to apply and, for a ``respond`` answer, the reviewer's text to put in place of
    the content. Approval gives ``ALLOW``; a type the request does not accept, ``BLOCK``."""
    if d.action is not Action.ESCALATE:
        return d.action, None
    if not escalate or not can_interrupt():
        return Action(guard.policy_of(d).escalation.fallback), None
    answers = read_answers(interrupt(review_payload(d, surface, requests)), len(requests), d, guard)
    kinds = answer_kinds(answers, requests)
    responded = [str(a["message"]) for a, k in zip(answers, kinds, strict=True) if k == "respond"]
    if all(k == "approve" for k in kinds):
        action = Action.ALLOW
    elif responded and all(k in ("approve", "respond") for k in kinds):
        action = Action.REWRITE
    else:
        action = Action.BLOCK
    guard.record_review(d, kinds, action=action, tool_name=tool_name)
    return action, "\n".join(responded) if action is Action.REWRITE else None
