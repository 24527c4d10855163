"""``guard-plugin check``: text, images and files through a policy; a summary or JSON."""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
from pathlib import Path
from typing import Any

from guard_plugin.check import Guard
from guard_plugin.classifiers.registry import spec_from_env
from guard_plugin.cli.common import (
    EXIT_NO_VERDICT,
    EXIT_NOT_ALLOWED,
    EXIT_OK,
    note_if_scripted,
)
from guard_plugin.decision import Decision
from guard_plugin.errors import ConfigError
from guard_plugin.types import Surface

__all__ = ["run", "summary"]


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {flag} {path}: {err.strerror}") from None


def _block(path: Path, flag: str) -> dict[str, Any]:
    data = base64.b64encode(_read(path, flag)).decode("ascii")
    mime = mimetypes.guess_type(path.name)[0]
    kind = "image" if flag == "--image" else "file"
    block: dict[str, Any] = {"type": kind, "base64": data, "filename": path.name}
    if mime:
        block["mime_type"] = mime
    return block


def summary(decision: Decision) -> list[str]:
    """One line for the decision, then one per part that was not safe."""
    d = decision
    if d.is_error:
        head = f"{d.action.value.upper()}  {d.surface.value}  no verdict: {d.error}"
        head += f"  [on_error, policy {d.policy_id} v{d.policy_version}, {d.model}]"
        return [head]
    head = f"{d.action.value.upper()}  {d.surface.value}  {d.status}"
    if d.categories:
        head += f"  {', '.join(d.categories)}"
    if d.score is not None:
        head += f"  P(unsafe) {d.score:.3f}"
    if d.error:
        head += f"  ({d.error_kind}: {d.error})"
    head += f"  [policy {d.policy_id} v{d.policy_version}, {d.model}, {d.latency_ms:.1f} ms]"
    lines = [head]
    if len(d.parts) > 1:
        for p in d.parts:
            if p.status != "safe":
                what = ", ".join(p.categories) or p.error or ""
                lines.append(f"  {p.part}: {p.status}{'  ' + what if what else ''}")
    return lines


def run(args: argparse.Namespace) -> int:
    spec = spec_from_env(args.classifier, where="guard-plugin check")
    note_if_scripted(
        spec, "note: verdicts come from the scripted stand-in (a test double), NOT a safety model."
    )
    surface = (
        Surface(args.surface)
        if args.surface
        else (Surface.RESPONSE if args.response is not None else Surface.INPUT)
    )
    media = [_block(p, "--image") for p in args.image] + [_block(p, "--file") for p in args.file]
    if surface is Surface.RESPONSE:
        if args.response is None:
            raise ConfigError("--surface response needs --response (the text is its prompt)")
        if media:
            raise ConfigError("--image and --file go with the user side, not with --response")
        content: Any = args.response
    else:
        if args.response is not None:
            raise ConfigError(f"--response goes with --surface response, not {surface.value}")
        content = ([{"type": "text", "text": args.text}] if args.text else []) + media
        if not content:
            raise ConfigError("nothing to check: give --text, --image, --file or --response")
    with Guard(spec, policies=args.policies, audit=[]) as guard:
        guard.policies.get(args.tenant)  # an unknown or invalid tenant is a usage error
        decision = guard.check_content(
            content, surface=surface, tenant=args.tenant, context=args.text
        )
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(summary(decision)))
    if decision.is_error:
        return EXIT_NO_VERDICT
    return EXIT_OK if decision.allowed else EXIT_NOT_ALLOWED
