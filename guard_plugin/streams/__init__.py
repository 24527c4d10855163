"""Streamed responses, checked as they stream.

The rule is written once here, framework-free: :mod:`.windows` cuts a response into windows
as it arrives, :mod:`.moderator` checks them beside the stream and releases text by the
tenant's ``streaming`` policy (``hold``: nothing is shown before its check; ``first``: shown at
once, checked behind), and :mod:`.iterate` moderates any iterator of text pieces
(``Guard.stream`` / ``Guard.astream``). Adapters only feed pieces in and pass on what comes
out.
"""

from guard_plugin.streams.iterate import astream, stream
from guard_plugin.streams.moderator import AsyncStreamModerator, StreamModerator, settings_of
from guard_plugin.streams.windows import Window, Windows, count_units

__all__ = [
    "AsyncStreamModerator",
    "StreamModerator",
    "Window",
    "Windows",
    "astream",
    "count_units",
    "settings_of",
    "stream",
]
