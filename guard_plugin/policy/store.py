"""Policies from files: one file per tenant in a folder (the file name is the tenant id), plus
``default.yaml`` for tenants without a file of their own. Every problem of every file is
reported, each naming the file, the field and the fix."""

from __future__ import annotations

import difflib
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from guard_plugin import taxonomy
from guard_plugin.errors import InvalidTenantError, PolicyError, UnknownTenantError
from guard_plugin.policy.compiled import CompiledPolicy, compile_policy
from guard_plugin.policy.schema import Policy
from guard_plugin.types import Surface

__all__ = [
    "AUTH_TENANT_PREFIX",
    "NO_AUTH_TENANT",
    "TENANT_ID",
    "PolicyStore",
    "builtin_policies",
    "check_tenant_id",
    "load_policy",
    "policy_from_mapping",
    "resolve_tenant",
]

_log = logging.getLogger("guard_plugin")

#: What a tenant id may be: a letter or digit, then up to 127 letters, digits, ``_``, ``-``
#: or ``.`` (no ``..``). File names of policy folders follow the same rule.
TENANT_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126})")

UnknownTenant = Literal["error", "on_error", "default"]


def check_tenant_id(tenant: Any) -> str:
    """``tenant`` if it is a valid tenant id; raises :class:`UnknownTenantError` saying why
    it is not (an id that can never name a policy is refused like an unknown one)."""
    if not isinstance(tenant, str):
        raise InvalidTenantError(f"a tenant id is a string, not {type(tenant).__name__}")
    if not TENANT_ID.fullmatch(tenant) or ".." in tenant:
        shown = tenant if len(tenant) <= 40 else tenant[:40] + "..."
        raise InvalidTenantError(
            f"invalid tenant id {shown!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return tenant


def _problem(error: Any) -> tuple[str | None, str]:
    """One pydantic error as (field, message-with-the-fix)."""
    loc = ".".join(str(p) for p in error["loc"]) or None
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = error["loc"][:-1]
        model: type[BaseModel] = Policy
        for part in parent:
            sub = model.model_fields.get(str(part))
            ann = getattr(sub, "annotation", None) if sub else None
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                model = ann
        allowed = ", ".join(model.model_fields)
        return loc, f"unknown key; allowed keys here are: {allowed}"
    if kind in ("enum", "literal_error"):
        return loc, str(error["msg"])
    msg = str(error["msg"]).removeprefix("Value error, ")
    # Policy-level checks start their message with the field they are about.
    head, sep, rest = msg.partition(": ")
    if loc is None and sep and head.replace(".", "").replace("_", "").isalnum():
        loc, msg = head, rest
    return loc, msg


def _category_problems(data: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Unknown category names in a policy that failed validation for other reasons (the
    policy-level check runs only on an otherwise valid policy): every problem at once."""
    if data.get("custom_policy") is not None:
        return []
    custom = data.get("custom_categories") or []
    declared = {
        taxonomy.category_key(str(c.get("name", ""))) for c in custom if isinstance(c, Mapping)
    }
    places: list[tuple[str, Any]] = [("categories_off", data.get("categories_off"))]
    actions = data.get("actions")
    if isinstance(actions, Mapping):
        places.append(("actions.categories", actions.get("categories")))
        for s in Surface:
            surface = actions.get(s.value)
            if isinstance(surface, Mapping):
                places.append((f"actions.{s.value}.categories", surface.get("categories")))
    known = [c.name for c in taxonomy.CATEGORIES]
    problems: list[tuple[str | None, str]] = []
    for where, names in places:
        for name in names if isinstance(names, (list, tuple, Mapping)) else ():
            if (
                taxonomy.lookup(str(name)) is None
                and taxonomy.category_key(str(name)) not in declared
            ):
                near = difflib.get_close_matches(str(name), known, n=1)
                hint = f" Did you mean '{near[0]}'?" if near else ""
                problems.append(
                    (
                        where,
                        f"unknown category '{name}'.{hint} Known categories: "
                        f"{', '.join(known)}; or declare it under custom_categories",
                    )
                )
    return problems


def _format_validation_error(
    err: ValidationError, source: str, data: Mapping[str, Any] | None = None
) -> PolicyError:
    problems = [_problem(e) for e in err.errors()]
    if data is not None and not any("unknown category" in m for _, m in problems):
        problems += _category_problems(data)
    if len(problems) == 1:
        loc, msg = problems[0]
        return PolicyError(msg, source=source, field=loc, problems=problems)
    listed = "\n".join("  - " + (f"field '{loc}': " if loc else "") + msg for loc, msg in problems)
    return PolicyError(f"{len(problems)} problems:\n{listed}", source=source, problems=problems)


def policy_from_mapping(
    data: Any, *, source: str = "<policy>", default_id: str | None = None
) -> Policy:
    """Build a :class:`Policy` from parsed YAML/JSON, with errors that name source and field.
    Every problem is reported, not only the first."""
    if data is None:
        raise PolicyError(
            "the policy is empty; a policy file holds at least its actions "
            "(see guard_plugin/policy/builtin/default.yaml)",
            source=source,
        )
    if not isinstance(data, Mapping):
        raise PolicyError(
            f"a policy must be a mapping of fields, not {type(data).__name__}", source=source
        )
    data = dict(data)
    if default_id is not None:
        file_id = data.get("id")
        if file_id is not None and str(file_id) != default_id:
            raise PolicyError(
                f"id '{file_id}' differs from the file name '{default_id}'; "
                "rename the file or remove the id",
                source=source,
                field="id",
            )
        data.setdefault("id", default_id)
    try:
        return Policy.model_validate(data)
    except ValidationError as err:
        raise _format_validation_error(err, source, data) from None


def load_policy(path: str | Path) -> Policy:
    """Load one policy file. Raises :class:`PolicyError` naming the file, the field and the fix."""
    p = Path(path)
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(f"cannot read the file: {err}", source=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise PolicyError(f"invalid YAML{where}: {problem}", source=source) from None
    stem = p.stem
    return policy_from_mapping(data, source=source, default_id=stem)


def builtin_policies() -> Path:
    """The folder of example policies shipped with the package (``default``, ``devops``,
    ``healthcare``, ``kids_education``), wherever it is installed."""
    from importlib import resources

    return Path(str(resources.files("guard_plugin.policy") / "builtin"))


class PolicyStore:
    """Compiled policies by tenant.

    ``unknown_tenant`` says what a tenant id without a policy of its own gets (a typo must not
    quietly weaken the policy):

    - ``"error"`` (the default where the store names tenants): the check is refused, a
      blocking ``unknown_tenant`` decision whose error names the known tenants, audited and
      logged;
    - ``"on_error"``: a decision through the default policy's ``on_error``;
    - ``"default"`` (the default for a store of one policy for everyone): the default
      policy, with a warning logged once per unknown id.

    Tenant ids are validated (:data:`TENANT_ID`) wherever they arrive: an invalid one is
    refused in every mode.
    """

    def __init__(
        self,
        policies: Mapping[str, Policy] | Iterable[Policy] = (),
        *,
        default: Policy | None = None,
        unknown_tenant: UnknownTenant | None = None,
    ) -> None:
        items = policies.items() if isinstance(policies, Mapping) else ((p.id, p) for p in policies)
        self._compiled: dict[str, CompiledPolicy] = {t: compile_policy(p) for t, p in items}
        for t in self._compiled:
            try:
                check_tenant_id(t)
            except UnknownTenantError as err:
                raise PolicyError(str(err), field="id") from None
        if unknown_tenant is None:
            named = set(self._compiled) - {"default"}
            unknown_tenant = "error" if named else "default"
        if unknown_tenant not in ("error", "on_error", "default"):
            raise PolicyError(
                "unknown_tenant must be 'error', 'on_error' or 'default'", field="unknown_tenant"
            )
        if default is None:
            default = self._compiled["default"].policy if "default" in self._compiled else Policy()
        self._default = compile_policy(default)
        self.unknown_tenant: UnknownTenant = unknown_tenant
        self._announced: set[str] = set()
        self._announce_lock = threading.Lock()

    @classmethod
    def from_dir(
        cls, path: str | Path, *, unknown_tenant: UnknownTenant | None = None
    ) -> PolicyStore:
        """Load every ``*.yaml`` / ``*.yml`` in a folder; ``default.yaml`` is the default.
        ``"builtin"`` is the example folder shipped with the package.

        Every file is read before anything is refused: the error lists each bad file with
        each of its problems."""
        folder = builtin_policies() if str(path) == "builtin" else Path(path)
        if not folder.is_dir():
            raise PolicyError("not a folder of policy files", source=str(folder))
        files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        policies: dict[str, Policy] = {}
        errors: list[PolicyError] = []
        for f in files:
            try:
                check_tenant_id(f.stem)
            except UnknownTenantError as err:
                errors.append(PolicyError(f"the file name is the tenant id: {err}", source=str(f)))
                continue
            if f.stem in policies:
                errors.append(PolicyError(f"two files for tenant '{f.stem}'", source=str(f)))
                continue
            try:
                policies[f.stem] = load_policy(f)
            except PolicyError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            listed = "\n".join(str(e) for e in errors)
            raise PolicyError(
                f"{len(errors)} policy files are invalid:\n{listed}",
                source=str(folder),
                problems=[p for e in errors for p in e.problems],
            )
        return cls(policies, unknown_tenant=unknown_tenant)

    @property
    def default(self) -> CompiledPolicy:
        return self._default

    def tenants(self) -> list[str]:
        return sorted(self._compiled)

    def get(self, tenant: str | None = None) -> CompiledPolicy:
        """The compiled policy for a tenant (``None``: the default). Raises
        :class:`UnknownTenantError` for an invalid id, and for an unknown one unless the store
        serves the default policy to unknown tenants."""
        if tenant is None:
            return self._default
        found = self._compiled.get(tenant)
        if found is not None:
            return found
        check_tenant_id(tenant)
        if self.unknown_tenant == "default":
            self._announce(tenant)
            return self._default
        known = self.tenants()
        near = difflib.get_close_matches(tenant.lower(), [t.lower() for t in known], n=1)
        hint = (
            f" Did you mean '{known[[t.lower() for t in known].index(near[0])]}'?" if near else ""
        )
        raise UnknownTenantError(
            f"no policy for tenant '{tenant}'; known tenants: {', '.join(known) or 'none'}.{hint} "
            "Add a policy file for it, or create the store with unknown_tenant='default' to "
            "serve it the default policy"
        )

    def _announce(self, tenant: str) -> None:
        with self._announce_lock:
            if tenant in self._announced or len(self._announced) >= 1024:
                return
            self._announced.add(tenant)
        _log.warning(
            "tenant '%s' has no policy of its own; it gets the default policy "
            "(unknown_tenant='default'; known tenants: %s)",
            tenant,
            ", ".join(self.tenants()) or "none",
        )

    def get_or_default(self, tenant: str | None = None) -> CompiledPolicy:
        """The tenant's policy, or the default one for a tenant this store refuses (the
        policy whose texts answer a refused tenant's check)."""
        try:
            return self.get(tenant)
        except UnknownTenantError:
            return self._default


#: A ``tenant_key`` of ``auth:FIELD`` reads the tenant from the user the LangGraph server
#: authenticated (``configurable["langgraph_auth_user"]``, which the server sets and a client
#: cannot), never from what the client sends.
AUTH_TENANT_PREFIX = "auth:"
#: what an ``auth:`` key resolves to without an authenticated user carrying the field: no
#: tenant id can look like it, so the check is refused (``invalid_tenant``), never defaulted
NO_AUTH_TENANT = "(no tenant on the authenticated user)"


def resolve_tenant(
    explicit: str | None, context: Any, config: Mapping[str, Any] | None, key: str
) -> str | None:
    """The tenant of a check: ``explicit``, else the request context's ``key`` (an attribute
    or an item), else the run config's ``configurable[key]``. A key ``auth:FIELD`` reads only
    the authenticated user's ``FIELD`` (:data:`AUTH_TENANT_PREFIX`)."""
    if explicit is not None:
        return explicit
    if key.startswith(AUTH_TENANT_PREFIX):
        return _auth_tenant(config, key[len(AUTH_TENANT_PREFIX) :])
    if context is not None:
        value = context.get(key) if isinstance(context, Mapping) else getattr(context, key, None)
        if value is not None:
            return str(value)
    if config:
        value = (config.get("configurable") or {}).get(key)
        if value is not None:
            return str(value)
    return None


def _auth_tenant(config: Mapping[str, Any] | None, field: str) -> str:
    """``field`` of the user the LangGraph server authenticated for this run (an item or an
    attribute), else :data:`NO_AUTH_TENANT`."""
    user = ((config or {}).get("configurable") or {}).get("langgraph_auth_user")
    value: Any = None
    if user is not None and field:
        try:
            value = user[field]
        except (KeyError, TypeError, IndexError, AttributeError):
            value = getattr(user, field, None)
    return NO_AUTH_TENANT if value is None or value == "" else str(value)
