"""The classifier seam: batched, sync and async, one result (or error) per request.

A backend turns :class:`~guard_plugin.prompting.ModelRequest` objects into the model's raw
output text. Parsing and deciding happen in the :class:`~guard_plugin.Guard`, never here. A
backend reports a failed request as a :class:`~guard_plugin.errors.ClassifierError` in its
slot of the result list; a failure of the whole batch may be raised instead.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from guard_plugin.errors import ClassifierError
from guard_plugin.prompting import ModelRequest

__all__ = [
    "BaseClassifier",
    "Classifier",
    "ClassifierOutput",
    "ClassifierResult",
    "Factory",
    "spec_bool",
    "spec_number",
]

_BOOLS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def spec_bool(value: str) -> bool:
    """A spec option's true / false (1 / 0, yes / no); ValueError otherwise."""
    try:
        return _BOOLS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"'{value}' is not true or false") from None


def spec_number(value: str) -> float:
    """A spec option's finite number; ValueError for anything else, nan and inf included."""
    n = float(value)
    if not math.isfinite(n):
        raise ValueError(f"'{value}' is not a finite number")
    return n


@dataclass(frozen=True)
class ClassifierOutput:
    """The model's raw output for one request; ``reasoning`` when the server sent it apart.

    ``user_score`` / ``response_score``: P(unsafe) for each rated turn, read from the model's
    own distribution over the two label tokens where the backend can see it (the local
    model's logits, a server's logprobs); ``None`` where it cannot.
    """

    text: str
    reasoning: str | None = None
    user_score: float | None = None
    response_score: float | None = None


ClassifierResult = ClassifierOutput | ClassifierError


@runtime_checkable
class Classifier(Protocol):
    #: identifies the model (and adapter) in cache keys and audit events
    name: str
    #: the tokenizer's special tokens, neutralised in untrusted text on top of Gemma's
    extra_tokens: tuple[str, ...]

    def classify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]: ...

    async def aclassify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]: ...

    def close(self) -> None: ...


class BaseClassifier:
    """Convenience base: subclasses implement ``classify``; ``aclassify`` runs it in a thread
    so the event loop is never blocked."""

    name: str = "classifier"
    extra_tokens: tuple[str, ...] = ()

    def classify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        raise NotImplementedError

    async def aclassify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        return await asyncio.to_thread(self.classify, requests, timeout=timeout)

    def health(self) -> bool:
        """True when the backend can classify right now."""
        return True

    def close(self) -> None:
        """Release the backend's resources."""

    def __enter__(self) -> BaseClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Factory = Callable[[str, dict[str, Any]], tuple[str, Callable[[], Classifier]]]
"""How a backend builds from a spec: ``(rest_of_spec, options) -> (normalised key, constructor)``.
A backend module lists its schemes in ``SCHEMES: dict[str, Factory]``."""
