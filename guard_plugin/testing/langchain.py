"""LangChain test doubles: a scripted chat model that calls tools, for tests, demos and notebooks.

It is not a language model: it replies with the messages it was given, in order (cycling),
and records what it was sent. Needs the ``langchain`` extra.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import PrivateAttr

__all__ = ["ScriptedChatModel", "tool_call"]


class ScriptedChatModel(FakeMessagesListChatModel):
    """Replies from ``responses`` in order, records each call's messages, supports
    ``bind_tools`` (so ``create_agent`` accepts it)."""

    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self._calls.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    @property
    def calls(self) -> list[list[BaseMessage]]:
        """The messages of every call so far."""
        return self._calls


def tool_call(name: str, args: dict[str, Any], call_id: str, text: str = "") -> AIMessage:
    """An assistant turn asking for one tool call."""
    return AIMessage(
        text, tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}]
    )
