"""Every notebook runs top to bottom and shows the decisions it is about."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

EXPECTED = {
    "01_langgraph_blocked_tool_calls": [
        "response  send_email   BLOCK",
        "emails sent: 0",
        "tool      screenshot   REWRITE",
        "pages the model read: ['Q3 revenue grew 4%.', 'Outlook unchanged.']",
        "INTERRUPT: send_email",
        "ESCALATE",
    ],
    "02_langchain_middleware_and_callbacks": [
        "send_email   BLOCK",
        "INTERRUPT: send_email",
        "while it waits: This answer is being held for review by a person.",
        "ALLOW     Violence, Threat  (reviewer: approve)",
        "emails sent after approval: 1 | final: Sent.",
        "unsafe words shown: False",
        "state == shown: True",
        "safe: Paris.",
        "BLOCKED by callback: input",
        "BLOCKED by callback: response",
    ],
    "03_nemo_guardrails": [
        "input : I'm sorry, I can't help with that.",
        "kids  : Let's talk about something else!",
        "output: I'm sorry, I can't help with that.",
        "tool  : I'm sorry, I can't help with that.",
        "safe  : Here is a helpful answer.",
        "exception GuardPluginInputException",
    ],
    "04_custom_policies": [
        "devops          ALLOW",
        "kids_education  BLOCK",
        "S25: Unverified Medical Claims",
        "reasoning",
        "REJECTED: draft {'on_eror': 'block'}: field 'on_eror': unknown key; allowed keys",
        "2 problems:\n  - field 'reasoning'",
    ],
}


def output_text(nb) -> str:
    """What the code cells showed, a cell per line. Stream outputs of one cell are joined as
    they are: on a loaded machine the kernel may send one print in several messages."""
    return "\n".join(
        "".join(
            o["text"] if "text" in o else str(o.get("data", {}).get("text/plain", "")) + "\n"
            for o in c.get("outputs", [])
        )
        for c in nb.cells
        if c.cell_type == "code"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_committed_notebook_shows_its_decisions(name: str) -> None:
    """What a reader sees on GitHub: rendered headings, outputs present, no errors, the
    stand-in labelled. Regenerate with `make notebooks`."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            assert not cell.source.startswith("md"), cell.source[:40]
        else:
            assert cell.get("execution_count"), f"a cell never run: {cell.source[:60]!r}"
            assert not any(o.get("output_type") == "error" for o in cell["outputs"])
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    text = output_text(nb)
    assert "NOT a safety model" in text
    for needle in EXPECTED[name]:
        assert needle in text, f"{needle!r} not in the committed output of {name}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_and_shows_its_decisions(name: str, monkeypatch) -> None:
    monkeypatch.delenv("GUARD_PLUGIN_CLASSIFIER", raising=False)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:  # run from scratch, not on the committed outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        # on a loaded machine a cell's output can arrive late: wait for it, and fail loudly
        # rather than read a cell with an output missing
        iopub_timeout=30,
        raise_on_iopub_timeout=True,
    )
    client.execute()
    text = output_text(nb)
    assert "NOT a safety model" in text
    for needle in EXPECTED[name]:
        assert needle in text, f"{needle!r} not in the output of {name}:\n{text}"


def test_every_notebook_is_covered() -> None:
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} == set(EXPECTED)
