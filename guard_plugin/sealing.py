"""Sealed records: content held for review travels through state, checkpoints and streams as
an opaque token that nobody without the key can read, forge or move.

A record is encrypted and authenticated with ``cryptography``'s Fernet (AES-128-CBC with
HMAC-SHA256; :class:`~cryptography.fernet.MultiFernet` for key rotation) and bound to where
it was made: the thread, the tenant and the message it stands for. Opening checks all three,
so a record copied into another thread, tenant or message is refused like a forged one. A
record that cannot be opened is never trusted: the caller keeps the content withheld and
audits it.

Keys come from :data:`SEAL_KEY_ENV` (comma-separated Fernet keys, newest first: the first
seals, all open) or from the ``keys`` argument. Without either, the process makes a key of
its own: records then open only in the process that sealed them (a restart, or another
replica behind a load balancer, withholds what was held: set the variable in production).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from guard_plugin.errors import ConfigError, GuardError

__all__ = [
    "REVIEW_KEY_ENV",
    "SEAL_KEY_ENV",
    "SealError",
    "Sealer",
    "default_sealer",
    "new_seal_key",
    "open_review",
    "review_sealer",
    "sign_review",
]

SEAL_KEY_ENV = "GUARD_PLUGIN_SEAL_KEY"
#: the reviewers' key (or keys, newest first): where it is set, a review answer counts only
#: when it was sealed with it (:func:`sign_review`)
REVIEW_KEY_ENV = "GUARD_PLUGIN_REVIEW_KEY"
_PREFIX = "guard_plugin-sealed-v2:"
_log = logging.getLogger("guard_plugin")


class SealError(GuardError):
    """A sealed record that cannot be trusted: not a record, sealed with another key, changed
    since, expired, or bound to another thread, tenant or message."""


def new_seal_key() -> str:
    """A fresh key for :data:`SEAL_KEY_ENV` (``python -c "from guard_plugin.sealing import
    new_seal_key; print(new_seal_key())"``)."""
    return Fernet.generate_key().decode("ascii")


def _fernet(key: str | bytes) -> Fernet:
    try:
        return Fernet(key.strip() if isinstance(key, (str, bytes)) else key)
    except (ValueError, TypeError):
        raise ConfigError(
            f"a seal key must be 32 url-safe base64-encoded bytes (as {SEAL_KEY_ENV} holds); "
            "make one with: python -c 'from guard_plugin.sealing import new_seal_key; "
            "print(new_seal_key())'"
        ) from None


class Sealer:
    """Seals and opens records with authenticated encryption.

    ``keys``: one key or several (newest first: the first seals, every one opens, so keys can
    be rotated without losing what is held). ``ttl_s``: records older than this do not open
    (``None``: no age limit)."""

    def __init__(
        self, keys: str | bytes | Sequence[str | bytes] | None = None, *, ttl_s: int | None = None
    ) -> None:
        self.ephemeral = keys is None
        if keys is None:
            keys = [Fernet.generate_key()]
        elif isinstance(keys, (str, bytes)):
            text = keys.decode("ascii") if isinstance(keys, bytes) else keys
            keys = [k for k in text.split(",") if k.strip()]
        if not keys:
            raise ConfigError(f"no seal key given; {SEAL_KEY_ENV} holds one or more keys")
        self._fernet = MultiFernet([_fernet(k) for k in keys])
        self.ttl_s = ttl_s

    def seal(self, payload: Mapping[str, Any], *, bind: Mapping[str, str | None]) -> str:
        """``payload`` (JSON-serialisable) sealed and bound to ``bind``."""
        body = json.dumps({"bind": _bind(bind), "payload": dict(payload)}, separators=(",", ":"))
        return _PREFIX + self._fernet.encrypt(body.encode("utf-8")).decode("ascii")

    def open(self, token: Any, *, bind: Mapping[str, str | None]) -> dict[str, Any]:
        """The payload of a record sealed with this key and bound to ``bind``; raises
        :class:`SealError` for anything else."""
        if not isinstance(token, str) or not token.startswith(_PREFIX):
            raise SealError("not a sealed record")
        try:
            raw = self._fernet.decrypt(token[len(_PREFIX) :].encode("ascii"), ttl=self.ttl_s)
        except (InvalidToken, UnicodeEncodeError):
            raise SealError(
                "the record was not sealed with this deployment's key, was changed, or expired"
            ) from None
        body = json.loads(raw)
        if body.get("bind") != _bind(bind):
            raise SealError("the record belongs to another thread, tenant or message")
        payload: dict[str, Any] = body["payload"]
        return payload


def _bind(bind: Mapping[str, str | None]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in sorted(bind.items())}


_DEFAULT: Sealer | None = None
_DEFAULT_LOCK = threading.Lock()


def default_sealer() -> Sealer:
    """The process's sealer: keys from :data:`SEAL_KEY_ENV`, else a key of this process's own
    (logged once: held records then do not survive a restart)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            keys = os.environ.get(SEAL_KEY_ENV, "").strip()
            _DEFAULT = Sealer(keys or None)
            if not keys:
                _log.info(
                    "%s is not set: content held for review is sealed with a key of this "
                    "process only, and stays withheld after a restart or on another replica",
                    SEAL_KEY_ENV,
                )
        return _DEFAULT


# -- signed review answers ------------------------------------------------------------------------
#
# An escalation pauses a run until someone resumes it with the reviewer's answers. Whoever may
# resume the run (in a chat UI that talks to the agent server, the user who wrote the content)
# could otherwise approve it. With a reviewers' key, the answers count only when the reviewers'
# tool sealed them with that key for that escalation (its request id and tenant).


def review_sealer(keys: str | bytes | Sequence[str | bytes] | None = None) -> Sealer | None:
    """The sealer that opens review answers: ``keys``, else :data:`REVIEW_KEY_ENV`; None when
    neither is set (answers are then taken as sent)."""
    if keys is None:
        keys = os.environ.get(REVIEW_KEY_ENV, "").strip() or None
    return None if keys is None else Sealer(keys)


def _review_bind(request_id: Any, tenant: Any) -> dict[str, str | None]:
    return {"review_of": str(request_id), "tenant": None if tenant is None else str(tenant)}


def sign_review(
    payload: Mapping[str, Any],
    decisions: Sequence[Mapping[str, Any]],
    key: str | bytes | Sequence[str | bytes],
) -> dict[str, Any]:
    """The value to resume an escalation with: ``decisions`` (LangChain's human-in-the-loop
    answers, one per action request) sealed with the reviewers' ``key`` for the escalation
    whose interrupt value is ``payload``. For the reviewers' tool, which alone holds the key."""
    safety = payload.get("safety") if isinstance(payload, Mapping) else None
    if not isinstance(safety, Mapping):
        safety = {}
    request_id = safety.get("request_id")
    if not request_id:
        raise ValueError(
            "sign_review needs the escalation's interrupt value, whose 'safety' names its "
            "request_id"
        )
    answers = [dict(d) for d in decisions]
    token = Sealer(key).seal(
        {"decisions": answers}, bind=_review_bind(request_id, safety.get("tenant"))
    )
    return {"decisions": answers, "review_seal": token}


def open_review(
    sealer: Sealer, resume: Any, *, request_id: str | None, tenant: str | None
) -> list[Any]:
    """The answers sealed in ``resume`` for the escalation ``request_id`` of ``tenant``;
    raises :class:`SealError` when there are none that open (unsigned, another key or
    escalation, changed)."""
    token = resume.get("review_seal") if isinstance(resume, Mapping) else None
    if not request_id:
        raise SealError("the escalation has no request id to bind its answers to")
    payload = sealer.open(token, bind=_review_bind(request_id, tenant))
    answers = payload.get("decisions")
    if not isinstance(answers, list):
        raise SealError("the sealed review holds no answers")
    return answers
