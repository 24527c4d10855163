"""``guard-plugin serve``: the content-safety endpoint (:mod:`guard_plugin.serve`) under
uvicorn."""

from __future__ import annotations

import argparse
import logging

from guard_plugin.check import Guard
from guard_plugin.classifiers.registry import spec_from_env
from guard_plugin.cli.common import EXIT_OK, note_if_scripted
from guard_plugin.errors import ConfigError

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from guard_plugin.serve import KEYS_ENV, build_app, load_keys
    except ImportError as err:
        raise ConfigError(
            f"guard-plugin serve needs Starlette and uvicorn ({err.name} is missing): "
            "pip install 'guard-plugin[serve]'"
        ) from None
    spec = spec_from_env(args.classifier, where="guard-plugin serve")
    note_if_scripted(spec, "note: verdicts come from the scripted stand-in, NOT a safety model.")
    # a server's log is its audit trail: every decision as a JSON line on stderr (allowed
    # checks too with --audit-all), and the library's warnings
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit = logging.getLogger("guard_plugin.audit")
    audit.addHandler(handler)
    audit.setLevel(logging.DEBUG if args.audit_all else logging.INFO)
    audit.propagate = False
    logging.getLogger("guard_plugin").setLevel(logging.WARNING)
    guard = Guard(spec, policies=args.policies or "builtin")
    keys = None
    if not args.no_auth:
        keys = load_keys(args.keys, guard.policies.tenants())
        if not keys:
            guard.close()
            raise ConfigError(
                f"no API keys: give --keys FILE (tenant: key) or set {KEYS_ENV} "
                "(tenant=key,...); --no-auth serves without keys, for a private network only"
            )
    app = build_app(
        guard, keys=keys, served_model=args.served_model_name, max_body_bytes=args.max_body_bytes
    )
    print(
        f"guard-plugin serve: {guard.classifier.name}, tenants "
        f"{', '.join(sorted(keys)) if keys else '(no keys: X-Tenant-Id or the default)'}, "
        f"on http://{args.host}:{args.port}/v1",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=args.grace_s,
    )
    return EXIT_OK
