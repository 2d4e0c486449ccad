"""``raygym.predict.command``: unreadable images are skipped and listed; the command fails
only when every image failed."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import S2, need, read_summary, s2_scene, string_console


def test_unreadable_files_are_skipped_and_listed(s2_models: dict[str, Path], tmp_path: Path
                                                 ) -> None:
    from raygym.predict import PredictOptions, predict_and_print

    images = tmp_path / "img"
    images.mkdir()
    for n in range(2):
        shutil.copy(s2_scene(n)[0], images)
    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    bands = [need(S2) / "nir"]
    console = string_console()
    code = predict_and_print(s2_models["artifact"], [images],
                             PredictOptions(out=tmp_path / "out", extra_bands=bands),
                             console=console)
    text = console.file.getvalue()
    assert code == 0
    assert "skipped 1 files" in text and "broken.jpg" in text
    assert len(read_summary(tmp_path / "out" / "summary.csv")) == 2

    bad = tmp_path / "bad"
    bad.mkdir()
    for n in range(2):  # named as S2's images, so that each finds its band file
        (bad / s2_scene(n)[0].name).write_bytes(b"garbage")
    console = string_console()
    code = predict_and_print(s2_models["artifact"], [bad],
                             PredictOptions(out=tmp_path / "out2", extra_bands=bands),
                             console=console)
    assert code == 1
    assert "all images failed" in console.file.getvalue()
    assert not (tmp_path / "out2").exists()  # the empty --out it created is removed again


def test_an_interrupted_prediction_leaves_no_empty_out_it_created(
        s2_models: dict[str, Path], tmp_path: Path) -> None:
    """Ctrl-C before the first map is written removes the --out (and parents) the run
    created; after one map, the folder and that map are kept; a folder the user made stays."""
    import pytest

    from raygym.predict import PredictOptions, predict_files

    images = tmp_path / "img"
    images.mkdir()
    for n in range(2):
        shutil.copy(s2_scene(n)[0], images)
    bands = [need(S2) / "nir"]

    def stop_at(k: int):
        def progress(n: int, total: int, name: str) -> None:
            if n == k:
                raise KeyboardInterrupt
        return progress

    out = tmp_path / "new" / "maps"
    with pytest.raises(KeyboardInterrupt):
        predict_files(s2_models["artifact"], [images],
                      PredictOptions(out=out, extra_bands=bands), progress=stop_at(0))
    assert not (tmp_path / "new").exists()
    with pytest.raises(KeyboardInterrupt):
        predict_files(s2_models["artifact"], [images],
                      PredictOptions(out=out, extra_bands=bands), progress=stop_at(1))
    assert any(out.glob("*_label.png"))
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(KeyboardInterrupt):
        predict_files(s2_models["artifact"], [images],
                      PredictOptions(out=mine, extra_bands=bands), progress=stop_at(0))
    assert mine.is_dir()
