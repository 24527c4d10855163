"""Moved to :mod:`guard_plugin.check`; this path keeps old imports working."""

from guard_plugin.check.guard import Guard

__all__ = ["Guard"]
