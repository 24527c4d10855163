"""``guard-plugin serve``: guard_plugin as an OpenAI-compatible content-safety endpoint.

It takes chat completion requests shaped like those NeMo Guardrails (and any client of vLLM,
SGLang or NIM) sends the content-safety model: a user turn (text, or parts with images as
data URLs), optionally the assistant's answer, ``chat_template_kwargs``. Each request is
checked by a :class:`~guard_plugin.Guard` under the tenant its API key names (category
suppression, custom categories, thresholds, ``on_error``, the shared batching classifier,
the verdict cache, the audit), and answered in Nemotron's verdict format, so that a client's
own parser reads the tenant's decision: ``User Safety`` (and ``Response Safety``) are
``unsafe`` exactly when the tenant's policy does not allow the content. The decision itself
rides along in a ``guard_plugin`` field that OpenAI clients ignore.

The server decides nothing itself and keeps no state between requests: run as many behind a
load balancer as the classifier can feed (docs/serving.md). Starlette and uvicorn do the HTTP
(``pip install 'guard-plugin[serve]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from guard_plugin.check import Guard
from guard_plugin.decision import Decision
from guard_plugin.errors import ConfigError, UnknownTenantError
from guard_plugin.media import content_text
from guard_plugin.media.formats import call_text, read_call
from guard_plugin.policy import check_tenant_id
from guard_plugin.types import Action, Surface

__all__ = ["KEYS_ENV", "build_app", "load_keys", "verdict_text"]

KEYS_ENV = "GUARD_PLUGIN_SERVE_KEYS"
DEFAULT_MAX_BODY = 64 * 2**20


def load_keys(path: str | os.PathLike[str] | None, known: list[str]) -> dict[str, str]:
    """API keys by tenant: a YAML or JSON file mapping tenant -> key (``path``), else
    ``$GUARD_PLUGIN_SERVE_KEYS`` as ``tenant=key,tenant=key``. Keys never live in policy files.
    Every tenant must have a policy and every key 16 characters or more."""
    keys: dict[str, str] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read the key file {path}: {err}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: the key file maps each tenant to its API key")
        keys = {str(t): str(k) for t, k in data.items()}
    else:
        raw = os.environ.get(KEYS_ENV, "")
        for item in filter(None, (p.strip() for p in raw.split(","))):
            tenant, sep, key = item.partition("=")
            if not sep:
                raise ConfigError(f"{KEYS_ENV}: write tenant=key pairs separated by commas")
            keys[tenant.strip()] = key.strip()
    for tenant, key in keys.items():
        check_tenant_id(tenant)
        if tenant not in known:
            raise ConfigError(
                f"the key file names tenant '{tenant}', which has no policy; "
                f"known tenants: {', '.join(known)}"
            )
        if len(key) < 16:
            raise ConfigError(f"the API key of tenant '{tenant}' is shorter than 16 characters")
    if len(set(keys.values())) != len(keys):
        raise ConfigError("two tenants share an API key; give each its own")
    return keys


def verdict_text(d: Decision, *, categories: bool = True) -> str:
    """The tenant's decision in Nemotron's output format: the checked turn is ``unsafe``
    exactly when the decision does not allow it (a block, rewrite or escalation, or an error
    that ``on_error`` blocks)."""
    label = "safe" if d.action is Action.ALLOW else "unsafe"
    lines = []
    if d.surface is Surface.RESPONSE:
        user = next((p.verdict.user_safety for p in d.parts if p.verdict is not None), "safe")
        lines += [f"User Safety: {user}", f"Response Safety: {label}"]
    else:
        lines.append(f"User Safety: {label}")
    if categories and label == "unsafe" and d.categories:
        lines.append("Safety Categories: " + ", ".join(d.categories))
    return "\n".join(lines)


class _Refused(Exception):
    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


def _turns(body: Any) -> tuple[Any, Any]:
    """The user turn's content and the assistant's answer (if any) of a request body."""
    if not isinstance(body, Mapping):
        raise _Refused(400, "the body is a JSON object with 'messages'", "invalid_request_error")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refused(400, "'messages' is a list with the user turn", "invalid_request_error")
    user: Any = None
    answer: Any = None
    for m in messages:
        if not isinstance(m, Mapping) or m.get("role") not in ("user", "assistant", "system"):
            raise _Refused(
                400,
                "each message has a role (user, assistant) and content",
                "invalid_request_error",
            )
        if m["role"] == "user":
            user, answer = m.get("content"), None
        elif m["role"] == "assistant":
            answer = _answer(m)
    if user is None:
        raise _Refused(400, "the request has no user turn to check", "invalid_request_error")
    return user, answer


def _answer(message: Mapping[str, Any]) -> Any:
    """An assistant message as content to check: its content as sent (parts are read as the
    guard reads any content, so a part it cannot read is no verdict rather than passed over),
    and each tool call it asks for, written as a call."""
    content = message.get("content")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _Refused(400, "'tool_calls' is a list", "invalid_request_error")
    said = []
    for call in calls:
        read = read_call(call)
        if read is None or not isinstance(call.get("function"), Mapping):
            raise _Refused(
                400, "each tool call has a 'function' with a name", "invalid_request_error"
            )
        said.append(call_text(*read[:2]))
    if not said:
        return content if content is not None else ""
    if isinstance(content, list):
        blocks = list(content)
    else:
        blocks = [{"type": "text", "text": content}] if content else []
    return [*blocks, *({"type": "text", "text": s} for s in said)]


def build_app(
    guard: Guard,
    *,
    keys: Mapping[str, str] | None,
    served_model: str = "guard-plugin",
    max_body_bytes: int = DEFAULT_MAX_BODY,
) -> Any:
    """The ASGI app. ``keys``: API key by tenant; ``None`` serves without keys (the tenant is
    the request's ``X-Tenant-Id`` header, else the default policy)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    ep = _Endpoint(guard, keys, served_model, max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        guard.close()  # after uvicorn has finished the checks in flight

    return Starlette(
        routes=[
            Route("/v1/chat/completions", ep.completions, methods=["POST"]),
            Route("/v1/models", ep.models, methods=["GET"]),
            Route("/health", ep.live, methods=["GET"]),
            Route("/health/ready", ep.ready, methods=["GET"]),
            Route("/v1/health/ready", ep.ready, methods=["GET"]),
            Route("/v1/stats", ep.stats, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _error(status: int, message: str, kind: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


class _Endpoint:
    """The routes of :func:`build_app`."""

    def __init__(
        self,
        guard: Guard,
        keys: Mapping[str, str] | None,
        served_model: str,
        max_body_bytes: int,
    ) -> None:
        self.guard = guard
        self.keys = keys
        self.by_key = {k: t for t, k in (keys or {}).items()}
        self.served_model = served_model
        self.max_body_bytes = max_body_bytes

    def tenant_of(self, request: Any) -> str | None:
        asked = request.headers.get("x-tenant-id")
        if self.keys is None:
            return str(asked) if asked else None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Refused(401, "send the tenant's API key as 'Authorization: Bearer KEY'", "auth")
        tenant = next((t for k, t in self.by_key.items() if hmac.compare_digest(k, token)), None)
        if tenant is None:
            raise _Refused(401, "unknown API key", "auth")
        if asked is not None and asked != tenant:
            raise _Refused(403, "this key may not use another tenant's policy", "permission")
        return tenant

    async def read(self, request: Any) -> Any:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        too_large = _Refused(413, f"the request is over {limit:,} bytes", "too_large")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Refused(400, "the body is not JSON", "invalid_request_error") from None
        except RecursionError:
            raise _Refused(
                400, "the body's JSON is nested too deeply", "invalid_request_error"
            ) from None

    async def decide(self, request: Any) -> tuple[Decision, Mapping[str, Any]]:
        tenant = self.tenant_of(request)
        body = await self.read(request)
        user, answer = _turns(body)
        kwargs = body.get("chat_template_kwargs") or {}
        if answer is None:
            d = await self.guard.acheck_content(user, surface=Surface.INPUT, tenant=tenant)
        else:
            d = await self.guard.acheck_content(
                answer, surface=Surface.RESPONSE, tenant=tenant, context=content_text(user)
            )
        return d, kwargs if isinstance(kwargs, Mapping) else {}

    async def completions(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        try:
            d, kwargs = await self.decide(request)
        except _Refused as refused:
            return _error(refused.status, str(refused), refused.kind)
        except UnknownTenantError as err:
            return _error(403, str(err), "permission")
        text = verdict_text(d, categories=kwargs.get("request_categories") != "/no_categories")
        message = {"role": "assistant", "content": text}
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.served_model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "guard_plugin": {
                    "action": d.action.value,
                    "status": d.status,
                    "surface": d.surface.value,
                    "categories": list(d.categories),
                    "score": d.score,
                    "error_kind": d.error_kind,
                    "policy_id": d.policy_id,
                    "policy_version": d.policy_version,
                    "request_id": d.request_id,
                },
            }
        )

    async def models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        entry = {"id": self.served_model, "object": "model", "owned_by": "guard-plugin"}
        return JSONResponse({"object": "list", "data": [entry]})

    async def live(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"})

    async def ready(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        health = getattr(self.guard.classifier, "health", None)
        ok = True if health is None else bool(await asyncio.to_thread(health))
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def stats(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        try:
            self.tenant_of(request)
        except _Refused as refused:
            return _error(refused.status, str(refused), refused.kind)
        found = getattr(self.guard.classifier, "stats", None)
        return JSONResponse({"classifier": self.guard.classifier.name, "stats": dict(found or {})})
