"""Policies: validation with useful errors, compilation, the tenant store."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from guard_plugin import Action, Policy, PolicyError, PolicyStore, Surface, load_policy
from guard_plugin.errors import UnknownTenantError
from guard_plugin.policy import CUSTOM_POLICY_PREAMBLE, CustomPolicy, compile_policy


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BAD_FILES = [
    ("bad_yaml.yaml", "actions: [block\n", None, "invalid YAML at line"),
    ("unknown_key.yaml", "on_eror: block\n", "on_eror", "unknown key; allowed keys here are"),
    ("nested_unknown.yaml", "media:\n  max_pages: 3\n", "media.max_pages", "max_pdf_pages"),
    (
        "unknown_cat.yaml",
        "categories_off: [Violense]\n",
        "categories_off",
        "unknown category 'Violense'",
    ),
    (
        "unknown_cat_action.yaml",
        "actions:\n  input:\n    categories:\n      Viol: allow\n",
        "actions.input.categories",
        "unknown category",
    ),
    ("empty_custom.yaml", "custom_policy: {}\n", "custom_policy", "custom_policy is empty"),
    ("blank_text.yaml", "custom_policy:\n  text: '  '\n", "custom_policy", "'text' is empty"),
    (
        "no_disallowed.yaml",
        "custom_policy:\n  name: X\n",
        "custom_policy",
        "at least one 'disallowed'",
    ),
    ("bad_action.yaml", "actions:\n  input: destroy\n", "actions.input", "block"),
    ("bad_on_error.yaml", "on_error: maybe\n", "on_error", "block"),
    ("not_mapping.yaml", "- a\n- b\n", None, "must be a mapping"),
    ("negative_budget.yaml", "time_budget_ms: -1\n", "time_budget_ms", "greater than 0"),
    (
        "builtin_as_custom.yaml",
        "custom_categories:\n  - name: violence\n",
        "custom_categories",
        "is a built-in category",
    ),
    (
        "mode_without_policy.yaml",
        "model:\n  mode: custom_policy\n",
        "model.mode",
        "no custom_policy",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "field", "needle"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_bad_policy_files_name_file_field_and_fix(
    tmp_path: Path, name: str, text: str, field: str | None, needle: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    msg = str(info.value)
    assert str(path) in msg
    assert needle in msg
    if field:
        assert f"field '{field}'" in msg


def test_id_must_match_file_name(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="differs from the file name"):
        load_policy(write(tmp_path, "acme.yaml", "id: other\n"))
    assert load_policy(write(tmp_path, "acme2.yaml", "version: 3\n")).id == "acme2"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="file not found"):
        load_policy(tmp_path / "nope.yaml")


def test_yaml_off_and_on_mean_reasoning_modes(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "a.yaml", "reasoning: off\n")).reasoning == "off"
    assert load_policy(write(tmp_path, "b.yaml", "reasoning: on\n")).reasoning == "on"
    assert load_policy(write(tmp_path, "c.yaml", "reasoning: audit\n")).reasoning == "audit"


def test_policy_is_frozen_and_rejects_unknown_keys() -> None:
    p = Policy()
    with pytest.raises(ValidationError):
        p.on_error = "allow"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="nonsense"):
        Policy(nonsense=1)  # type: ignore[call-arg]


def test_shipped_policies_load(policies_dir: Path) -> None:
    store = PolicyStore.from_dir(policies_dir)
    assert set(store.tenants()) >= {"default", "kids_education", "devops", "healthcare"}
    assert store.get("devops").mode == "custom_taxonomy"
    assert store.get("healthcare").policy.reasoning == "audit"


def test_store_unknown_tenant_modes(policies_dir: Path) -> None:
    # a store that names tenants refuses unknown ones unless told otherwise
    strict = PolicyStore.from_dir(policies_dir)
    assert strict.unknown_tenant == "error"
    with pytest.raises(UnknownTenantError, match="nobody"):
        strict.get("nobody")
    assert strict.get(None) is strict.default
    lenient = PolicyStore.from_dir(policies_dir, unknown_tenant="default")
    assert lenient.get("nobody") is lenient.default
    # a store of one policy serves it to everyone
    assert PolicyStore().unknown_tenant == "default"
    with pytest.raises(PolicyError, match="unknown_tenant"):
        PolicyStore(unknown_tenant="sometimes")  # type: ignore[arg-type]


def test_store_from_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not a folder"):
        PolicyStore.from_dir(tmp_path / "missing")


def test_compile_builtin_mode() -> None:
    c = compile_policy(Policy())
    assert c.mode == "builtin"
    assert dict(c.template_kwargs) == {"request_categories": "/categories"}
    assert (
        compile_policy(Policy(model={"request_categories": False})).template_kwargs[
            "request_categories"
        ]
        == "/no_categories"
    )


def test_compile_suppression_and_custom_categories_into_taxonomy() -> None:
    c = compile_policy(
        Policy(
            categories_off=["violence", "Controlled Substances"],
            custom_categories=[
                {"name": "Medical Misinformation", "description": "Unproven cures."}
            ],
        )
    )
    tax = c.template_kwargs["custom_taxonomy"]
    assert c.mode == "custom_taxonomy"
    assert "Violence." not in tax and "Controlled/Regulated Substances" not in tax
    assert tax.startswith("S1: Sexual.")
    assert tax.splitlines()[-1] == "S23: Medical Misinformation. Unproven cures."
    assert c.is_suppressed("VIOLENCE") and c.is_suppressed("Controlled/Regulated Substances")


def test_builtin_mode_with_suppression_keeps_model_taxonomy() -> None:
    c = compile_policy(Policy(model={"mode": "builtin"}, categories_off=["Profanity"]))
    assert "custom_taxonomy" not in c.template_kwargs
    assert c.is_suppressed("profanity")


def test_structured_custom_policy_renders_documented_shape() -> None:
    cp = CustomPolicy(
        name="Finance",
        description="A bank assistant.",
        disallowed=["Giving stock tips"],
        allowed=["Explaining fees"],
    )
    text = cp.render()
    assert text.splitlines() == [
        CUSTOM_POLICY_PREAMBLE,
        "### Policy",
        "Name: Finance",
        "Description: A bank assistant.",
        "Disallowed Behaviors:",
        "- Giving stock tips",
        "Allowed Behaviors:",
        "- Explaining fees",
    ]
    c = compile_policy(Policy(custom_policy=cp))
    assert c.mode == "custom_policy" and c.template_kwargs["custom_policy"] == text
    raw = compile_policy(Policy(custom_policy={"text": "  my policy  "}))
    assert raw.template_kwargs["custom_policy"] == "my policy"


def test_custom_policy_allows_own_category_names_in_actions() -> None:
    p = Policy(
        custom_policy={"text": "x"}, actions={"input": {"categories": {"Stock Tips": "rewrite"}}}
    )
    assert compile_policy(p).action_for(Surface.INPUT, ["stock tips"]) is Action.REWRITE


def test_action_resolution_strictest_override_wins() -> None:
    c = compile_policy(
        Policy(
            actions={
                "input": {"default": "rewrite", "categories": {"Profanity": "allow"}},
                "categories": {"Violence": "escalate", "Profanity": "block"},
            }
        )
    )
    assert c.action_for(Surface.INPUT, []) is Action.REWRITE
    assert (
        c.action_for(Surface.INPUT, ["Profanity"]) is Action.ALLOW
    )  # surface override beats global
    assert c.action_for(Surface.TOOL, ["Profanity"]) is Action.BLOCK
    assert c.action_for(Surface.INPUT, ["Profanity", "Violence"]) is Action.ESCALATE
    assert c.action_for(Surface.INPUT, ["Profanity", "Harassment"]) is Action.REWRITE


def test_fingerprint_changes_with_content_only() -> None:
    a, b = compile_policy(Policy()), compile_policy(Policy())
    assert a.fingerprint == b.fingerprint
    assert compile_policy(Policy(on_error="allow")).fingerprint != a.fingerprint


def test_every_problem_at_once_unknown_categories_with_schema_errors() -> None:
    from guard_plugin.policy import policy_from_mapping

    with pytest.raises(PolicyError) as info:
        policy_from_mapping(
            {"actions": {"input": "escalat"}, "categories_off": ["Violense"], "foo": 1}
        )
    fields = [f for f, _ in info.value.problems]
    assert fields == ["actions.input", "foo", "categories_off"]
    text = str(info.value)
    assert "'escalat' is not an action" in text and "Did you mean 'Violence'?" in text
