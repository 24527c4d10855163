"""A chat endpoint that streams the model's answer as Server-Sent Events, each piece sent only
after its check passed (``Guard.astream``, the tenant's ``streaming`` policy).

Run it (a real model and classifier from the environment)::

    GUARD_PLUGIN_CLASSIFIER=vllm://localhost:8000/v1 OPENAI_API_KEY=... \\
        python examples/streaming_sse.py            # then POST {"message": "..."} to :8080/chat

Each event is ``data: {"text": "..."}``; the last is ``data: {"done": true, "blocked": ...}``.
A blocked answer's last text event is the tenant's refusal. The tenant is the server's to
choose (here ``GUARD_PLUGIN_TENANT``), never the caller's.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

from guard_plugin import Guard


def make_app(guard: Guard, model: Any, *, tenant: str | None = None) -> FastAPI:
    """The app: ``model`` is a LangChain chat model (anything with ``astream(messages)``)."""
    app = FastAPI()

    @app.post("/chat")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        question = body.get("message") if isinstance(body, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise HTTPException(400, 'send {"message": "<the user turn>"}')
        verdict = await guard.acheck_content(question, surface="input", tenant=tenant)
        if not verdict.allowed:  # the model is not called for a refused turn
            refusal = guard.messages_of(verdict, tenant).refusal
            return StreamingResponse(
                _events([refusal], blocked=True), media_type="text/event-stream"
            )
        answer = guard.astream(model.astream([("user", question)]), context=question, tenant=tenant)
        return StreamingResponse(_moderated(answer), media_type="text/event-stream")

    return app


async def _moderated(answer: Any) -> AsyncIterator[str]:
    async for text in answer:
        yield _event({"text": text})
    yield _event({"done": True, "blocked": answer.stopped is not None})


async def _events(texts: list[str], *, blocked: bool) -> AsyncIterator[str]:
    for text in texts:
        yield _event({"text": text})
    yield _event({"done": True, "blocked": blocked})


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


if __name__ == "__main__":
    import uvicorn
    from langchain.chat_models import init_chat_model

    guard = Guard(os.environ["GUARD_PLUGIN_CLASSIFIER"], policies="builtin")
    model = init_chat_model(os.environ.get("MAIN_MODEL", "openai:gpt-4.1-mini"))
    app = make_app(guard, model, tenant=os.environ.get("GUARD_PLUGIN_TENANT"))
    uvicorn.run(app, host="127.0.0.1", port=8080)
