"""Fixtures of the defect tests."""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.defects.typing_cases import described_set


@pytest.fixture(scope="module")
def described() -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (from the true masks) of 8 drawn frames per type and 8 never-labelled warps."""
    return described_set()
