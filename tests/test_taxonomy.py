from __future__ import annotations

import pytest

from guard_plugin import taxonomy


def test_twenty_four_categories_with_exact_names() -> None:
    assert [c.code for c in taxonomy.CATEGORIES] == [f"S{i}" for i in range(1, 25)]
    names = {c.code: c.name for c in taxonomy.CATEGORIES}
    assert names["S3"] == "Criminal Planning/Confessions"
    assert names["S5"] == "Controlled/Regulated Substances"
    assert names["S7"] == "Sexual (minor)"
    assert names["S18"] == "High Risk Gov Decision Making"
    assert names["S24"] == "Economic Harm"


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("violence", "Violence"),
        ("S1", "Violence"),
        ("s12", "Profanity"),
        ("Controlled Substances", "Controlled/Regulated Substances"),
        ("controlled / regulated substances", "Controlled/Regulated Substances"),
        ("  PII  ", "PII/Privacy"),
        ("Hate/Identity Hate.", "Hate/Identity Hate"),
        ("sexual (MINOR)", "Sexual (minor)"),
        ("Suicide/Self Harm", "Suicide and Self Harm"),
    ],
)
def test_lookup_is_case_insensitive_with_aliases(query: str, name: str) -> None:
    cat = taxonomy.lookup(query)
    assert cat is not None and cat.name == name
    assert taxonomy.canonical_name(query) == name


def test_custom_names_pass_through_cleaned() -> None:
    assert taxonomy.lookup("Medical Misinformation") is None
    assert taxonomy.canonical_name("  Medical   Misinformation. ") == "Medical Misinformation"


def test_render_taxonomy() -> None:
    assert taxonomy.render_taxonomy([("A", None), ("B", "desc")]) == "S1: A.\nS2: B. desc"
