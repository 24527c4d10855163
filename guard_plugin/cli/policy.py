"""``guard-plugin policy validate``: every problem of every policy file."""

from __future__ import annotations

import argparse

from guard_plugin.cli.common import EXIT_NOT_ALLOWED, EXIT_OK
from guard_plugin.errors import ConfigError, PolicyError
from guard_plugin.policy import load_policy

__all__ = ["validate"]


def validate(args: argparse.Namespace) -> int:
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
