"""``raygym.predict.options``: one normalised settings object, ranges refused by option."""

from __future__ import annotations

from pathlib import Path

import pytest

from raygym.errors import RaygymError


def test_options_normalise_paths() -> None:
    from raygym.predict import PredictOptions

    options = PredictOptions(out="out", extra_bands=["nir", Path("swir")])
    assert options.out == Path("out")
    assert options.extra_bands == (Path("nir"), Path("swir"))


@pytest.mark.parametrize(("field", "value", "key"), [
    ("overlap", 1.0, "--overlap"), ("overlap", -0.1, "--overlap"),
    ("scale", 0.0, "--scale"), ("scale", -1.0, "--scale"), ("min_area", 5.0, "--min-area")])
def test_out_of_range_options_are_refused(tmp_path: Path, field: str, value: float, key: str
                                          ) -> None:
    from raygym.predict import PredictOptions

    PredictOptions(out=tmp_path).check_ranges()
    with pytest.raises(RaygymError) as err:
        PredictOptions(out=tmp_path, **{field: value}).check_ranges()
    assert err.value.key == key


def test_min_area_must_not_be_negative(tmp_path: Path) -> None:
    from raygym.predict import PredictOptions

    PredictOptions(out=tmp_path, polygons=True, min_area=5.0).check_ranges()
    with pytest.raises(RaygymError, match="min-area must be >= 0"):
        PredictOptions(out=tmp_path, polygons=True, min_area=-1.0).check_ranges()
