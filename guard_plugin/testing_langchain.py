"""Moved to :mod:`guard_plugin.testing.langchain`; this path keeps old imports working."""

from guard_plugin.testing.langchain import ScriptedChatModel, tool_call

__all__ = ["ScriptedChatModel", "tool_call"]
