"""The ``guard-plugin`` command.

::

    guard-plugin check --text "..." [--image PATH] [--response "..."] [--tenant T]
                       [--policies DIR] [--classifier SPEC]
    guard-plugin policy validate PATH [PATH ...]
    guard-plugin demo [--classifier SPEC] [--svg PATH]

``check`` prints the decision as JSON and exits 0 when the content is allowed, 1 otherwise
(2 for a usage or configuration error). Without ``--classifier`` (or the environment variable
``GUARD_PLUGIN_CLASSIFIER``) it runs the scripted stand-in and says so on standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from guard_plugin.errors import ConfigError, GuardError, MediaError

__all__ = ["main"]

ENV_CLASSIFIER = "GUARD_PLUGIN_CLASSIFIER"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="guard-plugin", description="Nemotron Content Safety guardrails"
    )
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="classify one piece of content and print the decision")
    c.add_argument("--text", default="", help="user-side text (a user turn or a tool result)")
    c.add_argument("--image", type=Path, help="an image file to check with the text")
    c.add_argument("--response", help="an assistant response to check (the text is its prompt)")
    c.add_argument(
        "--surface",
        choices=["input", "tool", "response"],
        help="default: input, or response with --response",
    )
    c.add_argument("--tenant", help="tenant id (policy file name)")
    c.add_argument("--policies", type=Path, help="a folder of tenant policy files, or one file")
    c.add_argument(
        "--classifier",
        help=f"classifier spec (default: ${ENV_CLASSIFIER}, else the scripted stand-in)",
    )

    d = sub.add_parser("demo", help="run a guarded agent: tool call, screenshot, PDF, escalation")
    d.add_argument(
        "--classifier", help=f"classifier spec (default: ${ENV_CLASSIFIER}, else scripted)"
    )
    d.add_argument("--svg", type=Path, help="also save the transcript as an SVG picture")

    pol = sub.add_parser("policy", help="policy tools")
    psub = pol.add_subparsers(dest="policy_command", required=True)
    v = psub.add_parser("validate", help="validate policy files or folders")
    v.add_argument("paths", nargs="+", type=Path)
    return p


def _check(args: argparse.Namespace) -> int:
    from guard_plugin.guard import Guard
    from guard_plugin.media import load_image
    from guard_plugin.policy import PolicyStore, load_policy
    from guard_plugin.prompting import SafetyInput
    from guard_plugin.types import Surface

    spec = args.classifier or os.environ.get(ENV_CLASSIFIER) or "scripted"
    if spec.split(":", 1)[0] == "scripted":
        print(
            "note: verdicts come from the scripted stand-in (a test double), NOT a safety model. "
            f"Set --classifier or ${ENV_CLASSIFIER} to use Nemotron.",
            file=sys.stderr,
        )
    if args.policies is None:
        store = PolicyStore()
    elif args.policies.is_dir():
        store = PolicyStore.from_dir(args.policies)
    else:
        store = PolicyStore(default=load_policy(args.policies))
    surface = (
        Surface(args.surface)
        if args.surface
        else (Surface.RESPONSE if args.response is not None else Surface.INPUT)
    )
    image = None
    if args.image is not None:
        try:
            data = args.image.read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read --image {args.image}: {err.strerror}") from None
        image = load_image(data, store.get(args.tenant).policy.media)
    if not args.text and image is None and args.response is None:
        raise ConfigError("nothing to check: give --text, --image or --response")
    inp = SafetyInput(text=args.text, image=image, response=args.response, surface=surface)
    with Guard(spec, policies=store, audit=[]) as guard:
        decision = guard.check(inp, tenant=args.tenant)
    print(json.dumps(decision.to_dict(), indent=2, ensure_ascii=False))
    return 0 if decision.allowed else 1


def _validate(args: argparse.Namespace) -> int:
    from guard_plugin.policy import PolicyStore, load_policy

    failed = 0
    for path in args.paths:
        try:
            if path.is_dir():
                store = PolicyStore.from_dir(path)
                print(
                    f"ok   {path}: {len(store.tenants())} policies ({', '.join(store.tenants())})"
                )
            else:
                pol = load_policy(path)
                print(f"ok   {path}: policy '{pol.id}' version {pol.version}")
        except ConfigError as err:
            failed += 1
            print(f"FAIL {err}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "demo":
            try:
                from guard_plugin.demo import run_demo
            except ImportError as err:
                raise ConfigError(
                    f"the demo needs LangChain and LangGraph ({err.name} is missing): "
                    "pip install 'guard-plugin[langchain,langgraph]'"
                ) from None
            spec = args.classifier or os.environ.get(ENV_CLASSIFIER)
            if args.svg is None:
                return run_demo(spec)
            from rich.console import Console

            console = Console(record=True, width=100)
            code = run_demo(spec, console=console)
            console.save_svg(str(args.svg), title="guard-plugin demo")
            return code
        if args.command == "policy":
            return _validate(args)
    except (ConfigError, MediaError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except GuardError as err:  # pragma: no cover - run-time errors become decisions
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
