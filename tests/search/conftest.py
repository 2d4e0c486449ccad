"""The search tests' shared fixture: a hand-made curve table (``curve_tables.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .curve_tables import make_grid_table


@pytest.fixture(scope="module")
def grid_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 configurations x 2 seeds x 8 epochs, one clear winner (``WINNER``)."""
    return make_grid_table(tmp_path_factory.mktemp("curves"))
