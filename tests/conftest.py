from __future__ import annotations

from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[1] / "guard_plugin" / "policies"


@pytest.fixture
def policies_dir() -> Path:
    return POLICIES
