"""ScriptedClassifier: a TEST DOUBLE and demo stand-in. It is NOT a safety model.

It answers in the model's output format from rules you give it (regular expressions over the
text, a function over images, or a function returning raw model text), so guards, adapters and
demos can run without the Nemotron model. Its verdicts mean only what its rules say.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from guard_plugin.classifiers.base import (
    BaseClassifier,
    Classifier,
    ClassifierOutput,
    ClassifierResult,
    Factory,
)
from guard_plugin.errors import ClassifierError, ClassifierTimeout, ConfigError
from guard_plugin.prompting import ImageData, ModelRequest

__all__ = ["DEMO_RULES", "ScriptedClassifier", "ScriptedRule"]

LABEL = "ScriptedClassifier (test double / demo stand-in, NOT a safety model)"


@dataclass(frozen=True)
class ScriptedRule:
    """Content matching ``pattern`` (case-insensitive regex) is unsafe with ``categories``."""

    pattern: str
    categories: tuple[str, ...]

    _re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_re", re.compile(self.pattern, re.IGNORECASE))

    def matches(self, text: str) -> bool:
        return bool(text) and self._re.search(text) is not None


#: Rules the demo and `guard-plugin check` use when no real model is configured.
DEMO_RULES: tuple[ScriptedRule, ...] = (
    ScriptedRule(
        r"\b(build|make)\b.{0,40}\b(bomb|explosive)", ("Violence", "Guns and Illegal Weapons")
    ),
    ScriptedRule(r"\bkill (him|her|them|you|everyone)\b", ("Violence", "Threat")),
    ScriptedRule(r"\b(worthless|pathetic|idiot|loser)\b", ("Harassment",)),
    ScriptedRule(r"\b(damn|hell|crap)\b", ("Profanity",)),
    ScriptedRule(r"\b(meth|cocaine|heroin)\b", ("Controlled/Regulated Substances",)),
    ScriptedRule(r"\bsocial security number\b|\b\d{3}-\d{2}-\d{4}\b", ("PII/Privacy",)),
    ScriptedRule(r"\bransomware\b|\bkeylogger\b", ("Malware",)),
    ScriptedRule(r"\bignore (all|previous) (instructions|rules)\b", ("Manipulation",)),
)


class ScriptedClassifier(BaseClassifier):
    """Rule-driven stand-in for the model (see the module docstring: NOT a safety model).

    - ``rules``: :class:`ScriptedRule` objects, or a mapping ``pattern -> categories``.
    - ``image_rule``: ``ImageData -> categories`` (empty: safe) for image parts.
    - ``fn``: ``ModelRequest -> str`` returning raw model text; overrides the rules (use it to
      feed malformed outputs to the parser).
    - ``delay`` seconds per batch, honouring the caller's timeout; ``error`` raised per batch.

    ``calls`` counts batches and ``requests`` keeps every request seen.
    """

    name = "scripted"
    label = LABEL

    def __init__(
        self,
        rules: Sequence[ScriptedRule] | Mapping[str, str | Sequence[str]] | None = None,
        *,
        image_rule: Callable[[ImageData], Sequence[str]] | None = None,
        fn: Callable[[ModelRequest], str] | None = None,
        delay: float = 0.0,
        error: Exception | None = None,
        name: str | None = None,
    ) -> None:
        if rules is None:
            self.rules: tuple[ScriptedRule, ...] = DEMO_RULES
        elif isinstance(rules, Mapping):
            self.rules = tuple(
                ScriptedRule(p, (c,) if isinstance(c, str) else tuple(c)) for p, c in rules.items()
            )
        else:
            self.rules = tuple(rules)
        self.image_rule = image_rule
        self.fn = fn
        self.delay = delay
        self.error = error
        if name:
            self.name = name
        self.calls = 0
        self.requests: list[ModelRequest] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{LABEL}: {len(self.rules)} rules>"

    def _categories(self, text: str) -> list[str]:
        out: list[str] = []
        for rule in self.rules:
            if rule.matches(text):
                out += [c for c in rule.categories if c not in out]
        return out

    def render(self, req: ModelRequest) -> str:
        """The model-format output this double gives for one request."""
        if self.fn is not None:
            return self.fn(req)
        user = self._categories(req.user_text)
        if req.image is not None and self.image_rule is not None:
            user += [c for c in self.image_rule(req.image) if c not in user]
        lines = [f"User Safety: {'unsafe' if user else 'safe'}"]
        cats = list(user)
        if req.response_text is not None:
            resp = self._categories(req.response_text)
            lines.append(f"Response Safety: {'unsafe' if resp else 'safe'}")
            cats = resp or user
        if cats and req.template_kwargs.get("request_categories", "/categories") == "/categories":
            lines.append("Safety Categories: " + ", ".join(cats))
        text = "\n".join(lines)
        if req.template_kwargs.get("enable_thinking"):
            why = f"matched rules for {', '.join(cats)}" if cats else "no rule matched"
            text = f"<think>\nScripted stand-in: {why}.\n</think>\n{text}"
        return text

    def _run(self, requests: Sequence[ModelRequest]) -> list[ClassifierResult]:
        with self._lock:
            self.calls += 1
            self.requests.extend(requests)
        if self.error is not None:
            raise self.error
        out: list[ClassifierResult] = []
        for req in requests:
            try:
                out.append(ClassifierOutput(self.render(req)))
            except ClassifierError as err:
                out.append(err)
        return out

    def classify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        if self.delay:
            if timeout is not None and self.delay > timeout:
                time.sleep(timeout)
                raise ClassifierTimeout(f"scripted delay {self.delay}s exceeds {timeout:.3f}s")
            time.sleep(self.delay)
        return self._run(requests)

    async def aclassify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        if self.delay:
            import asyncio

            if timeout is not None and self.delay > timeout:
                await asyncio.sleep(timeout)
                raise ClassifierTimeout(f"scripted delay {self.delay}s exceeds {timeout:.3f}s")
            await asyncio.sleep(self.delay)
        return self._run(requests)


def _scripted(rest: str, options: dict[str, Any]) -> tuple[str, Callable[[], Classifier]]:
    if rest not in ("", "demo"):
        raise ConfigError(f"unknown scripted preset '{rest}'; use 'scripted' or 'scripted:demo'")
    return "scripted:demo", lambda: ScriptedClassifier(**options)


#: ``scripted`` specs (read by :mod:`guard_plugin.classifiers.registry`)
SCHEMES: dict[str, Factory] = {"scripted": _scripted}
