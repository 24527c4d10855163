"""Tool calls in the shapes providers write them (LangChain's ``name`` / ``args``, OpenAI's
``function.name`` / ``function.arguments``, a legacy ``function_call``, Anthropic's ``input``),
and the one text a call is checked as, whatever shape it came in."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["call_text", "read_call"]


def call_text(name: Any, args: Any) -> str:
    """A tool call as the classifier reads it: its name and its arguments (as JSON, or as
    given where they are text that is no JSON)."""
    said = (
        args
        if isinstance(args, str)
        else json.dumps(args, ensure_ascii=False, sort_keys=True, default=str)
    )
    return f"Calling tool {name} with arguments {said}"


def read_call(call: Any) -> tuple[str, Any, str | None] | None:
    """``(name, arguments, id)`` of a tool call in any of the shapes above (arguments sent as a
    JSON string are parsed, as LangChain parses them); None for what is no call (no name)."""
    if not isinstance(call, Mapping):
        return None
    fn = call.get("function")
    where: Mapping[str, Any] = fn if isinstance(fn, Mapping) else call
    name = where.get("name")
    if not isinstance(name, str) or not name:
        return None
    args: Any = next((where[k] for k in ("args", "arguments", "input") if k in where), {})
    if isinstance(args, str):
        with contextlib.suppress(ValueError):
            args = json.loads(args)
    call_id = call.get("id")
    return name, args, str(call_id) if call_id else None
