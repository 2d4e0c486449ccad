"""``raygym.predict.inputs``: band files matched by the training key, the match rule, wrong
band counts and an output folder inside an input folder refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raygym.errors import DataError

from . import NIR_KEY, S2, S2_CLASSES, export_untrained, need, one_error_line, run_cli, s2_scene


def _s2_folders(root: Path, n: int) -> tuple[Path, Path]:
    """``root/img`` and ``root/nir`` holding the first ``n`` S2 scenes, named as in S2."""
    images, nirs = root / "img", root / "nir"
    images.mkdir()
    nirs.mkdir()
    for i in range(n):
        image, nir = s2_scene(i)
        shutil.copy(image, images)
        shutil.copy(nir, nirs)
    return images, nirs


def test_png_inputs_with_band_folder_use_the_training_key(s2_models: dict[str, Path],
                                                          tmp_path: Path) -> None:
    from raygym.predict import PredictOptions, predict_files

    images, nirs = _s2_folders(tmp_path, 2)
    out = tmp_path / "out"
    result = predict_files(s2_models["artifact"], [images],
                           PredictOptions(out=out, extra_bands=[nirs]))
    assert result.exit_code == 0 and len(result.rows) == 2
    for n in range(2):
        image, _ = s2_scene(n)
        label = np.asarray(Image.open(out / f"{image.stem}_label.png"))
        assert label.shape == Image.open(image).size[::-1]
        assert label.max() < 4


def test_a_manifest_trained_model_finds_band_files_named_as_in_training(
        tmp_path: Path) -> None:
    """Trained from a manifest (no key regex in its config), the model's card carries the
    naming rule prepare learnt, and prediction pairs S2's X-0.jpg with X_ir-0.jpg by it."""
    from raygym.config import validate_experiment
    from raygym.predict import PredictOptions, predict_files

    s2 = need(S2)
    config = validate_experiment({
        "name": "manifest", "data": {"manifest": str(s2 / "pairs.csv"), "classes": S2_CLASSES,
                                     "target_size": [64, 64], "prepared": str(tmp_path / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3}})
    rule = {"image": r"^(.*)(\-\d+)$", "band": r"^(.*)_ir(\-\d+)$"}
    images, nirs = _s2_folders(tmp_path, 2)
    learnt = export_untrained(config, tmp_path / "learnt", 4, seed=0, band_names=[rule])
    result = predict_files(learnt, [images], PredictOptions(out=tmp_path / "out",
                                                            extra_bands=[nirs]))
    assert result.exit_code == 0 and len(result.rows) == 2 and not result.skipped
    # without the rule (and no dataset on disk to learn it from) no band file is found for
    # any image: refused, naming the folder and how a file is matched; nothing written
    older = export_untrained(config, tmp_path / "older", 4, seed=0)
    with pytest.raises(DataError, match=r"none of the 2 images .* has its band file in this "
                       r"folder \(same stem, or a stem that starts with the image's\)"
                       ) as refused:
        predict_files(older, [images], PredictOptions(out=tmp_path / "out2",
                                                      extra_bands=[nirs]))
    assert refused.value.file == str(nirs) and refused.value.key == "--band"
    assert not (tmp_path / "out2").exists()
    # one image without its band file among others is skipped and listed, as before
    (images / "lone-0.jpg").write_bytes(s2_scene(0)[0].read_bytes())
    result = predict_files(learnt, [images], PredictOptions(out=tmp_path / "out3",
                                                            extra_bands=[nirs]))
    assert len(result.rows) == 2 and result.exit_code == 0
    assert [Path(f).name for f, _ in result.skipped] == ["lone-0.jpg"]
    assert "no matching band file" in result.skipped[0][1]


def test_an_older_model_card_takes_what_it_lacks_from_its_dataset_on_disk(
        s2_models: dict[str, Path]) -> None:
    """Exported before model cards carried the training factor and the band naming: both are
    read from the prepared dataset while it is on disk unchanged (same config hash)."""
    import json

    from raygym.data.dataset import read_card
    from raygym.inference.artifact import read_model_card

    artifact = s2_models["artifact"]
    written = json.loads((artifact / "model_card.json").read_text())["dataset"]
    assert "train_scale" not in written and "band_names" not in written
    card = read_model_card(artifact)
    prepared = read_card(Path(written["path"]))
    assert card.dataset["train_scale"] == prepared.train_scale
    assert card.dataset["band_names"] == prepared.band_names == [
        {"image": r"^(.*)(\-\d+)$", "band": r"^(.*)_ir(\-\d+)$"}]
    assert card.training_scale == prepared.train_scale["median"]


def test_band_match_rule(tmp_path: Path) -> None:
    from raygym.predict import match_band

    files = [tmp_path / n for n in ("a-0_nir.png", "a-1_nir.png", "b-0.png", "scene_ir-0.jpg")]
    assert match_band(tmp_path / "a-1.png", files) == files[1]  # stem prefix
    assert match_band(tmp_path / "b-0.jpg", files) == files[2]  # same stem
    assert match_band(tmp_path / "scene-0.jpg", files, None, NIR_KEY) == files[3]  # regex keys
    assert match_band(tmp_path / "c.png", files) is None
    # a rule prepare learnt comes after an exact same stem; an explicit key comes first
    image_key, band_key = r"^(.*)(\-\d+)$", r"^(.*)_ir(\-\d+)$"
    both = [tmp_path / "nir" / n for n in ("X-0.png", "X_ir-0.png")]
    image = tmp_path / "X-0.png"
    assert match_band(image, both, image_key, band_key, learnt=True) == both[0]
    assert match_band(image, both, image_key, band_key) == both[1]
    assert match_band(image, both[1:], image_key, band_key, learnt=True) == both[1]


def test_a_file_named_twice_is_predicted_once(tmp_path: Path) -> None:
    # a file and its folder (or a glob beside it) named both made a second map, "a-2"
    from raygym.predict.inputs import collect_inputs

    (tmp_path / "img").mkdir()
    (tmp_path / "other").mkdir()
    for path in ("img/a.png", "img/b.png", "other/a.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / path)
    named = [tmp_path / "img" / "b.png", tmp_path / "img", tmp_path / "img/../img/a.png",
             tmp_path / "other"]
    items, skipped = collect_inputs(named, [])
    assert [(i.path.relative_to(tmp_path).as_posix(), i.name) for i in items] == [
        ("img/b.png", "b"), ("img/a.png", "a"), ("other/a.png", "a-2")]
    assert not skipped


def test_input_item_survives_json(tmp_path: Path) -> None:
    """The Ray path ships items as JSON: the round trip keeps paths, bands and the name."""
    from raygym.predict import InputItem

    item = InputItem(tmp_path / "a.tif", [tmp_path / "nir" / "a_ir.tif"], "a-2")
    assert InputItem.from_json(item.to_json()) == item


def test_wrong_band_count_is_refused(s2_models: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    image, _ = s2_scene(0)  # RGB only: the model wants RGB + NIR
    code = run_cli(["predict", str(s2_models["artifact"]), str(image), "--out",
                    str(tmp_path / "out")])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert image.name in line and "3 bands" in line and "expects 4" in line
    assert "--band FOLDER for each extra band, in training order: nir)" in line  # its folder


def test_a_grey_image_for_an_rgb_model_is_not_told_to_add_bands(tmp_path: Path) -> None:
    # the model had no extra bands: --band cannot make up what a grey image lacks
    from raygym.predict.inputs import check_band_counts, collect_inputs

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "grey.png")
    items, _ = collect_inputs([tmp_path / "grey.png"], [])
    with pytest.raises(DataError) as err:
        check_band_counts(items, 3, extra_bands=lambda bands: "")
    assert "has 1 band but the model expects 3" in str(err.value)
    assert "trained on 3-band images" in str(err.value) and "--band" not in str(err.value)


def test_band_and_image_folders_swapped_are_refused_in_one_line(
        s2_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The NIR folder given as the images and the RGB one as --band: one line naming the
    band folder and the model's rule (exit 2), not every image listed as failed; no --out."""
    images, nirs = _s2_folders(tmp_path, 2)
    code = run_cli(["predict", str(s2_models["artifact"]), str(nirs), "--band", str(images),
                    "--out", str(tmp_path / "out")])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {images}: --band: none of the 2 images (e.g. ")
    assert f"(the model's rule: a stem matching {NIR_KEY})" in line
    assert f"it holds {s2_scene(0)[0].name} and 1 more" in line
    assert not (tmp_path / "out").exists()


def test_output_inside_input_folder_is_refused(s2_models: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "img"
    images.mkdir()
    shutil.copy(s2_scene(0)[0], images)
    code = run_cli(["predict", str(s2_models["artifact"]), str(images), "--band",
                    str(need(S2) / "nir"), "--out", str(images / "pred")])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert "inside the input folder" in line
    assert not (images / "pred").exists()


def test_alpha_bands_do_not_count_as_data(tmp_path: Path) -> None:
    from raygym.predict import InputItem, check_band_counts

    from . import UTM, utm_transform, write_tiff

    rgba = np.full((8, 8, 4), 9, np.uint8)
    tif = write_tiff(tmp_path / "a.tif", rgba, UTM, utm_transform(), photometric="RGB",
                     alpha="YES")
    png = tmp_path / "b.png"
    Image.fromarray(rgba).save(png)
    items = [InputItem(tif, [], "a"), InputItem(png, [], "b")]
    assert check_band_counts(items, 3) == (items, [])  # one band too many: alpha is a mask
    assert check_band_counts(items, 4) == (items, [])  # a 4-band model: alpha is data (NIR)
    with pytest.raises(DataError, match="has 4 bands"):
        check_band_counts(items, 5)
