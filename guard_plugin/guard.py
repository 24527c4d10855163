"""The Guard: the one facade every adapter calls.

A check runs in three steps, written once: ``_prepare`` (tenant policy, model requests, cache
look-ups), the classifier call (the only step with a sync and an async form), and ``_finish``
(strict parsing, the decision, the audit event). Nothing raised by the classifier escapes:
errors, timeouts and malformed outputs become decisions through the tenant's ``on_error``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from guard_plugin._aio import within as _within
from guard_plugin.audit import AuditEvent, AuditSink, LoggingAuditSink, MultiAuditSink
from guard_plugin.classifiers.base import Classifier, ClassifierOutput, ClassifierResult
from guard_plugin.decision import Decision, PartOutcome, decide, error_decision, outcome_for
from guard_plugin.errors import (
    ClassifierError,
    ClassifierTimeout,
    ConfigError,
    MediaError,
    UnknownTenantError,
    VerdictParseError,
)
from guard_plugin.media.content import FailedPart, extract_parts, fan_out, window_inputs
from guard_plugin.policy import CompiledPolicy, Policy, PolicyStore, compile_policy, load_policy
from guard_plugin.prompting import ModelRequest, SafetyInput, build_request
from guard_plugin.types import Action, Surface
from guard_plugin.verdict import Verdict, parse_verdict

__all__ = ["Guard"]

_log = logging.getLogger(__name__)

# Served when a tenant is refused: whatever the default policy says, this blocks.
_REFUSED_TENANT = compile_policy(Policy(id="unknown-tenant", on_error="block"))

Content = str | SafetyInput | Sequence[SafetyInput]


class _VerdictCache:
    """A bounded LRU of parsed verdicts. Keys include the policy fingerprint and the model."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, Verdict] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Verdict | None:
        if self.maxsize <= 0:
            return None
        with self._lock:
            v = self._data.get(key)
            if v is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key: str, verdict: Verdict) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = verdict
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class _Plan:
    t0: float
    request_id: str
    tenant: str | None
    surface: Surface
    policy: CompiledPolicy
    inputs: list[SafetyInput]
    #: content order: every input, and parts that could not be classified (media errors)
    items: list[SafetyInput | FailedPart] = field(default_factory=list)
    requests: list[ModelRequest] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    results: list[Verdict | BaseException | None] = field(default_factory=list)
    cached: list[bool] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    done: Decision | None = None

    def remaining(self) -> float:
        return self.policy.policy.time_budget_ms / 1000.0 - (time.perf_counter() - self.t0)


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


def _as_sink(audit: AuditSink | Iterable[AuditSink] | None) -> AuditSink:
    if audit is None:
        return LoggingAuditSink()
    if isinstance(audit, AuditSink):
        return audit
    return MultiAuditSink(audit)


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
    """

    def __init__(
        self,
        classifier: Classifier | str,
        *,
        policies: PolicyStore | Policy | str | os.PathLike[str] | None = None,
        audit: AuditSink | Iterable[AuditSink] | None = None,
        cache_size: int = 4096,
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
        self.audit = _as_sink(audit)
        self.cache = _VerdictCache(cache_size)
        self._background: ThreadPoolExecutor | None = None
        self._pending_bg: set[Future[None]] = set()
        self._bg_lock = threading.Lock()

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
        plan = self._prepare(content, surface, tenant, request_id)
        if plan.done is None:
            outputs = self._classify_sync(plan)
            self._absorb(plan, outputs)
        return self._finish(plan)

    async def acheck(
        self,
        content: Content,
        *,
        surface: Surface | str | None = None,
        tenant: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """The async twin of :meth:`check`: same inputs, same decisions."""
        plan = self._prepare(content, surface, tenant, request_id)
        if plan.done is None:
            outputs = await self._classify_async(plan)
            self._absorb(plan, outputs)
        return self._finish(plan)

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
        plan = self._prepare_content(
            content, surface, tenant, request_id, context, tool_name, artifact, password
        )
        if plan.done is None:
            self._absorb(plan, self._classify_sync(plan))
        return self._finish(plan)

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
        # Decoding images and rendering PDFs happens in a worker thread; text needs none.
        prepare = self._prepare_content
        if artifact is None and _text_only(content):
            plan = prepare(
                content, surface, tenant, request_id, context, tool_name, artifact, password
            )
        else:
            plan = await asyncio.to_thread(
                prepare,
                content,
                surface,
                tenant,
                request_id,
                context,
                tool_name,
                artifact,
                password,
            )
        if plan.done is None:
            self._absorb(plan, await self._classify_async(plan))
        return self._finish(plan)

    def as_runnable(
        self, *, surface: Surface | str = Surface.INPUT, tenant: str | None = None
    ) -> Any:
        """A LangChain runnable that passes allowed values through and raises
        :class:`~guard_plugin.GuardBlocked` otherwise (needs the ``langchain`` extra)."""
        from guard_plugin.langchain import guard_runnable

        return guard_runnable(self, surface=surface, tenant=tenant)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for background work (reasoning-audit requests) to finish."""
        with self._bg_lock:
            pending = list(self._pending_bg)
        for fut in pending:
            try:
                fut.result(timeout=timeout)
            except Exception:
                _log.exception("background reasoning audit failed")

    def close(self) -> None:
        """Finish background work and let go of the classifier: a shared one (built from a
        spec) closes when its last Guard closes; one passed in is left to its owner.
        Closing twice is harmless."""
        self.flush()
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None
        if self._shared and not self._closed:
            from guard_plugin.classifiers.registry import release_classifier

            release_classifier(self.classifier)
        self._closed = True

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the three steps ----------------------------------------------------------------------

    def _prepare(
        self,
        content: Content,
        surface: Surface | str | None,
        tenant: str | None,
        request_id: str | None,
    ) -> _Plan:
        t0 = time.perf_counter()
        inputs = _normalise(content, surface)
        if surface is not None:
            surf = surface if isinstance(surface, Surface) else Surface(surface)
        else:
            surf = inputs[0].surface if inputs else Surface.INPUT
        plan = self._start(t0, surf, tenant, request_id)
        if plan.done is None:
            # the same text rule as check_content: windows, and nothing past max_text_chars
            self._add_items(plan, window_inputs(inputs, plan.policy.policy.media))
        return plan

    def _prepare_content(
        self,
        content: Any,
        surface: Surface | str,
        tenant: str | None,
        request_id: str | None,
        context: str,
        tool_name: str | None,
        artifact: Any,
        password: str | None,
    ) -> _Plan:
        t0 = time.perf_counter()
        surf = surface if isinstance(surface, Surface) else Surface(surface)
        plan = self._start(t0, surf, tenant, request_id)
        if plan.done is None:
            limits = plan.policy.policy.media
            items: list[SafetyInput | FailedPart]
            if (
                isinstance(content, str)
                and artifact is None
                and len(content) <= limits.text_window_chars
            ):
                # The common case, one short text: no extraction or windowing needed.
                if surf is Surface.RESPONSE:
                    one = SafetyInput(
                        text=context,
                        response=content,
                        surface=surf,
                        tool_name=tool_name,
                        part="content",
                    )
                else:
                    one = SafetyInput(
                        text=content, surface=surf, tool_name=tool_name, part="content"
                    )
                items = [one]
            else:
                try:
                    parts = extract_parts(content, limits, artifact=artifact)
                    items = fan_out(
                        parts, limits, surf, context=context, tool_name=tool_name, password=password
                    )
                except Exception as err:  # a decoder failing in a way it does not announce
                    failure = MediaError(f"cannot read the content: {type(err).__name__}: {err}")
                    plan.done = error_decision(failure, plan.policy, surf, **self._meta(plan))
                    return plan
            self._add_items(plan, items)
        return plan

    def _start(
        self, t0: float, surface: Surface, tenant: str | None, request_id: str | None
    ) -> _Plan:
        rid = request_id or os.urandom(16).hex()
        try:
            policy = self.policies.get(tenant)
        except UnknownTenantError as err:
            plan = _Plan(t0, rid, tenant, surface, _REFUSED_TENANT, [])
            plan.done = error_decision(err, _REFUSED_TENANT, surface, **self._meta(plan))
            return plan
        return _Plan(t0, rid, tenant, surface, policy, [])

    def _add_items(
        self,
        plan: _Plan,
        items: Sequence[SafetyInput | FailedPart],
        *,
        reasoning: bool | None = None,
        lookup: bool = True,
    ) -> None:
        """Build model requests for the inputs among ``items`` (``reasoning`` overrides the
        policy's thinking switch); look each up in the cache unless ``lookup`` is off."""
        plan.items = [i for i in items if isinstance(i, FailedPart) or not i.is_empty]
        plan.inputs = [i for i in plan.items if isinstance(i, SafetyInput)]
        policy = plan.policy
        extra = tuple(getattr(self.classifier, "extra_tokens", ()))
        for inp in plan.inputs:
            req = build_request(inp, policy, reasoning=reasoning, extra_tokens=extra)
            key = f"{policy.fingerprint}|{self.classifier.name}|{req.key}"
            hit = self.cache.get(key) if lookup else None
            plan.requests.append(req)
            plan.keys.append(key)
            plan.results.append(hit)
            plan.cached.append(hit is not None)
            if hit is None:
                plan.pending.append(len(plan.requests) - 1)

    def _classify_sync(self, plan: _Plan) -> list[ClassifierResult] | BaseException:
        if not plan.pending:
            return []
        reqs = [plan.requests[i] for i in plan.pending]
        try:
            return self.classifier.classify(reqs, timeout=max(plan.remaining(), 0.0))
        except Exception as err:
            return err

    async def _classify_async(self, plan: _Plan) -> list[ClassifierResult] | BaseException:
        if not plan.pending:
            return []
        reqs = [plan.requests[i] for i in plan.pending]
        budget = max(plan.remaining(), 0.0)
        try:
            return await _within(self.classifier.aclassify(reqs, timeout=budget), budget)
        except asyncio.TimeoutError:
            return ClassifierTimeout(
                f"no verdict within the time budget of {plan.policy.policy.time_budget_ms} ms"
            )
        except Exception as err:
            return err

    def _absorb(
        self,
        plan: _Plan,
        outputs: list[ClassifierResult] | BaseException,
        *,
        enforce_budget: bool = True,
    ) -> None:
        """Parse what the classifier returned into the plan's result slots."""
        if not isinstance(outputs, BaseException) and len(outputs) != len(plan.pending):
            outputs = ClassifierError(
                f"classifier returned {len(outputs)} results for {len(plan.pending)} requests"
            )
        if isinstance(outputs, BaseException) and not isinstance(outputs, ClassifierError):
            outputs = _wrap(outputs)
        if (
            enforce_budget
            and plan.pending
            and plan.remaining() < 0
            and not isinstance(outputs, ClassifierTimeout)
        ):
            outputs = ClassifierTimeout(
                f"no verdict within the time budget of {plan.policy.policy.time_budget_ms} ms"
            )
        for n, i in enumerate(plan.pending):
            out = outputs if isinstance(outputs, BaseException) else outputs[n]
            if isinstance(out, ClassifierOutput):
                try:
                    verdict = parse_verdict(
                        out.text,
                        reasoning=out.reasoning,
                        expect_response=plan.requests[i].expects_response,
                    )
                except VerdictParseError as err:
                    plan.results[i] = err
                else:
                    if out.user_score is not None or out.response_score is not None:
                        verdict = replace(
                            verdict, user_score=out.user_score, response_score=out.response_score
                        )
                    plan.results[i] = verdict
                    self.cache.put(plan.keys[i], verdict)
            elif isinstance(out, BaseException):
                plan.results[i] = out if isinstance(out, ClassifierError) else _wrap(out)
            else:
                plan.results[i] = ClassifierError(
                    f"classifier returned {type(out).__name__}, not ClassifierOutput"
                )

    def _finish(self, plan: _Plan) -> Decision:
        decision = plan.done if plan.done is not None else self._decide(plan)
        self._emit(plan, decision, "decision")
        if (
            plan.done is None
            and plan.policy.policy.reasoning == "audit"
            and plan.pending
            and not decision.is_error
        ):
            self._schedule_reasoning(plan, decision)
        return decision

    # -- helpers ------------------------------------------------------------------------------

    def _decide(self, plan: _Plan) -> Decision:
        """Outcomes in content order: classified inputs and failed parts together."""
        outcomes: list[PartOutcome] = []
        results = iter(zip(plan.results, plan.cached, strict=True))
        for i, item in enumerate(plan.items):
            if isinstance(item, FailedPart):
                outcomes.append(outcome_for(i, item.part, item.error, plan.policy, plan.surface))
                continue
            res, cached = next(results)
            result: Verdict | BaseException = (
                res if res is not None else ClassifierError("no result")
            )
            outcomes.append(
                outcome_for(i, item.part, result, plan.policy, plan.surface, cached=cached)
            )
        return decide(outcomes, plan.policy, plan.surface, **self._meta(plan))

    def _meta(self, plan: _Plan) -> dict[str, object]:
        return {
            "tenant": plan.tenant,
            "model": self.classifier.name,
            "latency_ms": round((time.perf_counter() - plan.t0) * 1000.0, 3),
            "request_id": plan.request_id,
        }

    def _emit(self, plan: _Plan, decision: Decision, event: str) -> None:
        accepts = getattr(self.audit, "accepts", None)
        if accepts is not None and not accepts(decision.status, decision.action.value):
            return  # no sink would record it: skip building the event
        h = hashlib.sha256()
        for inp in plan.inputs:
            h.update(inp.content_digest().encode())
        content = None
        if plan.policy.policy.audit.include_content:
            content = "\n\n".join(
                p for inp in plan.inputs for p in (inp.text, inp.response or "") if p
            )
        tool_name = next((i.tool_name for i in plan.inputs if i.tool_name), None)
        self._send(
            AuditEvent.for_decision(
                decision,
                event,
                content_sha256=h.hexdigest(),
                content_length=sum(i.content_length() for i in plan.inputs),
                tool_name=tool_name,
                content=content,
            )
        )

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
        self._follow_up(
            decision,
            "review",
            action,
            cached=False,
            reasoning=None,
            tool_name=tool_name,
            review=",".join(answers),
        )

    def record_override(self, decision: Decision, action: Action | str, *, reason: str) -> None:
        """Audit an adapter applying another action than ``decision``'s (say, a block where a
        regenerated response still needs rewriting): an event ``override`` under the
        decision's request id, with the action applied and the reason."""
        self._follow_up(decision, "override", action, reason=reason)

    def _follow_up(
        self, decision: Decision, event: str, action: Action | str, **fields: Any
    ) -> None:
        """An event after a decision (a review, an override), under its request id."""
        act = Action(action)
        accepts = getattr(self.audit, "accepts", None)
        if accepts is not None and not accepts(decision.status, act.value):
            return
        self._send(
            AuditEvent.for_decision(decision, event, action=act.value, latency_ms=0.0, **fields)
        )

    def ask_handler(self, decision: Decision, handler: Callable[[Decision], Any]) -> bool:
        """Put an escalated decision to an escalation handler (a callable answering True to
        approve): a handler that fails counts as a refusal; the answer is audited as a
        review. Returns whether it approved."""
        try:
            approved = bool(handler(decision))
        except Exception:
            _log.exception("escalation handler failed; blocking")
            approved = False
        self.record_review(
            decision,
            ["approve" if approved else "reject"],
            action=Action.ALLOW if approved else Action.BLOCK,
        )
        return approved

    def _send(self, ev: AuditEvent) -> None:
        try:
            self.audit.emit(ev)
        except Exception:
            _log.exception("audit sink failed for a %s event of %s", ev.event, ev.request_id)

    def _schedule_reasoning(self, plan: _Plan, decision: Decision) -> None:
        """Audit mode: the decision stands; a reasoning run adds its trace to the audit log."""
        with self._bg_lock:
            if self._background is None:
                self._background = ThreadPoolExecutor(1, thread_name_prefix="guard-reasoning")
            fut = self._background.submit(self._reasoning_run, plan, decision)
            self._pending_bg.add(fut)
        fut.add_done_callback(self._forget)

    def _forget(self, fut: Future[None]) -> None:
        with self._bg_lock:
            self._pending_bg.discard(fut)

    def _reasoning_run(self, plan: _Plan, decision: Decision) -> None:
        rplan = _Plan(
            time.perf_counter(), plan.request_id, plan.tenant, plan.surface, plan.policy, []
        )
        self._add_items(rplan, plan.items, reasoning=True, lookup=False)
        # The reasoning run is not bound by the interactive time budget.
        try:
            outputs: list[ClassifierResult] | BaseException = self.classifier.classify(
                rplan.requests
            )
        except Exception as err:
            outputs = err
        self._absorb(rplan, outputs, enforce_budget=False)
        self._emit(rplan, self._decide(rplan), "reasoning")


_TEXT_BLOCKS = frozenset({"text", "input_text", "output_text", "reasoning", "thinking"})


def _text_only(content: Any) -> bool:
    """Content with nothing to decode (no images, files or bytes)."""
    if isinstance(content, str):
        return True
    if isinstance(content, list):
        return all(
            isinstance(b, str) or (isinstance(b, dict) and b.get("type") in _TEXT_BLOCKS)
            for b in content
        )
    return False


def _wrap(err: BaseException) -> ClassifierError:
    wrapped = ClassifierError(f"classifier failed: {type(err).__name__}: {err}")
    wrapped.__cause__ = err
    return wrapped


def _surface(surface: Surface | str) -> Surface:
    try:
        return Surface(surface)
    except ValueError:
        valid = ", ".join(repr(s.value) for s in Surface)
        raise ValueError(f"surface {surface!r} is not one of {valid}") from None


def _normalise(content: Content, surface: Surface | str | None) -> list[SafetyInput]:
    surf = _surface(surface) if surface is not None else None
    if not isinstance(content, (str, SafetyInput, list, tuple)):
        raise TypeError(
            "Guard.check takes text, a SafetyInput or a list of them, not "
            f"{type(content).__name__}; for message content (blocks, images, files, bytes) "
            "use Guard.check_content"
        )
    if isinstance(content, str):
        if surf is Surface.RESPONSE:
            return [SafetyInput(text="", response=content, surface=Surface.RESPONSE)]
        return [SafetyInput(text=content, surface=surf or Surface.INPUT)]
    if isinstance(content, SafetyInput):
        items = [content]
    else:
        items = list(content)
        for it in items:
            if not isinstance(it, SafetyInput):
                raise TypeError(
                    "Guard.check takes text, a SafetyInput or a list of them, "
                    f"not {type(it).__name__}"
                )
    if surf is not None:
        for it in items:
            if it.surface is not surf:
                raise ValueError(
                    f"a SafetyInput for surface '{it.surface.value}' "
                    f"was passed with surface='{surf.value}'"
                )
    elif len({it.surface for it in items}) > 1:
        raise ValueError("all SafetyInputs of one check must have the same surface")
    return items
