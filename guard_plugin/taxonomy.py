"""The Nemotron Content Safety taxonomy (Aegis 2.0, S1..S24) and category-name handling.

The model emits category *names*, joined by ``", "``. With a custom taxonomy or policy it emits
the caller's names, which pass through :func:`canonical_name` unchanged (apart from white space).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CATEGORIES",
    "Category",
    "canonical_name",
    "category_key",
    "lookup",
    "render_taxonomy",
]


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    aliases: tuple[str, ...] = ()
    description: str | None = None


CATEGORIES: tuple[Category, ...] = (
    Category("S1", "Violence"),
    Category("S2", "Sexual"),
    Category("S3", "Criminal Planning/Confessions", ("Criminal Planning", "Criminal Confessions")),
    Category("S4", "Guns and Illegal Weapons", ("Guns/Illegal Weapons", "Weapons")),
    Category(
        "S5",
        "Controlled/Regulated Substances",
        ("Controlled Substances", "Regulated Substances", "Drugs"),
    ),
    Category("S6", "Suicide and Self Harm", ("Suicide/Self Harm", "Self Harm", "Self-Harm")),
    Category("S7", "Sexual (minor)", ("Sexual Minor", "Sexual (minors)", "CSAM")),
    Category("S8", "Hate/Identity Hate", ("Hate", "Identity Hate", "Hate Speech")),
    Category("S9", "PII/Privacy", ("PII", "Privacy")),
    Category("S10", "Harassment"),
    Category("S11", "Threat", ("Threats",)),
    Category("S12", "Profanity"),
    Category("S13", "Needs Caution"),
    Category("S14", "Other"),
    Category("S15", "Manipulation"),
    Category("S16", "Fraud/Deception", ("Fraud", "Deception")),
    Category("S17", "Malware"),
    Category("S18", "High Risk Gov Decision Making", ("High Risk Government Decision Making",)),
    Category(
        "S19",
        "Political/Misinformation/Conspiracy",
        ("Political", "Misinformation", "Conspiracy"),
    ),
    Category(
        "S20",
        "Copyright/Trademark/Plagiarism",
        ("Copyright", "Trademark", "Plagiarism"),
    ),
    Category("S21", "Unauthorized Advice"),
    Category("S22", "Illegal Activity"),
    Category("S23", "Immoral/Unethical", ("Immoral", "Unethical")),
    Category("S24", "Economic Harm"),
)

_SPACES = re.compile(r"\s+")
_SLASH = re.compile(r"\s*/\s*")


def category_key(name: str) -> str:
    """The comparison key of a category name: case-folded, white space and slashes normalised,
    a trailing period dropped."""
    key = _SPACES.sub(" ", name.strip()).rstrip(".").strip()
    return _SLASH.sub("/", key).casefold()


_BY_KEY: dict[str, Category] = {}
for _cat in CATEGORIES:
    for _n in (_cat.name, _cat.code, *_cat.aliases):
        _BY_KEY[category_key(_n)] = _cat


def lookup(name_or_code: str) -> Category | None:
    """The built-in category for a name, alias or S-code (case-insensitive), else ``None``."""
    return _BY_KEY.get(category_key(name_or_code))


def canonical_name(name: str) -> str:
    """The exact model name of a built-in category, or the cleaned-up name of a custom one."""
    cat = lookup(name)
    if cat is not None:
        return cat.name
    return _SPACES.sub(" ", name.strip()).rstrip(".").strip()


def render_taxonomy(categories: Iterable[tuple[str, str | None]]) -> str:
    """The category list in the model's ``S<n>: <name>.`` shape, numbered from S1.

    Each item is ``(name, description)``; a description follows the name on the same line.
    """
    lines = []
    for i, (name, description) in enumerate(categories, start=1):
        line = f"S{i}: {name}."
        if description:
            line += f" {description.strip()}"
        lines.append(line)
    return "\n".join(lines)
