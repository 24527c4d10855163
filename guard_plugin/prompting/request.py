"""A :class:`SafetyInput` under a compiled policy, into what a backend sends the model.

The model's own chat template carries the classifier instructions, taxonomy and output format;
a request holds only the content (one user turn: image first, then text; optionally one
assistant turn), neutralised, and the template kwargs compiled from the tenant's policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from guard_plugin.policy import CompiledPolicy
from guard_plugin.policy.compiled import settings_text
from guard_plugin.prompting.inputs import ImageData, SafetyInput
from guard_plugin.prompting.neutralize import neutralize

__all__ = ["ModelRequest", "build_request"]


@dataclass(frozen=True)
class ModelRequest:
    """What a classifier backend sends to the model for one :class:`SafetyInput`."""

    user_text: str
    response_text: str | None
    image: ImageData | None
    template_kwargs: Mapping[str, Any]
    max_new_tokens: int
    key: str
    #: who may share model state computed for this request (a local backend's kept prompt
    #: caches): the policy's fingerprint, so one tenant's checks never speed up, and so never
    #: reveal by their timing, another's; empty where no policy is known. Not part of what
    #: the request is: two requests with the same text and settings are equal.
    scope: str = field(default="", compare=False)

    @property
    def expects_response(self) -> bool:
        return self.response_text is not None

    def messages(
        self, image_part: Callable[[ImageData], dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Chat messages: a user turn (image part first, then text) and an optional assistant
        turn. ``image_part`` turns the image into a backend's content part."""
        content: list[dict[str, Any]] = []
        if self.image is not None:
            content.append(image_part(self.image) if image_part else {"type": "image"})
        content.append({"type": "text", "text": self.user_text})
        msgs: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if self.response_text is not None:
            msgs.append(
                {"role": "assistant", "content": [{"type": "text", "text": self.response_text}]}
            )
        return msgs


def build_request(
    inp: SafetyInput,
    policy: CompiledPolicy | None = None,
    *,
    reasoning: bool | None = None,
    extra_tokens: Iterable[str] = (),
    template_kwargs: Mapping[str, Any] | None = None,
    max_new_tokens: int | None = None,
) -> ModelRequest:
    """The model request for one input under a compiled policy.

    ``reasoning`` overrides the policy's thinking switch (the audit mode runs a second,
    reasoning request in the background). ``template_kwargs`` / ``max_new_tokens`` replace
    the policy's (a caller that brings its own, such as NeMo's engine, passes no policy).
    """
    kwargs, max_new, settings = _settings(policy, reasoning, template_kwargs, max_new_tokens)
    extra = tuple(extra_tokens)
    user_text = neutralize(inp.text, extra_tokens=extra)
    if inp.image is not None and (not user_text or user_text[0] in "\r\n"):
        # Gemma 3 expands the image to "\n\n<start_of_image>...<end_of_image>\n\n". A newline
        # right after it merges into one token, and vLLM then cannot find the image's
        # placeholder (HTTP 500). A leading space keeps every backend's tokens the same.
        user_text = " " + user_text
    response_text = None if inp.response is None else neutralize(inp.response, extra_tokens=extra)
    # The request key: the content digest and the request settings (kwargs, token budget).
    key = hashlib.sha256(f"{inp.content_digest()}|{settings}".encode()).hexdigest()
    return ModelRequest(
        user_text=user_text,
        response_text=response_text,
        image=inp.image,
        template_kwargs=kwargs,
        max_new_tokens=max_new,
        key=key,
        scope=policy.fingerprint if policy is not None else "",
    )


def _settings(
    policy: CompiledPolicy | None,
    reasoning: bool | None,
    template_kwargs: Mapping[str, Any] | None,
    max_new_tokens: int | None,
) -> tuple[dict[str, Any], int, str]:
    """Template kwargs, token budget, and a stable text of both (part of the request key)."""
    if policy is not None:
        think = policy.policy.reasoning == "on" if reasoning is None else reasoning
        kwargs, max_new, text = policy.request_settings(think)
        if template_kwargs is None and max_new_tokens is None:
            return kwargs, max_new, text
    elif template_kwargs is None or max_new_tokens is None:
        raise ValueError("build_request needs a policy, or both template_kwargs and max_new_tokens")
    kwargs = dict(template_kwargs) if template_kwargs is not None else kwargs
    max_new = max_new_tokens if max_new_tokens is not None else max_new
    return kwargs, max_new, settings_text(kwargs, max_new)
