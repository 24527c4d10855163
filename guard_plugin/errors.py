"""The exception tree, split by whose fault an error is.

::

    GuardError
    ├── ConfigError (also ValueError)      the caller's configuration: fix and reload
    │   ├── PolicyError                    a policy file or object is invalid
    │   ├── UnknownTenantError             no policy for a tenant and no default allowed
    │   └── ModelLoadError                 a model folder or endpoint spec is unusable
    ├── ClassifierError                    run time: becomes a decision through on_error
    │   ├── ClassifierTimeout              the time budget ran out
    │   ├── ClassifierUnavailable          the backend cannot be reached or failed
    │   ├── QueueFullError                 back-pressure: too many requests in flight
    │   ├── InjectionDetected              untrusted text still produced control tokens
    │   └── VerdictParseError              the model's output is malformed
    ├── MediaError                         an image or document could not be used
    │   └── UnverifiableMedia              content the guard may not or cannot look at
    └── GuardBlocked                       raised by adapters that opt into raising

Configuration errors are raised when a policy or classifier is loaded. Run-time errors never
escape :meth:`Guard.check`: they become a :class:`~guard_plugin.Decision` through the tenant's
``on_error`` and are audited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guard_plugin.decision import Decision

__all__ = [
    "ClassifierError",
    "ClassifierTimeout",
    "ClassifierUnavailable",
    "ConfigError",
    "GuardBlocked",
    "GuardError",
    "InjectionDetected",
    "InvalidTenantError",
    "MediaError",
    "ModelLoadError",
    "PolicyError",
    "QueueFullError",
    "UnknownTenantError",
    "UnverifiableMedia",
    "VerdictParseError",
]


class GuardError(Exception):
    """Base of every error guard_plugin raises on purpose."""

    #: short machine-readable kind, used in decisions and audit events
    kind: str = "error"


class ConfigError(GuardError, ValueError):
    """A configuration mistake; the message says what to fix."""

    kind = "config"


class PolicyError(ConfigError):
    """An invalid policy. ``source`` names the file (or object) and ``field`` the field."""

    kind = "policy"

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        field: str | None = None,
        problems: list[tuple[str | None, str]] | None = None,
    ):
        self.source = source
        self.field = field
        #: every problem found, as (field or None, message)
        self.problems = problems if problems is not None else [(field, message)]
        prefix = ""
        if source:
            prefix += f"{source}: "
        if field:
            prefix += f"field '{field}': "
        super().__init__(prefix + message)


class UnknownTenantError(ConfigError):
    """A tenant id with no policy of its own, where the store refuses such tenants."""

    kind = "unknown_tenant"


class InvalidTenantError(UnknownTenantError):
    """A tenant id that can never name a policy (see ``guard_plugin.policy.TENANT_ID``)."""

    kind = "invalid_tenant"


class ModelLoadError(ConfigError):
    kind = "model_load"


class ClassifierError(GuardError):
    """The classifier could not produce a usable verdict for a request."""

    kind = "classifier"


class ClassifierTimeout(ClassifierError):
    kind = "timeout"


class ClassifierUnavailable(ClassifierError):
    kind = "unavailable"


class QueueFullError(ClassifierError):
    kind = "queue_full"


class InjectionDetected(ClassifierError):
    kind = "injection"


class VerdictParseError(ClassifierError):
    """The model's output does not follow the verdict format. ``raw`` holds it unchanged."""

    kind = "parse"

    def __init__(self, message: str, raw: str):
        self.raw = raw
        shown = raw if len(raw) <= 200 else raw[:200] + "..."
        super().__init__(f"{message} (model output: {shown!r})")


class MediaError(GuardError):
    """An image or document part cannot be decoded or exceeds the policy's limits."""

    kind = "media"


class UnverifiableMedia(MediaError):
    """Content the guard is not allowed to (or cannot) inspect: a remote URL it may not fetch,
    a file-id reference, pages past the page limit. Decided by ``media.unverifiable``."""

    kind = "unverifiable"


class GuardBlocked(GuardError):
    """Raised by adapters configured to raise; carries the :class:`Decision`."""

    kind = "blocked"

    def __init__(self, decision: Decision, message: str | None = None):
        self.decision = decision
        cats = ", ".join(decision.categories) or "no category"
        super().__init__(
            message or f"guard_plugin {decision.action.value} on {decision.surface.value} ({cats})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.decision, str(self)))
