"""The shared classifier as a NeMo Guardrails model engine.

Configs that keep NeMo's built-in ``content safety check input $model=...`` flows and its
Nemotron parsers can run them on guard_plugin's classifier (the local GPU-resident model, a
served fleet, or the scripted stand-in) by naming this engine::

    models:
      - type: content_safety
        engine: guard_plugin
        model: nvidia/nemotron-3.5-content-safety
        parameters:
          classifier: "transformers:/models/nemotron-3.5-content-safety"

Register it first with :func:`register` (the ready configs' ``config.py`` does). The
classifier is ``parameters.classifier``, else ``GUARD_PLUGIN_CLASSIFIER``; without either the
model cannot be built (a ``ConfigError``), it never falls back to the scripted stand-in.
``integrations/nemoguardrails/nemo_flows`` is a ready config with both prompts.
The prompt's user turn becomes the classified text, an assistant turn the response; untrusted
text is neutralised; ``chat_template_kwargs`` and ``max_tokens`` are honoured. Classifier
failures raise, so NeMo's action fails closed as it does for any engine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from guard_plugin.classifiers.base import ClassifierOutput
from guard_plugin.classifiers.registry import is_stand_in, load_classifier, spec_from_env
from guard_plugin.media import content_text
from guard_plugin.prompting import ModelRequest, SafetyInput, build_request
from guard_plugin.types import Surface

__all__ = ["ENGINE", "GuardPluginModel", "register"]

_log = logging.getLogger(__name__)

ENGINE = "guard_plugin"
_DEFAULT_KWARGS = {"request_categories": "/categories", "enable_thinking": False}


def _split(prompt: Any) -> tuple[str, str | None]:
    if isinstance(prompt, str):
        return prompt, None
    user: list[str] = []
    response: str | None = None
    for msg in prompt:
        role = getattr(msg, "role", None) or (msg.get("role") if isinstance(msg, dict) else None)
        content = getattr(msg, "content", None) if not isinstance(msg, dict) else msg.get("content")
        text = content_text(content)
        if role in ("assistant", "bot"):
            response = text
        elif role != "system":
            user.append(text)
    return "\n".join(user), response


class GuardPluginModel:
    """NeMo ``LLMModel`` over a guard_plugin classifier."""

    def __init__(
        self,
        model: str = "nvidia/nemotron-3.5-content-safety",
        classifier: str | None = None,
        **parameters: Any,
    ) -> None:
        self._model = model
        spec = spec_from_env(classifier, where="the guard_plugin NeMo engine")
        if is_stand_in(spec):
            _log.warning(
                "the guard_plugin engine uses the scripted stand-in (NOT a safety model); "
                "set parameters.classifier or GUARD_PLUGIN_CLASSIFIER"
            )
        self.classifier = load_classifier(spec)
        self._kwargs = dict(_DEFAULT_KWARGS)
        self._kwargs.update(parameters.get("chat_template_kwargs") or {})

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def provider_name(self) -> str | None:
        return ENGINE

    @property
    def provider_url(self) -> str | None:
        return None

    def _request(self, prompt: Any, kwargs: dict[str, Any]) -> ModelRequest:
        """The request NeMo's prompt asks for, built as every check's is (neutralised text,
        a content-and-settings key), with NeMo's template kwargs and token budget."""
        user, response = _split(prompt)
        template = {**self._kwargs, **(kwargs.get("chat_template_kwargs") or {})}
        max_new = int(kwargs.get("max_tokens") or (1024 if template.get("enable_thinking") else 64))
        surface = Surface.INPUT if response is None else Surface.RESPONSE
        return build_request(
            SafetyInput(text=user, response=response, surface=surface),
            extra_tokens=tuple(getattr(self.classifier, "extra_tokens", ())),
            template_kwargs=template,
            max_new_tokens=max_new,
        )

    async def generate_async(
        self, prompt: Any, *, stop: list[str] | None = None, **kwargs: Any
    ) -> Any:
        from nemoguardrails.types import LLMResponse

        (out,) = await self.classifier.aclassify([self._request(prompt, kwargs)])
        if not isinstance(out, ClassifierOutput):
            raise out
        return LLMResponse(content=out.text, reasoning=out.reasoning, model=self._model)

    async def stream_async(
        self, prompt: Any, *, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        from nemoguardrails.types import LLMResponseChunk

        full = await self.generate_async(prompt, stop=stop, **kwargs)
        yield LLMResponseChunk(
            delta_content=full.content, delta_reasoning=full.reasoning, model=self._model
        )


def register() -> None:
    """Make ``engine: guard_plugin`` available to NeMo configs in this process."""
    from nemoguardrails.llm.providers import register_provider

    register_provider(ENGINE, GuardPluginModel)
