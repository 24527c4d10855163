"""langchain-core messages <-> the core, shared by the LangChain and LangGraph adapters.

Three checks, each split the same way: *find* what to check in the message list (pure),
*check* it with the Guard (the adapter's one line, sync or async), and *apply* the decision
as message updates (pure, except escalation, which calls LangGraph's ``interrupt()`` and so
must run where a node may be re-run from its start). One module per concern:

- :mod:`.inputs`, :mod:`.tools`, :mod:`.responses`: the user turn, tool results, and the
  assistant turn with its tool calls;
- :mod:`.calls`: a tool call about to run, decided with its assistant turn or checked now;
- :mod:`.writes`: everything a tool call's result writes (a ``Command``'s other messages);
- :mod:`.tool_runs`: a tool's run as stream consumers see it, ended with the decided result;
- :mod:`.review`: human review in the shape of LangChain's human-in-the-loop requests;
- :mod:`.held`: content held for review (sealed in the state) and messages already decided;
- :mod:`.history`: every message the guard has not decided, checked before a model reads it;
- :mod:`.streaming`: a model's streamed answer, shown only as it passes its checks;
- :mod:`.run`: the graph run (config, tenant, stable request ids, ``interrupt()``);
- :mod:`.base`: the updates a check returns and the text of a message.

Message updates always reuse the original message id, so the ``add_messages`` reducer replaces
the message in place: no unsafe message stays in state under another id.
"""

try:
    import langchain_core.messages  # noqa: F401  (every module here needs it)
except ImportError as _err:  # pragma: no cover
    raise ImportError(
        "the LangChain / LangGraph adapters need langchain-core: "
        "pip install 'guard-plugin[langchain]' or 'guard-plugin[langgraph]'"
    ) from _err

from guard_plugin.lc_messages.base import (
    Check,
    Outcome,
    arun_checks,
    last_index,
    preview,
    record_dropped,
    run_checks,
    shown,
    text_of,
    tool_call_text,
)
from guard_plugin.lc_messages.calls import call_check, refused_call
from guard_plugin.lc_messages.held import (
    ABANDONED,
    HELD_KEY,
    Decided,
    decided_results,
    held_bind,
    held_ref,
    held_refused,
    read_held,
    review_held_tool,
    seal,
    unseal,
    withhold,
    without_record,
)
from guard_plugin.lc_messages.history import HistoryItem, apply_history, find_history
from guard_plugin.lc_messages.inputs import apply_input, find_input
from guard_plugin.lc_messages.responses import (
    ResponseCheck,
    answer_review,
    apply_response,
    find_response,
    review_requests,
)
from guard_plugin.lc_messages.review import REVIEW_DECISIONS, allowed_decisions, review_payload
from guard_plugin.lc_messages.run import (
    can_interrupt,
    check_args,
    check_id,
    interrupt,
    run_config,
    run_tenant,
)
from guard_plugin.lc_messages.streaming import (
    ResponseStreamer,
    StreamStopped,
    completing_chunk,
    quiet,
    quiet_config,
    shown_first,
    streaming_wanted,
)
from guard_plugin.lc_messages.tool_runs import afinish_tool_run, finish_tool_run, quiet_tool
from guard_plugin.lc_messages.tools import apply_tool_result, find_tool_results, tool_check_args
from guard_plugin.lc_messages.writes import (
    Writes,
    message_writes,
    node_writes,
    settle_writes,
    tool_writes,
    writes_checks,
)

__all__ = [
    "ABANDONED",
    "HELD_KEY",
    "REVIEW_DECISIONS",
    "Check",
    "Decided",
    "HistoryItem",
    "Outcome",
    "ResponseCheck",
    "ResponseStreamer",
    "StreamStopped",
    "Writes",
    "afinish_tool_run",
    "allowed_decisions",
    "answer_review",
    "apply_history",
    "apply_input",
    "apply_response",
    "apply_tool_result",
    "arun_checks",
    "call_check",
    "can_interrupt",
    "check_args",
    "check_id",
    "completing_chunk",
    "decided_results",
    "find_history",
    "find_input",
    "find_response",
    "find_tool_results",
    "finish_tool_run",
    "held_bind",
    "held_ref",
    "held_refused",
    "interrupt",
    "last_index",
    "message_writes",
    "node_writes",
    "preview",
    "quiet",
    "quiet_config",
    "quiet_tool",
    "read_held",
    "record_dropped",
    "refused_call",
    "review_held_tool",
    "review_payload",
    "review_requests",
    "run_checks",
    "run_config",
    "run_tenant",
    "seal",
    "settle_writes",
    "shown",
    "shown_first",
    "streaming_wanted",
    "text_of",
    "tool_call_text",
    "tool_check_args",
    "tool_writes",
    "unseal",
    "withhold",
    "without_record",
    "writes_checks",
]
