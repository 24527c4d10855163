"""Measure a policy against labelled examples: how a team iterates on a custom policy.

A data file is JSON Lines, one example per line::

    {"id": "q1", "text": "how do I pick a lock", "label": "unsafe",
     "categories": ["Criminal Planning/Confessions"], "language": "en"}
    {"id": "r7", "text": "summarise this", "response": "Here is ...", "label": "safe"}

``text`` (the user turn or a tool result) and ``label`` (``safe`` / ``unsafe``) are required.
``response`` makes it a response check (``label`` then rates the response); ``surface``
overrides the surface; ``categories``, ``language``, ``tenant`` and ``id`` are optional.

:func:`evaluate` runs every example through a :class:`~guard_plugin.Guard` (concurrently, so
the local backend batches) and returns an :class:`EvalReport`: precision, recall, F1 and
false-positive rate overall, per language and per category, a sweep of P(unsafe) thresholds
where the backend reports scores, and the disagreements with the decision's trace. Checks
that fail are counted apart as errors: a guard blocks them (fail closed), but they say
nothing about the policy, so they stay out of the rates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from guard_plugin import taxonomy
from guard_plugin.decision import Decision, outcome_for
from guard_plugin.errors import ConfigError
from guard_plugin.policy import CompiledPolicy, Thresholds, check_tenant_id, compile_policy
from guard_plugin.prompting import SafetyInput
from guard_plugin.types import Surface

__all__ = [
    "Counts",
    "EvalExample",
    "EvalReport",
    "EvalResult",
    "evaluate",
    "load_examples",
    "write_plots",
]

_LABELS = ("safe", "unsafe")


@dataclass(frozen=True)
class EvalExample:
    id: str
    text: str
    label: str
    response: str | None = None
    surface: Surface = Surface.INPUT
    categories: tuple[str, ...] = ()
    language: str = "und"
    tenant: str | None = None

    def safety_input(self) -> SafetyInput:
        return SafetyInput(text=self.text, response=self.response, surface=self.surface)


def _example(row: Any, where: str, n: int) -> EvalExample:
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: expected a JSON object, not {type(row).__name__}")
    unknown = set(row) - {
        "id",
        "text",
        "label",
        "response",
        "surface",
        "categories",
        "language",
        "tenant",
    }
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    text, label = row.get("text"), row.get("label")
    if not isinstance(text, str):
        raise ConfigError(f"{where}: 'text' must be a string (the user turn or tool result)")
    if label not in _LABELS:
        raise ConfigError(f"{where}: 'label' must be 'safe' or 'unsafe', not {label!r}")
    response = row.get("response")
    if response is not None and not isinstance(response, str):
        raise ConfigError(f"{where}: 'response' must be a string")
    try:
        surface = Surface(row.get("surface") or ("response" if response is not None else "input"))
    except ValueError:
        raise ConfigError(
            f"{where}: 'surface' must be one of {', '.join(s.value for s in Surface)}"
        ) from None
    if surface is Surface.RESPONSE and response is None:
        raise ConfigError(f"{where}: a response example needs 'response'")
    cats = row.get("categories") or []
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise ConfigError(f"{where}: 'categories' must be a list of names")
    tenant = row.get("tenant")
    if tenant is not None:
        try:
            check_tenant_id(tenant)
        except ConfigError as err:
            raise ConfigError(f"{where}: 'tenant': {err}") from None
    return EvalExample(
        id=str(row.get("id", n)),
        text=text,
        label=label,
        response=response,
        surface=surface,
        categories=tuple(dict.fromkeys(taxonomy.canonical_name(c) for c in cats)),
        language=str(row.get("language") or "und"),
        tenant=tenant,
    )


def load_examples(path: str | Path) -> list[EvalExample]:
    """Read a JSON Lines data file (UTF-8, a byte-order mark allowed); every problem names its
    line. Lines end at ``\n`` only: U+2028, U+2029 and U+0085 are characters of a string."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8-sig").split("\n")
    except OSError as err:
        raise ConfigError(f"cannot read {p}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p} is not UTF-8 (byte {err.start}): save it as UTF-8") from None
    examples = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{p}, line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}: not JSON ({err.msg})") from None
        examples.append(_example(row, where, n))
    if not examples:
        raise ConfigError(f"{p} holds no examples")
    return examples


@dataclass(frozen=True)
class EvalResult:
    example: EvalExample
    decision: Decision

    @property
    def predicted(self) -> str | None:
        """``unsafe`` / ``safe`` as the guard classified it; ``None`` for a failed check."""
        if self.decision.is_error:
            return None
        return "unsafe" if self.decision.status == "unsafe" else "safe"

    @property
    def agrees(self) -> bool:
        return self.predicted == self.example.label


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def add(self, gold: bool, predicted: bool) -> None:
        if gold and predicted:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif gold:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        if math.isnan(p) or math.isnan(r) or p + r == 0:
            return math.nan if math.isnan(p) or math.isnan(r) else 0.0
        return 2 * p * r / (p + r)

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "n": self.n,
            "precision": _num(self.precision),
            "recall": _num(self.recall),
            "f1": _num(self.f1),
            "fpr": _num(self.fpr),
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


@dataclass
class EvalReport:
    results: list[EvalResult]
    overall: Counts = field(default_factory=Counts)
    by_language: dict[str, Counts] = field(default_factory=dict)
    by_category: dict[str, Counts] = field(default_factory=dict)
    #: (threshold, counts) for thresholds 0.01 .. 0.99 over the examples with a score
    sweep: list[tuple[float, Counts]] = field(default_factory=list)
    scored: int = 0

    @property
    def errors(self) -> list[EvalResult]:
        return [r for r in self.results if r.predicted is None]

    @property
    def disagreements(self) -> list[EvalResult]:
        return [r for r in self.results if r.predicted is not None and not r.agrees]

    def best_threshold(self) -> tuple[float, Counts] | None:
        """The threshold with the highest F1 (the lowest such one on a tie)."""
        rated = [(t, c) for t, c in self.sweep if not math.isnan(c.f1)]
        return max(rated, key=lambda tc: (tc[1].f1, -tc[0])) if rated else None

    def to_dict(self) -> dict[str, Any]:
        best = self.best_threshold()
        return {
            "examples": len(self.results),
            "errors": len(self.errors),
            "scored": self.scored,
            "overall": self.overall.as_dict(),
            "by_language": {k: v.as_dict() for k, v in sorted(self.by_language.items())},
            "by_category": {k: v.as_dict() for k, v in sorted(self.by_category.items())},
            "best_threshold": None if best is None else {"threshold": best[0], **best[1].as_dict()},
            "sweep": [{"threshold": t, **c.as_dict()} for t, c in self.sweep],
        }


def _report(
    results: list[EvalResult], policy_for: Callable[[str | None], CompiledPolicy]
) -> EvalReport:
    rep = EvalReport(results)
    categories = {c for r in results for c in r.example.categories}
    for r in results:
        if r.predicted is None:
            continue
        gold, pred = r.example.label == "unsafe", r.predicted == "unsafe"
        rep.overall.add(gold, pred)
        rep.by_language.setdefault(r.example.language, Counts()).add(gold, pred)
        # Per category, multi-label: the example holds it; the guard named it.
        for cat in categories:
            rep.by_category.setdefault(cat, Counts()).add(
                cat in r.example.categories, pred and cat in r.decision.categories
            )
    scored = [r for r in results if r.predicted is not None and r.decision.score is not None]
    rep.scored = len(scored)
    if scored:
        at: dict[tuple[str | None, float], CompiledPolicy] = {}
        for step in range(1, 100):
            t = step / 100
            c = Counts()
            for r in scored:
                key = (r.decision.tenant, t)
                if key not in at:
                    at[key] = _with_threshold(policy_for(r.decision.tenant), t)
                c.add(r.example.label == "unsafe", _unsafe_under(r.decision, at[key]))
            rep.sweep.append((t, c))
    return rep


def _with_threshold(policy: CompiledPolicy, t: float) -> CompiledPolicy:
    """The tenant's policy with threshold ``t`` on every surface, the rest as it is."""
    thresholds = Thresholds(input=t, tool=t, response=t)
    return compile_policy(policy.policy.model_copy(update={"thresholds": thresholds}))


def _unsafe_under(d: Decision, policy: CompiledPolicy) -> bool:
    """Whether the guard the tenant runs, with ``policy``'s threshold, calls ``d``'s content
    unsafe: each part's verdict decided again (category suppression and all)."""
    parts = [
        outcome_for(p.index, p.ref, p.verdict, policy, d.surface) if p.verdict is not None else p
        for p in d.parts
    ]
    return any(p.status == "unsafe" for p in parts)


def evaluate(
    guard: Any,
    examples: Sequence[EvalExample],
    *,
    tenant: str | None = None,
    concurrency: int = 16,
    progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """Check every example through ``guard`` (a :class:`~guard_plugin.Guard`) and measure.
    ``tenant`` applies where an example names none; ``progress`` is called once per example
    done. Every tenant is looked up before any check runs: an unknown one is a
    :class:`ConfigError` naming the example."""
    if concurrency < 1:
        raise ConfigError("concurrency must be at least 1")
    for ex in examples:
        try:
            guard.policies.get(ex.tenant or tenant)
        except ConfigError as err:
            raise ConfigError(f"example {ex.id}: {err}") from None

    def one(ex: EvalExample) -> EvalResult:
        d = guard.check(ex.safety_input(), surface=ex.surface, tenant=ex.tenant or tenant)
        if progress is not None:
            progress(1)
        return EvalResult(ex, d)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="guard-eval") as pool:
        results = list(pool.map(one, examples))
    return _report(results, guard.policies.get_or_default)


def write_plots(report: EvalReport, folder: str | Path) -> list[Path]:
    """The confusion matrix (at the policy as configured) and, where examples have scores,
    the precision-recall curve of the threshold sweep, as PNG files. Needs matplotlib
    (``pip install 'guard-plugin[eval]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'guard-plugin[eval]'") from None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    c = report.overall
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=120)
    grid = [[c.tn, c.fp], [c.fn, c.tp]]
    ax.imshow(grid, cmap="Blues")
    for i in range(2):
        for j in range(2):
            dark = grid[i][j] > max(max(r) for r in grid) / 2
            ax.text(
                j,
                i,
                str(grid[i][j]),
                ha="center",
                va="center",
                fontsize=14,
                color="white" if dark else "black",
            )
    ax.set_xticks([0, 1], ["safe", "unsafe"])
    ax.set_yticks([0, 1], ["safe", "unsafe"])
    ax.set_xlabel("guard")
    ax.set_ylabel("label")
    ax.set_title(f"confusion ({c.n} checks, {len(report.errors)} errors apart)", fontsize=10)
    written.append(_save(plt, fig, out / "confusion.png"))

    if report.sweep:
        pts = [
            (cn.recall, cn.precision, t) for t, cn in report.sweep if not math.isnan(cn.precision)
        ]
        fig, ax = plt.subplots(figsize=(4.6, 3.8), dpi=120)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", lw=1)
        best = report.best_threshold()
        if best is not None:
            t, cn = best
            _mark(ax, cn, f"best F1 {cn.f1:.2f} at {t:.2f}", (-110, -18), color="crimson")
        if not (math.isnan(c.recall) or math.isnan(c.precision)):
            _mark(ax, c, "as configured", (-80, 8), marker="x", color="black")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"P(unsafe) threshold sweep ({report.scored} scored checks)", fontsize=10)
        written.append(_save(plt, fig, out / "pr_curve.png"))
    return written


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _mark(ax: Any, c: Counts, label: str, offset: tuple[int, int], **style: Any) -> None:
    """One operating point on the precision-recall plot, with its label."""
    ax.scatter([c.recall], [c.precision], zorder=3, **style)
    ax.annotate(
        label, (c.recall, c.precision), textcoords="offset points", xytext=offset, fontsize=9
    )


def disagreement_rows(report: EvalReport) -> Iterable[dict[str, Any]]:
    """The disagreements and errors as JSON-ready rows, with the decision's trace."""
    for r in [*report.disagreements, *report.errors]:
        d = r.decision
        yield {
            "id": r.example.id,
            "label": r.example.label,
            "predicted": r.predicted or "error",
            "score": d.score,
            "surface": d.surface.value,
            "categories": list(d.categories),
            "gold_categories": list(r.example.categories),
            "language": r.example.language,
            "text": r.example.text,
            "response": r.example.response,
            "error": d.error,
            "reasoning": d.reasoning,
            "request_id": d.request_id,
        }
