"""The ``guard-plugin`` command.

::

    guard-plugin check [--text T] [--image PATH ...] [--file PATH ...] [--response R]
                       [--surface S] [--tenant T] [--policies DIR|FILE|builtin]
                       [--classifier SPEC] [--json]
    guard-plugin policy validate PATH [PATH ...]
    guard-plugin demo [--classifier SPEC] [--svg PATH]
    guard-plugin --version

Exit codes (also in ``--help``): 0 allowed / valid, 1 not allowed (block, rewrite or escalate)
/ invalid policy, 2 usage or configuration error (the message says what to fix), 3 internal
failure. ``check`` reads the classifier from ``--classifier`` or ``GUARD_PLUGIN_CLASSIFIER``
and stops with exit 2 when neither is set; ``--classifier scripted`` runs the scripted
stand-in, a test double that is not a safety model, and says so on standard error.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guard_plugin.errors import ConfigError, GuardError, MediaError

__all__ = ["main"]

EXIT_OK, EXIT_NOT_ALLOWED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

_EPILOG = """\
exit codes:
  0  allowed (check) / every policy valid (policy validate)
  1  not allowed: block, rewrite or escalate (check) / a policy is invalid (policy validate)
  2  usage or configuration error; the message says what to fix
  3  internal failure

The classifier comes from --classifier or GUARD_PLUGIN_CLASSIFIER, e.g.
  vllm://localhost:8000/v1         a vLLM server (sglang://, nim+https://, openai:// alike)
  transformers:/models/nemotron    the model in this process (pip install 'guard-plugin[local]')
  scripted                         the scripted stand-in: a test double, NOT a safety model
"""


def _version() -> str:
    from guard_plugin import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="guard-plugin",
        description="Nemotron Content Safety guardrails",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"guard-plugin {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser(
        "check",
        help="classify content and print the decision",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--text", default="", help="user-side text (a user turn or a tool result)")
    c.add_argument(
        "--image", type=Path, action="append", default=[], help="an image file (repeatable)"
    )
    c.add_argument(
        "--file",
        type=Path,
        action="append",
        default=[],
        help="a PDF, image or text file, checked as a tool result or upload (repeatable)",
    )
    c.add_argument("--response", help="an assistant response to check (the text is its prompt)")
    c.add_argument(
        "--surface",
        choices=["input", "tool", "response"],
        help="default: input, or response with --response",
    )
    c.add_argument("--tenant", help="tenant id (policy file name)")
    c.add_argument(
        "--policies",
        help="a folder of tenant policy files, one file, or 'builtin' (the shipped examples)",
    )
    c.add_argument(
        "--classifier", help="classifier spec (default: $GUARD_PLUGIN_CLASSIFIER; required)"
    )
    c.add_argument(
        "--json", action="store_true", help="print only the decision as JSON (for scripts)"
    )

    d = sub.add_parser("demo", help="run a guarded agent: tool call, screenshot, PDF, escalation")
    d.add_argument(
        "--classifier",
        help="classifier spec (default: $GUARD_PLUGIN_CLASSIFIER, else the scripted stand-in)",
    )
    d.add_argument("--svg", type=Path, help="also save the transcript as an SVG picture")

    pol = sub.add_parser("policy", help="policy tools")
    psub = pol.add_subparsers(dest="policy_command", required=True)
    v = psub.add_parser(
        "validate", help="validate policy files or folders; reports every problem of every file"
    )
    v.add_argument("paths", nargs="+", type=Path)
    return p


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


def _summary(decision: Any) -> list[str]:
    """One line for the decision, then one per part that was not safe."""
    d = decision
    head = f"{d.action.value.upper()}  {d.surface.value}  {d.status}"
    if d.categories:
        head += f"  {', '.join(d.categories)}"
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


def _check(args: argparse.Namespace) -> int:
    from guard_plugin.classifiers.registry import spec_from_env
    from guard_plugin.guard import Guard
    from guard_plugin.types import Surface

    spec = spec_from_env(args.classifier, where="guard-plugin check")
    if spec.split(":", 1)[0] == "scripted":
        print(
            "note: verdicts come from the scripted stand-in (a test double), NOT a safety model.",
            file=sys.stderr,
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
        decision = guard.check_content(
            content, surface=surface, tenant=args.tenant, context=args.text
        )
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(_summary(decision)))
    return EXIT_OK if decision.allowed else EXIT_NOT_ALLOWED


def _validate(args: argparse.Namespace) -> int:
    from guard_plugin.errors import PolicyError
    from guard_plugin.policy import load_policy

    failed = 0
    for path in args.paths:
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        if not files:
            failed += 1
            print(f"FAIL {path}: no *.yaml or *.yml policy files in this folder")
        for f in files:
            try:
                pol = load_policy(f)
            except PolicyError as err:
                failed += 1
                print(f"FAIL {err}")
            else:
                print(f"ok   {f}: policy '{pol.id}' version {pol.version}")
    return EXIT_NOT_ALLOWED if failed else EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    import os

    try:
        from guard_plugin.demo import run_demo
    except ImportError as err:
        raise ConfigError(
            f"the demo needs LangChain and LangGraph ({err.name} is missing): "
            "pip install 'guard-plugin[langchain,langgraph]'"
        ) from None
    spec = args.classifier or os.environ.get("GUARD_PLUGIN_CLASSIFIER")
    if args.svg is None:
        return run_demo(spec)
    from rich.console import Console

    console = Console(record=True, width=100)
    code = run_demo(spec, console=console)
    console.save_svg(str(args.svg), title="guard-plugin demo")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "demo":
            return _demo(args)
        return _validate(args)
    except (ConfigError, MediaError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except GuardError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as err:
        print(
            f"internal error: {type(err).__name__}: {err} (please report it with the command)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
