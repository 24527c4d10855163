"""The remote backend: any OpenAI-compatible chat server serving Nemotron Content Safety.

vLLM, SGLang and NIM speak the same protocol; several base URLs (replicas) may be given:
requests are spread round-robin, and a replica that fails to connect or answers 5xx is skipped
for a cool-down while the request is retried elsewhere with backoff. Template kwargs travel as
``chat_template_kwargs``; images as ``image_url`` data URLs. For servers that reject a
conversation ending on an assistant turn (SGLang), ``fold_response`` puts the response inside
the user text the way the model's template renders it. The reasoning trace is read from
``<think>`` in the content, ``reasoning_content`` or ``reasoning``.

Scores: requests ask for ``logprobs`` with ``top_logprobs`` (vLLM and SGLang return them), and
P(unsafe) of each verdict line is read from the label token's alternatives, as the local
backend reads it from logits. A server that answers without them gives no score (the label
still decides); one that refuses the parameters with HTTP 400 is asked again without them,
and from then on.

Deadlines are real: every attempt runs under its own deadline (a share of what is left of the
check's budget when other replicas could still answer), and the sync API drives the same async
code on a private event loop, so a server that drips its answer a byte at a time cannot hold a
check past its budget.

The API key comes from the ``api_key`` argument or the environment variable named by
``api_key_env`` (read once, at construction; a variable named but unset is a configuration
error), else from ``GUARD_PLUGIN_API_KEY`` when that is set; it is never logged or shown in
errors. Without ``model`` the served model's name is asked of the server (``GET /v1/models``)
once, on first use: names are case-sensitive, and a server started from the Hugging Face id
serves ``nvidia/Nemotron-3.5-Content-Safety``.

A served model's prefix cache is shared by every request it gets, so a check that shares a
long prefix with another tenant's recent prompt comes back faster. With ``cache_salt`` on,
each request carries vLLM's ``cache_salt``, derived from its policy fingerprint: a tenant's
checks reuse only its own prompts' cache. Off by default, since servers other than vLLM may
refuse the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import httpx
from opentelemetry import trace

from guard_plugin import telemetry
from guard_plugin._aio import LoopThread, within
from guard_plugin.classifiers.base import (
    BaseClassifier,
    ClassifierOutput,
    ClassifierResult,
    Factory,
    spec_bool,
    spec_number,
)
from guard_plugin.errors import (
    ClassifierError,
    ClassifierTimeout,
    ClassifierUnavailable,
    ConfigError,
)
from guard_plugin.prompting import ModelRequest

__all__ = ["DEFAULT_SERVED_MODEL", "OpenAICompatClassifier"]

_log = logging.getLogger("guard_plugin")

DEFAULT_SERVED_MODEL = "nvidia/Nemotron-3.5-Content-Safety"
_KEY_ENV = "GUARD_PLUGIN_API_KEY"
_RESPONSE_FOLD = "\nresponse: agent:  ### Answer: "
_RETRY_STATUS = {429, 500, 502, 503, 504}
_TOP_LOGPROBS = 20  # vLLM's default ceiling (--max-logprobs)
_LABEL_AT = {
    name: re.compile(rf"^[ \t]*{name}[ \t]*:[ \t]*(?=(?:un)?safe\b)", re.IGNORECASE | re.MULTILINE)
    for name in ("User Safety", "Response Safety")
}


class _NoLogprobs(Exception):
    """The server refused the logprobs parameters."""


def label_scores(content: str, logprobs: Any) -> tuple[float | None, float | None]:
    """P(unsafe) for the ``User Safety`` and ``Response Safety`` lines of ``content``, from an
    OpenAI-style ``logprobs.content`` list: the token that starts each label and its
    ``top_logprobs``. ``None`` where a line, the token or the other label is missing."""
    entries = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(entries, list) or not entries:
        return None, None
    starts: list[int] = []
    text = ""
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("token"), str):
            return None, None
        starts.append(len(text))
        text += e["token"]
    # The tokens rebuild the answer, plus any stop token the content leaves out; otherwise
    # (byte-split tokens) there is no sure place for the label: no guess.
    if not text.startswith(content):
        return None, None
    end = content.rfind("</think>")
    offset = 0 if end < 0 else end + len("</think>")  # the verdict follows any reasoning
    scores: list[float | None] = []
    for pattern in _LABEL_AT.values():
        m = pattern.search(content[offset:])
        if m is None:
            scores.append(None)
            continue
        pos = offset + m.end()
        label = "unsafe" if content[pos : pos + 6].lower() == "unsafe" else "safe"
        scores.append(_score_at(entries, starts, pos, label))
    return scores[0], scores[1]


def _score_at(
    entries: list[dict[str, Any]], starts: list[int], pos: int, label: str
) -> float | None:
    """P(unsafe) at the token that holds the label, or ``None`` unless the server's answer is
    consistent: the chosen token is the whole label the text says (not a piece of it), both
    labels are among its alternatives with finite log-probabilities, and the chosen label is
    the likelier one (greedy decoding chose it)."""
    i = max(n for n, s in enumerate(starts) if s <= pos)
    chosen = entries[i]["token"]
    if chosen[: pos - starts[i]].strip() or chosen.strip().lower() != label:
        return None  # the label is split over tokens, or shares one with other text
    alts = entries[i].get("top_logprobs")
    best: dict[str, float] = {}
    for alt in alts if isinstance(alts, list) else ():
        tok = alt.get("token") if isinstance(alt, dict) else None
        lp = alt.get("logprob") if isinstance(alt, dict) else None
        if not isinstance(tok, str) or isinstance(lp, bool) or not isinstance(lp, (int, float)):
            continue
        if not math.isfinite(lp):
            return None  # +inf, -inf or NaN: no score can be read from this position
        name = tok.strip().lower()
        if name in ("safe", "unsafe") and lp > best.get(name, -math.inf):
            best[name] = float(lp)
    other = "safe" if label == "unsafe" else "unsafe"
    if len(best) != 2 or best[label] < best[other]:
        return None
    # the logistic of the difference, written so that a floor value (vLLM's -9999) cannot
    # overflow
    d = best["unsafe"] - best["safe"]
    return 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))


class _Retryable(Exception):
    def __init__(self, message: str, *, mark_down: bool) -> None:
        super().__init__(message)
        self.mark_down = mark_down


class OpenAICompatClassifier(BaseClassifier):
    """Classifies through ``POST {base_url}/chat/completions``.

    - ``base_urls``: one URL or several replicas, each ending in ``/v1``.
    - ``model``: the served model name; ``None`` asks the server (the one model it serves, or
      the one named like Nemotron Content Safety).
    - ``fold_response``: fold the response into the user turn (needed for SGLang).
    - ``timeout``: the most one HTTP attempt may take, start to last byte (a check's time
      budget also bounds the whole call, and an attempt gets at most its share of what is
      left when other replicas could still answer).
    - ``max_retries``: extra attempts after connection errors, timeouts, 429 and 5xx.
    - ``max_concurrency``: requests in flight at once from this instance.
    - ``logprobs``: ask for the label's log-probabilities (the score). A replica that refuses
      them (HTTP 400/422 about logprobs) is asked without them for ``logprob_retry_s``, then
      again; other replicas keep their scores. Each fallback is logged.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str],
        *,
        model: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        fold_response: bool = False,
        timeout: float = 30.0,
        max_retries: int = 2,
        backoff_s: float = 0.1,
        cooldown_s: float = 10.0,
        max_concurrency: int = 32,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        logprobs: bool = True,
        logprob_retry_s: float = 300.0,
        cache_salt: bool = False,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        urls = [u.strip().rstrip("/") for u in urls if u and u.strip()]
        if not urls:
            raise ConfigError("give at least one base URL, such as http://localhost:8000/v1")
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ConfigError(f"base URL '{u}' must start with http:// or https://")
            _check_url(u)
        if (
            max_retries < 0
            or not 0 < timeout < math.inf
            or max_concurrency < 1
            or not 0 <= cooldown_s < math.inf
        ):
            raise ConfigError(
                "max_retries must be >= 0, timeout > 0, max_concurrency >= 1, cooldown_s >= 0 "
                f"(numbers, not nan or inf); got max_retries={max_retries}, timeout={timeout}, "
                f"max_concurrency={max_concurrency}, cooldown_s={cooldown_s}"
            )
        self.base_urls = urls
        self.model = model
        self.name = f"openai:{model or ','.join(urls)}"
        self.fold_response = fold_response
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.cooldown_s = cooldown_s
        self.max_concurrency = max_concurrency
        self.logprobs = logprobs
        self.logprob_retry_s = logprob_retry_s
        self.cache_salt = cache_salt
        self._no_logprobs_until: dict[str, float] = {}
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ConfigError(
                    f"api_key_env names {api_key_env}, which is not set: export it, or drop "
                    "api_key_env for a server that takes no key"
                )
        key = api_key if api_key is not None else os.environ.get(_KEY_ENV)
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._rr = itertools.count()
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._transport = transport
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()
        self._sync_loop = LoopThread("guard-plugin-http")
        telemetry.watch(self.name, self)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatClassifier(base_urls={self.base_urls!r}, model={self.model!r})"

    # -- request building ----------------------------------------------------------------------

    def body(self, req: ModelRequest, url: str | None = None) -> dict[str, Any]:
        """The JSON body sent for one request to ``url`` (``model`` is filled in once it is
        known); logprobs are asked for unless that replica refused them lately."""
        user_text = req.user_text
        response = req.response_text
        if response is not None and self.fold_response:
            user_text = f"{user_text}{_RESPONSE_FOLD}{response}"
            response = None
        user_content: str | list[dict[str, Any]]
        if req.image is not None:
            user_content = [
                {"type": "image_url", "image_url": {"url": req.image.data_url()}},
                {"type": "text", "text": user_text},
            ]
        else:
            user_content = user_text
        messages: list[dict[str, Any]] = [{"role": "user", "content": user_content}]
        if response is not None:
            messages.append({"role": "assistant", "content": response})
        body: dict[str, Any] = {
            "model": self.model or DEFAULT_SERVED_MODEL,
            "messages": messages,
            "max_tokens": req.max_new_tokens,
            "temperature": 0,
            "stream": False,
            "chat_template_kwargs": dict(req.template_kwargs),
        }
        if self.asks_logprobs(url):
            body["logprobs"] = True
            body["top_logprobs"] = _TOP_LOGPROBS
        if self.cache_salt:  # the server's prefix cache is shared only within one policy
            body["cache_salt"] = "gp-" + hashlib.sha256(req.scope.encode()).hexdigest()[:32]
        return body

    def telemetry_gauges(self) -> dict[str, list[tuple[dict[str, str], int]]]:
        now = time.monotonic()
        with self._lock:
            down = dict(self._down_until)
        return {
            "replica_up": [({"replica": u}, int(down.get(u, 0.0) <= now)) for u in self.base_urls]
        }

    def asks_logprobs(self, url: str | None) -> bool:
        """Whether a request to ``url`` asks for logprobs now."""
        if not self.logprobs:
            return False
        with self._lock:
            return url is None or self._no_logprobs_until.get(url, 0.0) <= time.monotonic()

    def _refused_logprobs(self, url: str, why: str) -> None:
        with self._lock:
            self._no_logprobs_until[url] = time.monotonic() + self.logprob_retry_s
        _log.warning(
            "%s refused logprobs (%s): its checks carry no score for %.0f s; a tenant "
            "threshold falls back to the model's label there (or, with require_score, errs)",
            url,
            why,
            self.logprob_retry_s,
        )

    # -- endpoint selection ---------------------------------------------------------------------

    def _pick(self, tried: set[str]) -> str:
        now = time.monotonic()
        n = len(self.base_urls)
        start = next(self._rr)
        order = [self.base_urls[(start + i) % n] for i in range(n)]
        with self._lock:
            up = [u for u in order if self._down_until.get(u, 0.0) <= now]
        for u in up:
            if u not in tried:
                return u
        if up:
            return up[0]
        return order[0]  # everything is cooling down: try anyway rather than fail unasked

    def _mark_down(self, url: str) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + self.cooldown_s

    def _delay(self, attempt: int) -> float:
        return self.backoff_s * (2**attempt) * (0.5 + random.random() / 2)

    # -- one attempt ------------------------------------------------------------------------------

    @staticmethod
    def _interpret(
        resp: httpx.Response, url: str, asked_logprobs: bool = False
    ) -> ClassifierOutput:
        if resp.status_code in _RETRY_STATUS:
            raise _Retryable(
                f"{url} answered HTTP {resp.status_code}", mark_down=resp.status_code != 429
            )
        if resp.status_code >= 400:
            snippet = resp.text[:200].replace("\n", " ")
            if asked_logprobs and resp.status_code in (400, 422) and "logprob" in snippet.lower():
                raise _NoLogprobs(snippet)
            raise ClassifierUnavailable(f"{url} answered HTTP {resp.status_code}: {snippet}")
        try:
            data = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ClassifierUnavailable(f"{url} sent malformed JSON") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise ClassifierUnavailable(f"{url} sent no choices")
        message = choices[0].get("message") or {}
        if not isinstance(message, dict):
            raise ClassifierUnavailable(f"{url} sent a malformed message")
        content = message.get("content")
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if content is not None and not isinstance(content, str):
            raise ClassifierUnavailable(f"{url} sent non-text content")
        user_score, response_score = label_scores(content or "", choices[0].get("logprobs"))
        return ClassifierOutput(
            content or "",
            reasoning if isinstance(reasoning, str) else None,
            user_score=user_score,
            response_score=response_score,
        )

    # -- the served model's name ------------------------------------------------------------

    async def _served_model(self, client: httpx.AsyncClient, deadline: float | None) -> str:
        """The model to ask for: the configured name, else the one the server lists."""
        if self.model is not None:
            return self.model
        last = "no replica answered"
        now = time.monotonic()
        with self._lock:
            urls = sorted(self.base_urls, key=lambda u: self._down_until.get(u, 0.0) > now)
        for n, url in enumerate(urls):
            t = min(self.timeout, 5.0)
            if deadline is not None:
                t = min(t, (deadline - time.monotonic()) / (len(urls) - n))
            if t <= 0:
                break
            try:
                resp = await within(client.get(f"{url}/models", timeout=t), t)
                ids = [m["id"] for m in resp.json()["data"] if isinstance(m.get("id"), str)]
            except (httpx.TransportError, TimeoutError) as err:
                self._mark_down(url)
                last = f"{url} unreachable ({type(err).__name__})"
                continue
            except (ValueError, KeyError, TypeError, AttributeError):
                last = f"{url}/models answered HTTP {resp.status_code} without a model list"
                continue
            if resp.status_code != 200 or not ids:
                last = f"{url}/models answered HTTP {resp.status_code} with {len(ids)} models"
                continue
            named = [i for i in ids if "content-safety" in i.lower()]
            if len(ids) == 1 or len(named) == 1:
                self.model = ids[0] if len(ids) == 1 else named[0]
                self.name = f"openai:{self.model}"
                return self.model
            raise ClassifierUnavailable(
                f"{url} serves several models ({', '.join(ids[:8])}); name one with ?model="
            )
        raise ClassifierUnavailable(f"cannot learn the served model's name: {last}")

    # -- one request: attempts until an answer, a final error or the deadline -----------------

    async def _aone(self, req: ModelRequest, deadline: float | None) -> ClassifierResult:
        client, sem = self._aclient()
        if self.model is None:
            try:
                await self._served_model(client, deadline)
            except ClassifierError as err:
                return err
        attempts = _Attempts(self, deadline)
        while True:
            try:
                url, t = attempts.begin()
                body = self.body(req, url)
                async with sem:
                    resp = await within(
                        client.post(f"{url}/chat/completions", json=body, timeout=t), t
                    )
                trace.get_current_span().set_attribute("guard_plugin.classifier.replica", url)
                return self._interpret(resp, url, "logprobs" in body)
            except _NoLogprobs as err:
                self._refused_logprobs(url, str(err))  # this replica: labels only, for a while
            except ClassifierError as err:
                return err
            except (httpx.TransportError, _Retryable, TimeoutError) as err:
                step = attempts.failed(err)
                trace.get_current_span().add_event(
                    "guard_plugin.classifier.retry",
                    {"replica": url, "reason": attempts.last, "attempt": attempts.attempt},
                )
                if isinstance(step, ClassifierError):
                    return step
                await asyncio.sleep(step)

    def classify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        """The sync API: the async path on this instance's private loop, waited for at most
        ``timeout`` seconds (then every unanswered request is a :class:`ClassifierTimeout`)."""
        # The attempts keep to the deadline themselves; the wait's own margin only catches a
        # loop that does not get to run (a process starved of CPU).
        wait = None if timeout is None else timeout + 0.25
        try:
            return self._sync_loop.run(self.aclassify(requests, timeout=timeout), wait)
        except TimeoutError:
            return [ClassifierTimeout(f"no answer within {timeout} s") for _ in requests]

    def _aclient(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        pair = self._aclients.get(loop)
        if pair is None:
            limits = httpx.Limits(
                max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
            )
            client = httpx.AsyncClient(
                headers=self._headers, limits=limits, transport=self._transport
            )
            pair = (client, asyncio.Semaphore(self.max_concurrency))
            self._aclients[loop] = pair
        return pair

    async def aclassify(
        self, requests: Sequence[ModelRequest], *, timeout: float | None = None
    ) -> list[ClassifierResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        return list(await asyncio.gather(*(self._aone(r, deadline) for r in requests)))

    # -- lifecycle --------------------------------------------------------------------------------

    async def ahealth(self) -> bool:
        """True when at least one replica lists its models."""
        client, _ = self._aclient()
        t = min(self.timeout, 5.0)
        for url in self.base_urls:
            try:
                resp = await within(client.get(f"{url}/models", timeout=t), t)
            except (httpx.HTTPError, TimeoutError):
                continue
            if resp.status_code == 200:
                return True
        return False

    def health(self) -> bool:
        """True when at least one replica lists its models."""
        try:
            return self._sync_loop.run(
                self.ahealth(), min(self.timeout, 5.0) * len(self.base_urls) + 1
            )
        except TimeoutError:
            return False

    def close(self) -> None:
        own = self._sync_loop.loop
        if own is not None and own in self._aclients:
            client, _ = self._aclients.pop(own)
            with contextlib.suppress(TimeoutError, RuntimeError):
                self._sync_loop.run(client.aclose(), 5)
        self._sync_loop.close()
        for loop, (client, _) in list(self._aclients.items()):
            if not loop.is_closed():
                try:
                    if loop.is_running():
                        loop.call_soon_threadsafe(_schedule_close, client)
                    else:
                        loop.run_until_complete(client.aclose())
                except RuntimeError:
                    pass
        self._aclients.clear()


_CLOSING: set[asyncio.Future[None]] = set()


def _schedule_close(client: httpx.AsyncClient) -> None:
    task = asyncio.ensure_future(client.aclose())
    _CLOSING.add(task)  # keep a reference until it finishes
    task.add_done_callback(_CLOSING.discard)


class _Attempts:
    """The retry policy of one request: which replica next, how long to wait, when to stop."""

    def __init__(self, owner: OpenAICompatClassifier, deadline: float | None) -> None:
        self.owner = owner
        self.deadline = deadline
        self.attempt = 0
        self.tried: set[str] = set()
        self.url = ""
        self.last = "no attempt made"

    def begin(self) -> tuple[str, float]:
        """The replica for the next attempt and its deadline in seconds (raises when the
        budget is gone). While other replicas are untried, an attempt gets an equal share of
        what is left, so one hung replica cannot spend the whole budget."""
        self.url = self.owner._pick(self.tried)
        self.tried.add(self.url)
        if self.deadline is None:
            return self.url, self.owner.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ClassifierTimeout(f"the time budget ran out ({self.last})")
        untried = sum(1 for u in self.owner.base_urls if u not in self.tried)
        chances = 1 + min(untried, self.owner.max_retries - self.attempt)
        return self.url, min(self.owner.timeout, left / max(chances, 1))

    def failed(self, err: Exception) -> float | ClassifierError:
        """Record a retryable failure: the pause before the next attempt, or the final error."""
        if isinstance(err, (httpx.TimeoutException, TimeoutError)):
            self.last, down = f"{self.url} timed out", True
        elif isinstance(err, _Retryable):
            self.last, down = str(err), err.mark_down
        else:
            self.last, down = f"{self.url} unreachable ({type(err).__name__})", True
        if down:
            self.owner._mark_down(self.url)
        if self.attempt >= self.owner.max_retries:
            return ClassifierUnavailable(f"gave up after {self.attempt + 1} attempts: {self.last}")
        pause = self.owner._delay(self.attempt)
        self.attempt += 1
        if self.deadline is not None and time.monotonic() + pause >= self.deadline:
            return ClassifierTimeout(f"the time budget ran out while retrying: {self.last}")
        return pause


# -- one-line specs -------------------------------------------------------------------------------

_OPTIONS = {
    "model": str,
    "api_key_env": str,
    "fold_response": spec_bool,
    "timeout": spec_number,
    "max_retries": int,
    "max_concurrency": int,
    "cooldown_s": spec_number,
    "logprobs": spec_bool,
    "cache_salt": spec_bool,
}


def _check_url(url: str) -> None:
    """A base URL with a host and, if given, a port in range (a configuration error here, not
    a failed check at run time)."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as err:
        raise ConfigError(f"'{url}' is not a usable URL: {err}") from None
    if not parsed.host or parsed.host.startswith("/"):
        raise ConfigError(f"'{url}' names no host, e.g. vllm://localhost:8000/v1")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"'{url}' has port {port}, out of range")


def _make_factory(default_https: bool, fold: bool) -> Factory:
    def factory(rest: str, options: dict[str, Any]) -> tuple[str, Any]:
        https = default_https
        if not rest.startswith("//"):
            raise ConfigError(
                f"an endpoint spec is SCHEME://HOST:PORT/v1, and {rest!r} after the scheme "
                "lacks the '//': write e.g. vllm://localhost:8000/v1"
            )
        hosts, _, query = rest.removeprefix("//").partition("?")
        params: dict[str, Any] = {}
        for k, v in parse_qsl(query):
            if k == "api_key":
                raise ConfigError("do not put API keys in a spec; set api_key_env=VARIABLE instead")
            conv = _OPTIONS.get(k)
            if conv is None:
                raise ConfigError(
                    f"unknown option '{k}' in the endpoint spec; known: {', '.join(_OPTIONS)}"
                )
            try:
                params[k] = conv(v)  # type: ignore[operator]
            except (KeyError, ValueError):
                raise ConfigError(f"bad value '{v}' for option '{k}'") from None
        if fold:
            params.setdefault("fold_response", True)
        params.update(options)
        urls = [
            f"{'https' if https else 'http'}://{h.strip()}" for h in hosts.split(",") if h.strip()
        ]
        if not urls:
            raise ConfigError(
                "the endpoint spec names no host, e.g. openai://localhost:8000/v1?model=..."
            )
        for u in urls:
            _check_url(u)
        key = "openai:" + ",".join(urls) + "|" + repr(sorted(params.items()))
        return key, lambda: OpenAICompatClassifier(urls, **params)

    return factory


#: the specs this backend builds from (read by :mod:`guard_plugin.classifiers.registry`)
SCHEMES: dict[str, Factory] = {
    scheme: _make_factory(https, fold)
    for scheme, https, fold in (
        ("openai", False, False),
        ("openai+https", True, False),
        ("vllm", False, False),
        ("vllm+https", True, False),
        ("nim", False, False),
        ("nim+https", True, False),
        ("sglang", False, True),
        ("sglang+https", True, True),
    )
}
