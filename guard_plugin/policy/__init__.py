"""Tenant policies: validated once when loaded, compiled once, looked up per check.

A policy file is YAML with the fields of :class:`Policy` (:mod:`.schema`); unknown keys are
errors. :func:`compile_policy` (:mod:`.compiled`) precomputes what a check needs. A folder of
policy files is a :class:`PolicyStore` (:mod:`.store`): one file per tenant (the file name is
the tenant id), plus ``default.yaml`` for tenants without a file of their own. The examples
shipped with the package are in ``builtin/`` (``PolicyStore.from_dir("builtin")``).
"""

from guard_plugin.policy.compiled import CompiledPolicy, compile_policy
from guard_plugin.policy.schema import (
    CUSTOM_POLICY_PREAMBLE,
    Actions,
    AuditOptions,
    CustomCategory,
    CustomPolicy,
    EscalationOptions,
    MediaLimits,
    Messages,
    ModelOptions,
    Policy,
    Streaming,
    SurfaceActions,
    Texts,
    Thresholds,
)
from guard_plugin.policy.store import (
    AUTH_TENANT_PREFIX,
    NO_AUTH_TENANT,
    TENANT_ID,
    PolicyStore,
    builtin_policies,
    check_tenant_id,
    load_policy,
    policy_from_mapping,
    resolve_tenant,
)

__all__ = [
    "AUTH_TENANT_PREFIX",
    "CUSTOM_POLICY_PREAMBLE",
    "NO_AUTH_TENANT",
    "TENANT_ID",
    "Actions",
    "AuditOptions",
    "CompiledPolicy",
    "CustomCategory",
    "CustomPolicy",
    "EscalationOptions",
    "MediaLimits",
    "Messages",
    "ModelOptions",
    "Policy",
    "PolicyStore",
    "Streaming",
    "SurfaceActions",
    "Texts",
    "Thresholds",
    "builtin_policies",
    "check_tenant_id",
    "compile_policy",
    "load_policy",
    "policy_from_mapping",
    "resolve_tenant",
]
