"""Exit codes and what every command shares."""

from __future__ import annotations

import sys

from guard_plugin.classifiers.registry import is_stand_in

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_NOT_ALLOWED",
    "EXIT_NO_VERDICT",
    "EXIT_OK",
    "EXIT_USAGE",
    "note_if_scripted",
]

EXIT_OK, EXIT_NOT_ALLOWED, EXIT_USAGE, EXIT_INTERNAL, EXIT_NO_VERDICT = 0, 1, 2, 3, 4


def note_if_scripted(spec: str, note: str) -> None:
    """Say on standard error that verdicts come from the test double, never a safety model."""
    if is_stand_in(spec):
        print(note, file=sys.stderr)
