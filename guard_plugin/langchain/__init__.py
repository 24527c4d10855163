"""LangChain adapters: agent middleware, a callback handler, and an LCEL runnable guard.

``SafetyMiddleware`` guards an agent built with ``langchain.agents.create_agent`` at all
three surfaces, with the vocabulary of LangChain's ``PIIMiddleware``::

    agent = create_agent(model, tools, middleware=[SafetyMiddleware(guard)],
                         checkpointer=InMemorySaver())      # a checkpointer enables escalation

It wraps every model call and every tool call, with no graph nodes of its own (each extra
node is a graph step per model call; a wrapper costs a function call):

- as a tool returns: its result (text, images, PDF pages, its artifact), so the state, the
  streams, the checkpoints and a ``return_direct`` answer only ever carry a decided result;
- before the model is called: the user's turn (once per run, while nothing has answered it:
  a block answers with the refusal and the model is never called), and any tool results the
  tool boundary did not decide (results a caller put in the input);
- after the model answers: its response, text and tool-call arguments, before the response
  reaches the state, so no unsafe message is ever written there and no tool runs for an
  unsafe call.

Escalation pauses the run with ``interrupt()`` only where nothing would be repeated on
resume. An escalated tool result is *held*: a placeholder takes its place in the state, the
original waits sealed in a private key, and the reviewer is asked before the next model call
(a tool is never run twice); if a new user turn comes instead of the answer, the result stays
withheld. An escalated user turn is held the same way before the model is called (a
placeholder takes its id, the turn comes straight back to the model step for the review), so a
new turn instead of the answer cannot carry it to the model. An escalated response
is *held*: a placeholder takes its id (its only tool call, to a ``content_safety_review``
pseudo-tool, is answered at once), the response waits in a private state key, and
``create_agent`` routes the turn straight back to the model step, where the review interrupt
happens before any model call; the reviewer's answer then replaces the placeholder. The way
back needs an agent with tools (``create_agent`` builds no edge back otherwise); an agent
without tools, or a run without a checkpointer, gets the tenant's escalation fallback. If a
new turn arrives instead of an answer, the held response stays withheld.

Streaming: when the run streams (``stream_mode="messages"``, ``astream_events``, a handler
that shows tokens), the model answers *quietly* (its own tokens reach no consumer) and its
text is shown window by window through a chat-model run of the guard's, as each window passes
its check (:mod:`guard_plugin.streams`, the tenant's ``streaming`` policy); a blocked answer
ends with the refusal after what was shown, and the state holds exactly that. Tool-call
chunks come out only with the decided message. ``hold_output=True`` shows the checked
message only, whole, when the model step ends. (``stream_mode="updates"`` and ``"values"``
only ever carry checked messages.)

``SafetyCallbackHandler`` observes any chain or runnable and can only stop it: callbacks
cannot rewrite or interrupt, so ``rewrite`` and ``escalate`` become a block (after the
tenant's ``escalation_handler``, if given, has had its say).
"""

try:
    import langchain.agents  # noqa: F401
    import langchain_core  # noqa: F401
except ImportError as _err:  # pragma: no cover
    raise ImportError(
        "guard_plugin.langchain needs LangChain 1.x: pip install 'guard-plugin[langchain]'"
    ) from _err

from guard_plugin.langchain.callbacks import EscalationHandler, SafetyCallbackHandler
from guard_plugin.langchain.middleware import (
    HELD_TOOLS_KEY_PREFIX,
    REVIEW_KEY_PREFIX,
    REVIEW_TOOL,
    SAFETY_INSTRUCTION,
    SafetyMiddleware,
)
from guard_plugin.langchain.runnable import guard_runnable, guarded_model

__all__ = [
    "HELD_TOOLS_KEY_PREFIX",
    "REVIEW_KEY_PREFIX",
    "REVIEW_TOOL",
    "SAFETY_INSTRUCTION",
    "EscalationHandler",
    "SafetyCallbackHandler",
    "SafetyMiddleware",
    "guard_runnable",
    "guarded_model",
]
