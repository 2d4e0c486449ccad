"""Fixtures shared by the training tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from raygym.config import validate_experiment
from raygym.data.dataset import PreparedDataset


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, ray_session: None,
             make_s2_config: Callable[..., dict[str, Any]]) -> PreparedDataset:
    """The S2 set prepared once at 64 x 64, for every training test module."""
    from raygym.data.prepare import prepare_dataset

    path = tmp_path_factory.getbasetemp() / "s2_prepared_64"
    prepare_dataset(validate_experiment(make_s2_config(path)), log=lambda *a, **k: None)
    return PreparedDataset(path)


@pytest.fixture(scope="module")
def base_sections(prepared: PreparedDataset, make_s2_config: Callable[..., dict[str, Any]]
                  ) -> dict[str, Any]:
    """The S2 experiment sections of :func:`prepared` (``make_config`` builds on them)."""
    return make_s2_config(prepared.path)
