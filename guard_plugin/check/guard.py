"""The Guard: the one facade every adapter calls.

A check runs in three steps, written once: ``_prepare`` (tenant policy, model requests, cache
look-ups), the classifier call (the only step with a sync and an async form), and ``_finish``
(strict parsing, the decision, the audit event). Nothing raised by the classifier escapes:
errors, timeouts and malformed outputs become decisions through the tenant's ``on_error``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from guard_plugin import telemetry
from guard_plugin._aio import within as _within
from guard_plugin.audit import AuditSink
from guard_plugin.check.background import Background
from guard_plugin.check.cache import VerdictCache
from guard_plugin.check.events import Auditor, as_sink, shown_content
from guard_plugin.check.plan import Content, ContentCheck, Item, Plan, Slot, normalise_inputs
from guard_plugin.classifiers.base import Classifier, ClassifierOutput, ClassifierResult
from guard_plugin.decision import Decision, PartOutcome, decide, error_decision, outcome_for
from guard_plugin.errors import (
    ClassifierError,
    ClassifierTimeout,
    ConfigError,
    InvalidTenantError,
    MediaError,
    UnknownTenantError,
    VerdictParseError,
)
from guard_plugin.language import detect_language
from guard_plugin.media import FailedPart, window_inputs
from guard_plugin.policy import Policy, PolicyStore, Texts, compile_policy, load_policy
from guard_plugin.prompting import SafetyInput, build_request
from guard_plugin.sealing import Sealer, default_sealer, review_sealer
from guard_plugin.types import Action, Surface
from guard_plugin.verdict import Verdict, parse_verdict

__all__ = ["Guard", "as_guard"]

_log = logging.getLogger(__name__)

# Served when a tenant is refused: whatever the default policy says, this blocks.
_REFUSED_TENANT = compile_policy(Policy(id="unknown-tenant", on_error="block"))

Outputs = list[ClassifierResult] | BaseException


def _as_store(policies: PolicyStore | Policy | str | os.PathLike[str] | None) -> PolicyStore:
    if policies is None:
        return PolicyStore()
    if isinstance(policies, PolicyStore):
        return policies
    if isinstance(policies, Policy):
        return PolicyStore(default=policies)
    if isinstance(policies, (str, os.PathLike)):
        if str(policies) == "builtin":
            return PolicyStore.from_dir("builtin")
        p = Path(policies)
        return PolicyStore.from_dir(p) if p.is_dir() else PolicyStore(default=load_policy(p))
    raise ConfigError(
        f"policies must be a PolicyStore, a Policy or a path, not {type(policies).__name__}"
    )


class Guard:
    """Checks content for a tenant and returns a :class:`~guard_plugin.Decision`.

    - ``classifier``: a :class:`~guard_plugin.classifiers.Classifier`, or a spec string for
      :func:`~guard_plugin.load_classifier` (``"scripted"``, ``"transformers:/path"``,
      ``"vllm://host:8000/v1"``). A spec gives this Guard a hold on the process-wide shared
      instance, which :meth:`close` lets go of (the instance closes with its last holder); a
      classifier object stays the caller's to close.
    - ``policies``: a :class:`PolicyStore`, one :class:`Policy` for every tenant, a policy file
      or a folder of them, or ``"builtin"`` (the examples shipped with the package); the
      built-in default policy when omitted.
    - ``audit``: a sink or several (default: the ``guard_plugin.audit`` logger); ``[]`` for none.
    - ``cache_size``: parsed verdicts kept (0 disables the cache).
    - ``seal_key``: the key (or keys, newest first) that seals content held for review
      (:mod:`guard_plugin.sealing`); default ``$GUARD_PLUGIN_SEAL_KEY``, else a key of this
      process only.
    - ``review_key``: the reviewers' key (or keys, newest first); where set, an escalation's
      answers count only when :func:`~guard_plugin.sealing.sign_review` sealed them with it,
      and anything else is a rejection; default ``$GUARD_PLUGIN_REVIEW_KEY``, else answers are
      taken as sent.
    """

    def __init__(
        self,
        classifier: Classifier | str,
        *,
        policies: PolicyStore | Policy | str | os.PathLike[str] | None = None,
        audit: AuditSink | Iterable[AuditSink] | None = None,
        cache_size: int = 4096,
        seal_key: str | bytes | Sequence[str | bytes] | None = None,
        review_key: str | bytes | Sequence[str | bytes] | None = None,
    ) -> None:
        self._shared = isinstance(classifier, str)
        self._closed = False
        if isinstance(classifier, str):
            from guard_plugin.classifiers.registry import load_classifier, retain_classifier

            classifier = load_classifier(classifier)
            retain_classifier(classifier)
        if not isinstance(classifier, Classifier):
            raise ConfigError(
                "classifier must implement the Classifier protocol (name, extra_tokens, "
                "classify, aclassify, close) or be a spec string such as 'scripted'"
            )
        self.classifier = classifier
        self.policies = _as_store(policies)
        self.audit = as_sink(audit)
        self.cache = VerdictCache(cache_size)
        self._auditor = Auditor(self.audit)
        self._background = Background()
        self.sealer = default_sealer() if seal_key is None else Sealer(seal_key)
        self.review_sealer = review_sealer(review_key)
        self._tenant_labels = frozenset(self.policies.tenants())
        self._held: dict[str, None] = {}  # request ids of content held for review, in order
        self._held_lock = threading.Lock()

    # -- public API ---------------------------------------------------------------------------

    def check(
        self,
        content: Content,
        *,
        surface: Surface | str | None = None,
        tenant: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """Classify content for a tenant and decide. Never raises for run-time failures."""
        with telemetry.check_span() as span:
            plan = self._prepare(content, surface, tenant, request_id)
            if plan.done is None:
                self._absorb(plan, self._classify_sync(plan))
            return self._finish(plan, span)

    async def acheck(
        self,
        content: Content,
        *,
        surface: Surface | str | None = None,
        tenant: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """The async twin of :meth:`check`: same inputs, same decisions."""
        with telemetry.check_span() as span:
            plan = self._prepare(content, surface, tenant, request_id)
            if plan.done is None:
                self._absorb(plan, await self._classify_async(plan))
            return self._finish(plan, span)

    def check_content(
        self,
        content: Any,
        *,
        surface: Surface | str,
        tenant: str | None = None,
        context: str = "",
        tool_name: str | None = None,
        artifact: Any = None,
        password: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """Check message content in any common format (text, image and file blocks, bytes).

        Images become one input each, PDF pages one each (with their text), long text is
        split into windows; all are classified as one batch. Parts that cannot be classified
        (corrupt media, remote URLs not fetched, pages past the limit) are decided through
        ``on_error`` / ``media.unverifiable``. ``context`` is the user turn a response answers
        (response surface); ``artifact`` a tool's artifact, checked too.
        """
        what = ContentCheck(content, Surface(surface), context, tool_name, artifact, password)
        with telemetry.check_span() as span:
            plan = self._prepare_content(what, tenant, request_id)
            if plan.done is None:
                self._absorb(plan, self._classify_sync(plan))
            return self._finish(plan, span)

    async def acheck_content(
        self,
        content: Any,
        *,
        surface: Surface | str,
        tenant: str | None = None,
        context: str = "",
        tool_name: str | None = None,
        artifact: Any = None,
        password: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """The async twin of :meth:`check_content`; decoding and rendering run off the loop."""
        what = ContentCheck(content, Surface(surface), context, tool_name, artifact, password)
        with telemetry.check_span() as span:
            if what.text_only:  # nothing to decode: no worker thread needed
                plan = self._prepare_content(what, tenant, request_id)
            else:
                plan = await asyncio.to_thread(self._prepare_content, what, tenant, request_id)
            if plan.done is None:
                self._absorb(plan, await self._classify_async(plan))
            return self._finish(plan, span)

    def stream(
        self,
        pieces: Iterable[Any],
        *,
        context: str = "",
        tenant: str | None = None,
        request_id: str | None = None,
    ) -> Any:
        """Moderate a streamed response as it streams (:mod:`guard_plugin.streams`): iterate
        the result for the text that may be shown; by the tenant's ``streaming.mode`` nothing
        is shown before its check (``hold``), and a stopped stream ends with the refusal.
        ``context`` is the user turn the response answers."""
        from guard_plugin.streams import stream

        return stream(self, pieces, context=context, tenant=tenant, request_id=request_id)

    def astream(
        self,
        pieces: Any,
        *,
        context: str = "",
        tenant: str | None = None,
        request_id: str | None = None,
    ) -> Any:
        """The async twin of :meth:`stream` (``async for text in guard.astream(...)``)."""
        from guard_plugin.streams import astream

        return astream(self, pieces, context=context, tenant=tenant, request_id=request_id)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for background work (reasoning-audit requests) to finish."""
        self._background.flush(timeout)

    def close(self) -> None:
        """Finish background work and let go of the classifier: a shared one (built from a
        spec) closes when its last Guard closes; one passed in is left to its owner.
        Closing twice is harmless."""
        self._background.close()
        if self._shared and not self._closed:
            from guard_plugin.classifiers.registry import release_classifier

            release_classifier(self.classifier)
        self._closed = True

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scope_of(self, tenant: str | None) -> str:
        """What a decision about a message depends on besides the message: the tenant and its
        policy's fingerprint (the key of what adapters remember as decided)."""
        return f"{tenant or ''}|{self.policies.get_or_default(tenant).fingerprint}"

    def policy_of(self, decision: Decision | None) -> Policy:
        """The policy a decision was made under: its tenant's, or the default one (for a
        refused tenant, or where there is no decision)."""
        tenant = decision.tenant if decision is not None else None
        return self.policies.get_or_default(tenant).policy

    # -- after a decision ---------------------------------------------------------------------

    def record_review(
        self,
        decision: Decision,
        answers: Sequence[str],
        *,
        action: Action | str,
        tool_name: str | None = None,
    ) -> None:
        """Audit a person's answers to an escalated decision (adapters call this when a review
        comes back): an event ``review`` with the decision's request id and categories, the
        answers (``approve`` / ``edit`` / ``reject``, in request order) and the action that
        followed."""
        self._auditor.follow_up(
            decision,
            "review",
            Action(action),
            cached=False,
            reasoning=None,
            tool_name=tool_name,
            review=",".join(answers),
        )
        self._settled(decision)

    def record_override(self, decision: Decision, action: Action | str, *, reason: str) -> None:
        """Audit an adapter applying another action than ``decision``'s (say, a block where a
        regenerated response still needs rewriting): an event ``override`` under the
        decision's request id, with the action applied and the reason."""
        self._auditor.follow_up(decision, "override", Action(action), reason=reason)
        self._settled(decision)

    def record_hold(self, decision: Decision) -> None:
        """An adapter holds content for a person's review (a placeholder stands in for it):
        counted in ``guard_plugin.reviews.pending`` until a review or an override settles it
        in this process."""
        key = decision.request_id or ""
        with self._held_lock:
            if key in self._held:
                return
            self._held[key] = None
            while len(self._held) > 4096:
                self._held.pop(next(iter(self._held)))
        telemetry.review_pending(decision, +1)

    def _settled(self, decision: Decision) -> None:
        with self._held_lock:
            held = self._held.pop(decision.request_id or "", False) is None
        if held:
            telemetry.review_pending(decision, -1)

    def ask_handler(self, decision: Decision, handler: Callable[[Decision], Any]) -> bool:
        """Put an escalated decision to an escalation handler (a callable answering True to
        approve): a handler that fails counts as a refusal; the answer is audited as a
        review. Returns whether it approved."""
        try:
            approved = bool(handler(decision))
        except Exception:  # noqa: BLE001 (a handler that fails refuses)
            _log.exception("escalation handler failed; blocking")
            approved = False
        self.record_review(
            decision,
            ["approve" if approved else "reject"],
            action=Action.ALLOW if approved else Action.BLOCK,
        )
        return approved

    # -- the three steps ----------------------------------------------------------------------

    def _prepare(
        self,
        content: Content,
        surface: Surface | str | None,
        tenant: str | None,
        request_id: str | None,
    ) -> Plan:
        t0 = time.perf_counter()
        inputs = normalise_inputs(content, surface)
        if surface is not None:
            surf = Surface(surface)
        else:
            first = next((i for i in inputs if isinstance(i, SafetyInput)), None)
            surf = first.surface if first is not None else Surface.INPUT
        plan = self._start(t0, surf, tenant, request_id)
        if plan.done is None:
            # the same text rule as check_content: windows, and nothing past max_text_chars
            self._add_items(plan, window_inputs(inputs, plan.policy.policy.media))
        return plan

    def _prepare_content(
        self, what: ContentCheck, tenant: str | None, request_id: str | None
    ) -> Plan:
        plan = self._start(time.perf_counter(), what.surface, tenant, request_id)
        if plan.done is not None:
            return plan
        try:
            items = what.items(plan.policy.policy.media)
        except Exception as err:  # noqa: BLE001 (a decoder failing in a way it does not announce)
            failure = MediaError(f"cannot read the content: {type(err).__name__}: {err}")
            plan.done = error_decision(failure, plan.policy, what.surface, **self._meta(plan))
            return plan
        self._add_items(plan, items)
        return plan

    def _start(
        self, t0: float, surface: Surface, tenant: str | None, request_id: str | None
    ) -> Plan:
        rid = request_id or os.urandom(16).hex()
        try:
            policy = self.policies.get(tenant)
        except UnknownTenantError as err:
            # refused; only where the store says so does the default policy's on_error apply
            on_error = self.policies.unknown_tenant == "on_error"
            on_error = on_error and not isinstance(err, InvalidTenantError)
            refused = self.policies.default if on_error else _REFUSED_TENANT
            plan = Plan(t0, rid, _shown_tenant(tenant), surface, refused)
            plan.done = error_decision(err, refused, surface, **self._meta(plan))
            return plan
        return Plan(t0, rid, tenant, surface, policy)

    def _add_items(
        self,
        plan: Plan,
        items: Sequence[Item],
        *,
        reasoning: bool | None = None,
        lookup: bool = True,
    ) -> None:
        """A slot for each input among ``items`` (``reasoning`` overrides the policy's
        thinking switch), looked up in the cache unless ``lookup`` is off."""
        plan.items = [i for i in items if isinstance(i, FailedPart) or not i.is_empty]
        policy = plan.policy
        extra = tuple(getattr(self.classifier, "extra_tokens", ()))
        for inp in plan.items:
            if isinstance(inp, FailedPart):
                continue
            req = build_request(inp, policy, reasoning=reasoning, extra_tokens=extra)
            key = f"{policy.fingerprint}|{self.classifier.name}|{req.key}"
            hit = self.cache.get(key) if lookup else None
            slot = Slot(inp, req, key, hit, hit is not None)
            plan.slots.append(slot)
            if hit is None:
                plan.pending.append(slot)

    def _classify_sync(self, plan: Plan) -> Outputs:
        if not plan.pending:
            return []
        reqs = [s.request for s in plan.pending]
        with telemetry.classifier_span(self.classifier, len(reqs)):
            try:
                return self.classifier.classify(reqs, timeout=max(plan.remaining(), 0.0))
            except Exception as err:  # noqa: BLE001 (every failure becomes the check's decision)
                return err

    async def _classify_async(self, plan: Plan) -> Outputs:
        if not plan.pending:
            return []
        reqs = [s.request for s in plan.pending]
        budget = max(plan.remaining(), 0.0)
        with telemetry.classifier_span(self.classifier, len(reqs)):
            try:
                return await _within(self.classifier.aclassify(reqs, timeout=budget), budget)
            except asyncio.TimeoutError:
                return ClassifierTimeout(plan.budget_exceeded())
            except Exception as err:  # noqa: BLE001 (every failure becomes the check's decision)
                return err

    def _absorb(self, plan: Plan, outputs: Outputs, *, enforce_budget: bool = True) -> None:
        """Parse what the classifier returned into the plan's pending slots."""
        failure = _failure(plan, outputs, enforce_budget)
        results = outputs if failure is None and isinstance(outputs, list) else None
        for n, slot in enumerate(plan.pending):
            slot.result = self._verdict(slot, results[n] if results is not None else failure)

    def _verdict(self, slot: Slot, out: object) -> Verdict | BaseException:
        """One classifier result as a verdict (cached) or the error it is."""
        if isinstance(out, BaseException):
            return out if isinstance(out, ClassifierError) else _wrap(out)
        if not isinstance(out, ClassifierOutput):
            return ClassifierError(
                f"classifier returned {type(out).__name__}, not ClassifierOutput"
            )
        try:
            verdict = parse_verdict(
                out.text, reasoning=out.reasoning, expect_response=slot.request.expects_response
            )
        except VerdictParseError as err:
            return err
        if out.user_score is not None or out.response_score is not None:
            verdict = replace(verdict, user_score=out.user_score, response_score=out.response_score)
        self.cache.put(slot.key, verdict)
        return verdict

    def _finish(self, plan: Plan, span: Any = None) -> Decision:
        decision = plan.done if plan.done is not None else self._decide(plan)
        if span is not None and span is not telemetry.OFF_SPAN:
            telemetry.record_decision(
                span,
                decision,
                tenant_label=self._tenant_label(plan.tenant),
                parts=len(plan.items),
                content=shown_content(plan),
            )
        self._auditor.decision(plan, decision, "decision")
        if decision.is_error:
            _warn_error(decision)
        if (
            plan.done is None
            and plan.policy.policy.reasoning == "audit"
            and plan.pending
            and not decision.is_error
        ):
            # Audit mode: the decision stands; a reasoning run adds its trace to the audit log.
            self._background.submit(lambda: self._reasoning_run(plan))
        return decision

    # -- helpers ------------------------------------------------------------------------------

    def _decide(self, plan: Plan) -> Decision:
        """Outcomes in content order: classified inputs and failed parts together."""
        outcomes: list[PartOutcome] = []
        slots = iter(plan.slots)
        for i, item in enumerate(plan.items):
            if isinstance(item, FailedPart):
                outcomes.append(outcome_for(i, item.ref, item.error, plan.policy, plan.surface))
                continue
            slot = next(slots)
            result = slot.result if slot.result is not None else ClassifierError("no result")
            outcomes.append(
                outcome_for(i, item.part, result, plan.policy, plan.surface, cached=slot.cached)
            )
        return decide(outcomes, plan.policy, plan.surface, **self._meta(plan))

    def _tenant_label(self, tenant: str | None) -> str:
        """A bounded metric label: a tenant the store names, ``default`` for none, else
        ``other`` (ids a caller sends are not labels)."""
        if tenant is None:
            return "default"
        return tenant if tenant in self._tenant_labels else "other"

    def _meta(self, plan: Plan) -> dict[str, object]:
        return {
            "tenant": plan.tenant,
            "model": self.classifier.name,
            "latency_ms": round((time.perf_counter() - plan.t0) * 1000.0, 3),
            "request_id": plan.request_id,
            "language": _language(plan),
        }

    def messages_of(self, decision: Decision | None, tenant: str | None = None) -> Texts:
        """The texts to put in place of content a decision did not allow, as strings: in the
        language of the user's turn where the policy has texts by language, and with the
        failure text as the refusal where the decision came from an error. Without a
        decision, the ``tenant``'s (else the default) texts."""
        if decision is None:
            return self.policies.get_or_default(tenant).policy.messages.resolved(None)
        messages = self.policy_of(decision).messages
        return messages.resolved(decision.language, failed=decision.is_error)

    def _reasoning_run(self, plan: Plan) -> None:
        rplan = Plan(time.perf_counter(), plan.request_id, plan.tenant, plan.surface, plan.policy)
        self._add_items(rplan, plan.items, reasoning=True, lookup=False)
        # The reasoning run is not bound by the interactive time budget.
        outputs: Outputs
        try:
            outputs = self.classifier.classify([s.request for s in rplan.pending])
        except Exception as err:  # noqa: BLE001 (audited as the reasoning event's error)
            outputs = err
        self._absorb(rplan, outputs, enforce_budget=False)
        self._auditor.decision(rplan, self._decide(rplan), "reasoning")


def _failure(plan: Plan, outputs: Outputs, enforce_budget: bool) -> ClassifierError | None:
    """The error every pending slot gets, or ``None`` when each has its own result."""
    err: ClassifierError | None = None
    if isinstance(outputs, BaseException):
        err = outputs if isinstance(outputs, ClassifierError) else _wrap(outputs)
    elif len(outputs) != len(plan.pending):
        err = ClassifierError(
            f"classifier returned {len(outputs)} results for {len(plan.pending)} requests"
        )
    over = enforce_budget and plan.pending and plan.remaining() < 0
    if over and not isinstance(err, ClassifierTimeout):
        err = ClassifierTimeout(plan.budget_exceeded())
    return err


_WARN_EVERY_S = 60.0
_warned: dict[str, float] = {}
_warned_lock = threading.Lock()


def _warn_error(d: Decision) -> None:
    """One WARNING on ``guard_plugin`` per kind of error a minute: a misconfigured deployment
    (a server down, a wrong spec, an unknown tenant) is noticed, not only audited."""
    kind = d.error_kind or "error"
    now = time.monotonic()
    with _warned_lock:
        if now - _warned.get(kind, -_WARN_EVERY_S) < _WARN_EVERY_S:
            return
        _warned[kind] = now
    logging.getLogger("guard_plugin").warning(
        "no verdict (%s): %s; the check was decided by on_error (%s) for tenant %s",
        kind,
        d.error,
        d.action.value,
        d.tenant,
    )


def _language(plan: Plan) -> str | None:
    """The user turn's language, where the plan's policy answers by language."""
    if not plan.policy.by_language:
        return None
    text = next((i.text for i in plan.inputs if i.text), "")
    return detect_language(text) if text else None


def _shown_tenant(tenant: Any) -> str | None:
    """A refused tenant id as decisions and audit events show it (bounded, printable)."""
    if tenant is None:
        return None
    text = tenant if isinstance(tenant, str) else repr(tenant)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 64 else text[:64] + "..."


def _wrap(err: BaseException) -> ClassifierError:
    wrapped = ClassifierError(f"classifier failed: {type(err).__name__}: {err}")
    wrapped.__cause__ = err
    return wrapped


def as_guard(guard: Guard | str) -> Guard:
    """A Guard, or one built from a classifier spec (what every adapter accepts)."""
    return Guard(guard) if isinstance(guard, str) else guard
