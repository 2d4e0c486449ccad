"""``raygym prepare`` end to end on real files with a real local Ray.

The S2 set (80 scenes, RGB + NIR JPEGs, JPEG artefact label values 0 and 5) is prepared once
per module and checked against independent computations; bad inputs go through the CLI and
must fail with exit code 2, one line on stderr that names the file or key, and nothing written.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from raygym.cli import main
from raygym.data.dataset import DATASET_FORMAT, PreparedDataset, read_card
from raygym.data.labels import IGNORE_INDEX, apply_remap
from raygym.data.prepare import PrepareResult, prepare_dataset
from raygym.data.split import SPLITS
from raygym.data.transforms import resize_pad
from raygym.errors import DataError
from raygym.search.space_config import load_experiment

REMAP = {1: 0, 2: 1, 3: 2, 4: 3}
K = 4
# Ray's own once-per-process log records (e.g. "Progress bars disabled") reach stderr from
# whichever test first runs a Ray Data job; they are not raygym's output.
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(DEBUG|INFO|WARNING)\s")


def _quiet(*_: Any, **__: Any) -> None:
    pass


def _grey(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _leftovers(out: Path) -> list[str]:
    """Temp / old folders that prepare left beside its output."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


# ---------------------------------------------------------------------------------- S2 (80)
@pytest.fixture(scope="module")
def s2_prepared(tmp_path_factory, make_s2_config, write_config, ray_session
                ) -> tuple[Path, PrepareResult]:
    root = tmp_path_factory.mktemp("s2prep")
    path = write_config(root / "exp.yaml", **make_s2_config(root / "ds"))
    config, _ = load_experiment(path)
    result = prepare_dataset(config, log=_quiet)
    return path, result


@pytest.fixture(scope="module")
def s2_arrays(s2_prepared) -> dict[str, Any]:
    ds = PreparedDataset(s2_prepared[1].path)
    return {split: ds.load_numpy(split) for split in SPLITS}


def test_s2_card(s2_prepared, s2_data) -> None:
    _, result = s2_prepared
    card = result.card
    assert not result.reused
    assert card == read_card(result.path)
    assert card.bands == 4 and card.dtype == "uint8"
    assert card.classes == ["water", "surf", "wet_sand", "dry_land"]
    assert card.target_size == [64, 64] and card.ignore_index == IGNORE_INDEX
    assert set(card.splits) == set(SPLITS)
    assert sum(card.splits[s]["sources"] for s in SPLITS) == 80
    assert [card.splits[s]["sources"] for s in SPLITS] == [56, 16, 8]
    assert len(card.sources) == 80
    for src in card.sources:
        assert len(src["files"]) == 3 and all(len(f["sha256"]) == 64 for f in src["files"])
    assert Path(card.sources[0]["files"][0]["path"]).parent == s2_data / "images"
    assert Path(card.sources[0]["files"][1]["path"]).parent == s2_data / "nir"


def test_s2_ray_dataset_and_load_numpy_read_the_same_rows(s2_prepared, s2_arrays) -> None:
    dataset = PreparedDataset(s2_prepared[1].path)
    arrays = s2_arrays["val"]
    rows = dataset.ray_dataset("val").take_all()
    assert len(rows) == len(arrays) == dataset.rows("val")
    assert sorted(r["image"].tobytes() + r["label"].tobytes() for r in rows) == sorted(
        arrays.images[i].tobytes() + arrays.labels[i].tobytes() for i in range(len(arrays)))
    assert rows[0]["image"].shape == (64, 64, 4) and rows[0]["image"].dtype == np.uint8
    assert rows[0]["valid_hw"].dtype == np.int32


def test_s2_no_leakage_between_splits(s2_prepared, s2_arrays) -> None:
    card = s2_prepared[1].card
    keys = {split: set(s2_arrays[split].keys) for split in SPLITS}
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    assert len(keys["train"] | keys["val"] | keys["test"]) == 80
    # the card's per-source split agrees with what is in the shards
    for src in card.sources:
        assert src["key"] in keys[src["split"]]


def test_s2_augmented_copies_only_in_train(s2_prepared, s2_arrays) -> None:
    card = s2_prepared[1].card
    train = s2_arrays["train"]
    assert card.splits["train"]["rows"] == len(train) == card.splits["train"]["sources"] * 2
    for key in set(train.keys):
        assert sorted(train.copies[[k == key for k in train.keys]].tolist()) == [0, 1]
    for split in ("val", "test"):
        arrays = s2_arrays[split]
        assert card.splits[split]["rows"] == len(arrays) == card.splits[split]["sources"]
        assert set(arrays.copies.tolist()) == {0}
    # a copy differs from its original (hflip with p=0.5 is seeded per copy: not all equal)
    originals = train.images[train.copies == 0]
    copies = train.images[train.copies == 1]
    assert any(not np.array_equal(a, b) for a, b in zip(originals, copies, strict=True))


def test_s2_pixel_counts_match_the_shards(s2_prepared, s2_arrays) -> None:
    card = s2_prepared[1].card
    for split in SPLITS:
        labels = s2_arrays[split].labels
        assert labels.dtype == np.uint8 and labels.shape[1:] == (64, 64)
        assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3, IGNORE_INDEX}
        counts = np.bincount(np.where(labels == IGNORE_INDEX, K, labels).ravel(),
                             minlength=K + 1)
        assert card.splits[split]["pixels_per_class"] == counts[:K].tolist()
        assert card.splits[split]["ignored_pixels"] == int(counts[K])
        assert sum(counts) == len(labels) * 64 * 64


def test_s2_val_test_match_an_independent_pipeline(s2_prepared, s2_arrays, s2_data) -> None:
    """Recompute val/test from the original files: PIL read, remap, resize_pad, count."""
    card = s2_prepared[1].card
    for split in ("val", "test"):
        arrays = s2_arrays[split]
        counts = np.zeros(K + 1, np.int64)
        for i, key in enumerate(arrays.keys):
            base, tile = key.rsplit("-", 1)
            raw = _grey(s2_data / "labels" / f"{key}.jpg")
            label, _ = apply_remap(raw, REMAP, K, "ignore")
            image = np.concatenate([_rgb(s2_data / "images" / f"{key}.jpg"),
                                    _grey(s2_data / "nir" / f"{base}_ir-{tile}.jpg")[..., None]],
                                   axis=2)
            img, lab, valid = resize_pad(image, label, (64, 64), IGNORE_INDEX)
            np.testing.assert_array_equal(arrays.labels[i], lab, err_msg=key)
            np.testing.assert_array_equal(arrays.images[i], img, err_msg=key)
            assert tuple(arrays.valid_hw[i]) == valid
            counts += np.bincount(np.where(lab == IGNORE_INDEX, K, lab).ravel(),
                                  minlength=K + 1)
        assert card.splits[split]["pixels_per_class"] == counts[:K].tolist()
        assert card.splits[split]["ignored_pixels"] == int(counts[K])


def test_s2_remap_report(s2_prepared, s2_data) -> None:
    _, result = s2_prepared
    changed = result.card.remap_changed
    assert set(changed) == {"0", "5"} and all(n > 0 for n in changed.values())
    assert result.remap_report == changed
    # the counts are those of the original, full-size label files
    values = np.concatenate([_grey(p).ravel() for p in (s2_data / "labels").glob("*.jpg")])
    assert changed == {"0": int((values == 0).sum()), "5": int((values == 5).sum())}


def test_s2_previews_and_no_leftovers(s2_prepared) -> None:
    out = s2_prepared[1].path
    for split in SPLITS:
        with Image.open(out / f"preview_{split}.png") as im:
            assert im.width > 100 and im.height > 100
    assert _leftovers(out) == []
    shards = sorted(p.name for p in (out / "shards").iterdir())
    assert shards == sorted(f"split={s}" for s in SPLITS)


def test_s2_previews_show_the_stored_rows(s2_prepared, tmp_path) -> None:
    """prepare renders previews alongside processing; they must equal a render of the shards."""
    from raygym.data.preview import write_previews

    out = tmp_path / "copy"
    shutil.copytree(s2_prepared[1].path, out)
    rendered = {s: (out / f"preview_{s}.png").read_bytes() for s in SPLITS}
    assert len(write_previews(out, read_card(out))) == len(SPLITS)
    for split in SPLITS:
        assert (out / f"preview_{split}.png").read_bytes() == rendered[split], split


def test_s2_reuse_refuse_overwrite(s2_prepared, tmp_path) -> None:
    # on a copy of the dataset, so that the other tests' dataset stays as it is
    path, first = s2_prepared
    out = tmp_path / "copy"
    shutil.copytree(first.path, out)
    card_text = (out / "card.json").read_text()
    config, _ = load_experiment(path, overrides={"data.prepared": str(out)})
    again = prepare_dataset(config, log=_quiet)
    assert again.reused and again.card == first.card
    assert (out / "card.json").read_text() == card_text, "reuse writes nothing"

    changed, _ = load_experiment(path, overrides={"data.prepared": str(out),
                                                  "data.split.seed": 7})
    with pytest.raises(DataError) as info:
        prepare_dataset(changed, log=_quiet)
    assert info.value.key == "data.prepared" and "--overwrite" in (info.value.fix or "")
    assert "its data settings differ: data.split.seed 42 -> 7)" in info.value.message
    assert (out / "card.json").read_text() == card_text, "a refusal writes nothing"

    replaced = prepare_dataset(changed, overwrite=True, log=_quiet)
    assert not replaced.reused and replaced.path == out
    assert replaced.card.config_hash != first.card.config_hash
    assert replaced.card.data_config["split"]["seed"] == 7
    assert read_card(out).config_hash == replaced.card.config_hash
    split_of = {s["key"]: s["split"] for s in replaced.card.sources}
    assert split_of != {s["key"]: s["split"] for s in first.card.sources}
    assert _leftovers(out) == []


# ------------------------------------------------------------------------------- demo (24)
def test_demo_prepare_by_folder_and_nir_key(tmp_path, demo_config, write_config,
                                            ray_session) -> None:
    demo_config["data"]["split"]["seed"] = 3
    config, _ = load_experiment(write_config(tmp_path / "demo.yaml", **demo_config))
    result = prepare_dataset(config, log=_quiet)
    card = result.card
    assert card.bands == 4 and card.classes == ["water", "whitewater", "sand", "other"]
    assert [card.splits[s]["sources"] for s in SPLITS] == [17, 5, 2]
    assert card.splits["train"]["rows"] == 34
    assert result.remap_report == {} and card.remap_changed == {}
    val = PreparedDataset(result.path).load_numpy("val")
    # 64 x 96 scenes fit into 64 x 64 as 43 x 64 (aspect kept), the rest is padding
    assert {tuple(v) for v in val.valid_hw.tolist()} == {(43, 64)}
    assert (val.labels[:, 43:, :] == IGNORE_INDEX).all()
    assert (val.images[:, 43:, :, :] == 0).all()
    assert (val.labels[:, :43, :] != IGNORE_INDEX).all(), "demo labels hold only classes"
    assert (val.images[..., 3] > 0).any(), "the NIR band is filled"


def test_uint16_band_beside_uint8_rgb_is_not_wrapped(tmp_path, write_config, ray_session
                                                     ) -> None:
    rng = np.random.default_rng(1)
    for sub in ("images", "nir", "labels"):
        (tmp_path / "raw" / sub).mkdir(parents=True)
    nirs = {}
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), mode="RGB").save(
            tmp_path / "raw" / "images" / f"s{i}.png")
        nirs[f"s{i}"] = rng.integers(256, 4096, (32, 32), dtype=np.uint16)  # 12-bit values
        Image.fromarray(nirs[f"s{i}"]).save(tmp_path / "raw" / "nir" / f"s{i}.png")
        Image.fromarray(rng.integers(0, 2, (32, 32), dtype=np.uint8), mode="L").save(
            tmp_path / "raw" / "labels" / f"s{i}.png")
    raw = tmp_path / "raw"
    path = write_config(tmp_path / "exp.yaml", data={
        "images": raw / "images", "extra_bands": [raw / "nir"], "labels": raw / "labels",
        "classes": ["a", "b"], "target_size": 32, "split": {"val": 0.25, "test": 0.0},
        "prepared": tmp_path / "ds"}, model={"arch": "gym_unet"})
    config, _ = load_experiment(path)
    result = prepare_dataset(config, log=_quiet)
    assert result.card.dtype == "uint16" and result.card.bands == 4
    arrays = PreparedDataset(result.path).load_numpy("train")
    assert arrays.images.dtype == np.uint16
    for key, image in zip(arrays.keys, arrays.images, strict=True):
        np.testing.assert_array_equal(image[..., 3], nirs[key])


# ------------------------------------------------------------------------ bad input (CLI)
@pytest.fixture
def small_s2(tmp_path, s2_subset, make_s2_config) -> tuple[Path, dict[str, Any], list[str]]:
    """6 S2 scenes copied to ``tmp_path/raw``; sections writing to ``tmp_path/ds``."""
    keys = s2_subset(tmp_path / "raw", 6)
    sections = make_s2_config(tmp_path / "ds", root=tmp_path / "raw")
    sections["data"]["augment"] = {"copies": 0}
    return tmp_path / "raw", sections, keys


@pytest.fixture
def prepare_cli(tmp_path, write_config, capsys, ray_session):
    """``prepare_cli(sections, *flags) -> (exit code, stderr)`` via ``raygym prepare``."""

    def run(sections: dict[str, Any], *flags: str) -> tuple[int, str]:
        path = write_config(tmp_path / "exp.yaml", **sections)
        capsys.readouterr()
        code = main(["prepare", str(path), *flags])
        return code, capsys.readouterr().err

    return run


@pytest.fixture
def prepare_fails(prepare_cli):
    """``prepare_fails(sections, *flags) -> the error line``; checks exit 2, one stderr line
    and that nothing was written."""

    def run(sections: dict[str, Any], *flags: str) -> str:
        code, err = prepare_cli(sections, *flags)
        lines = [ln for ln in err.strip().splitlines() if not RAY_LOG_LINE.match(ln)]
        assert code == 2, err
        assert len(lines) == 1, err
        assert lines[0].startswith("error: ") and "Traceback" not in err
        prepared = Path(sections["data"]["prepared"])
        assert not prepared.exists(), "nothing is written on failure"
        if prepared.parent.exists():
            assert _leftovers(prepared) == []
        return lines[0]

    return run


def test_small_s2_copy_prepares(tmp_path, small_s2, prepare_cli) -> None:
    _, sections, _ = small_s2
    # a search's space file: prepare reads only `data`, so it prepares the search's dataset
    sections["model"] = {**sections.get("model", {}), "filters": {"choice": [2, 4]}}
    code, err = prepare_cli(sections)
    assert code == 0, err
    card = read_card(tmp_path / "ds")
    assert card.splits["train"]["sources"] == 4
    # each scene's size, and the factor that fitted the training scenes into target_size
    # (what predict --scale auto resamples new images by)
    from PIL import Image

    sizes = {s["key"]: Image.open(s["files"][0]["path"]).size[::-1] for s in card.sources}
    assert {s["key"]: tuple(s["size"]) for s in card.sources} == sizes
    th, tw = card.target_size
    factors = [min(th / sizes[s["key"]][0], tw / sizes[s["key"]][1], 1.0)
               for s in card.sources if s["split"] == "train"]
    assert card.train_scale == pytest.approx(
        {"median": float(np.median(factors)), "min": min(factors), "max": max(factors)},
        abs=1e-6)
    assert card.train_scale["median"] < 1  # 72 x 153 px scenes shrunk into 64 x 64
    assert card.train_gsd_m is None  # JPEGs: no ground distance
    # what a model card records; a card from before train_scale: found from the files
    assert card.model_dataset("ds")["train_scale"] == card.train_scale
    older = card.model_copy(update={"train_scale": None})
    assert older.model_dataset("ds")["train_scale"] == card.train_scale
    gone = older.model_copy(update={"sources": [
        {**s, "files": [{"path": str(tmp_path / "gone.jpg")}]} for s in card.sources]})
    assert gone.model_dataset("ds")["train_scale"] is None
    # how the NIR files are named after their images (for predict), recorded and carried
    rule = {"image": r"^(.*)(\-\d+)$", "band": r"^(.*)_ir(\-\d+)$"}
    assert card.band_names == [rule] and card.model_dataset("ds")["band_names"] == [rule]
    assert older.model_copy(update={"band_names": None}).model_dataset("ds")["band_names"] == [
        rule]  # a card from before: learnt from the files it lists


def test_missing_images_folder(small_s2, prepare_fails) -> None:
    raw, sections, _ = small_s2
    sections["data"]["images"] = str(raw / "imgs")
    line = prepare_fails(sections)
    assert str(raw / "imgs") in line and "data.images" in line and "not found" in line


def test_empty_images_folder(small_s2, prepare_fails) -> None:
    raw, sections, _ = small_s2
    for f in (raw / "images").iterdir():
        f.unlink()
    line = prepare_fails(sections)
    assert str(raw / "images") in line and "no PNG/JPEG/TIFF" in line


def test_unpaired_files(small_s2, prepare_fails) -> None:
    raw, sections, keys = small_s2
    (raw / "labels" / f"{keys[2]}.jpg").unlink()
    line = prepare_fails(sections)
    assert "1 unpaired file:" in line and keys[2] in line and "not in labels" in line


def test_label_size_differs_from_image(small_s2, prepare_fails) -> None:
    raw, sections, keys = small_s2
    label = raw / "labels" / f"{keys[3]}.jpg"
    with Image.open(label) as im:
        im.resize((im.width - 2, im.height - 3), Image.NEAREST).save(label)
    line = prepare_fails(sections)
    assert str(label) in line and "differs from its image" in line


def test_truncated_image(small_s2, prepare_fails) -> None:
    raw, sections, keys = small_s2
    image = raw / "images" / f"{keys[4]}.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    line = prepare_fails(sections)
    assert str(image) in line and "truncated" in line


def test_band_count_differs(small_s2, prepare_fails) -> None:
    raw, sections, keys = small_s2
    image = raw / "images" / f"{keys[2]}.jpg"
    with Image.open(image) as im:
        im.convert("L").save(image)
    line = prepare_fails(sections)
    assert image.name in line and "bands" in line and "same band count" in line


def test_label_values_outside_classes(small_s2, prepare_fails) -> None:
    _, sections, _ = small_s2
    sections["data"]["unknown_labels"] = "error"
    line = prepare_fails(sections)
    assert "label values outside the 4 classes" in line
    shown = line.split("classes: ", 1)[1].split(" (fix")[0]
    values = {int(part.split(" (")[0]) for part in shown.split(", ") if "px)" in part}
    assert values and values <= {0, 5}, line
    assert "/labels/" in line and ".jpg" in line, "names the label file"
    assert "unknown_labels" in line


def test_remap_to_missing_class(small_s2, prepare_fails) -> None:
    _, sections, _ = small_s2
    sections["data"]["remap"] = {1: 0, 2: 1, 3: 2, 4: 4}
    line = prepare_fails(sections)
    assert "exp.yaml: data: remap 4: 4" in line and "4 classes" in line


def test_target_size_not_divisible(small_s2, prepare_fails) -> None:
    _, sections, _ = small_s2
    sections["data"]["target_size"] = [72, 150]
    line = prepare_fails(sections)
    assert "data.target_size [72, 150]" in line and "[80, 160]" in line


def test_output_holds_another_dataset(tmp_path, small_s2, prepare_cli) -> None:
    _, sections, _ = small_s2
    assert prepare_cli(sections)[0] == 0
    card_text = (tmp_path / "ds" / "card.json").read_text()
    sections["data"]["split"]["seed"] = 5
    code, err = prepare_cli(sections)
    assert code == 2
    assert len([ln for ln in err.strip().splitlines() if not RAY_LOG_LINE.match(ln)]) == 1
    assert str(tmp_path / "ds") in err and "different dataset" in err and "--overwrite" in err
    assert (tmp_path / "ds" / "card.json").read_text() == card_text
    code, err = prepare_cli(sections, "--overwrite")
    assert code == 0, err
    assert read_card(tmp_path / "ds").data_config["split"]["seed"] == 5
    assert _leftovers(tmp_path / "ds") == []


def test_output_is_a_foreign_folder(tmp_path, small_s2, prepare_cli) -> None:
    _, sections, _ = small_s2
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "thesis.docx").write_text("precious")
    code, err = prepare_cli(sections, "--overwrite")
    assert code == 2 and "not a raygym dataset" in err
    assert len([ln for ln in err.strip().splitlines() if not RAY_LOG_LINE.match(ln)]) == 1
    assert (tmp_path / "ds" / "thesis.docx").read_text() == "precious"


def test_a_foreign_card_json_is_never_overwritten(tmp_path, small_s2, prepare_cli) -> None:
    _, sections, _ = small_s2
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "card.json").write_text('{"title": "my field notes"}')
    code, err = prepare_cli(sections, "--overwrite")
    assert code == 2 and "not recognisably a raygym dataset" in err
    assert (tmp_path / "ds" / "card.json").read_text() == '{"title": "my field notes"}'
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")) == []


def test_binary_mask_suggests_remap(tmp_path, prepare_cli, prepare_fails) -> None:
    rng = np.random.default_rng(0)
    for sub in ("images", "labels"):
        (tmp_path / "raw" / sub).mkdir(parents=True)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8), mode="RGB").save(
            tmp_path / "raw" / "images" / f"m{i}.png")
        mask = np.where(rng.random((32, 48)) > 0.5, 255, 0).astype(np.uint8)
        Image.fromarray(mask, mode="L").save(tmp_path / "raw" / "labels" / f"m{i}.png")
    sections = {"data": {"images": str(tmp_path / "raw" / "images"),
                         "labels": str(tmp_path / "raw" / "labels"),
                         "classes": ["land", "water"], "target_size": 32,
                         "prepared": str(tmp_path / "ds")}}
    line = prepare_fails(sections)
    assert "remap: {0: 0, 255: 1}" in line
    assert "255 (" in line and "/labels/m" in line
    # following the advice works
    sections["data"]["remap"] = {0: 0, 255: 1}
    code, err = prepare_cli(sections)
    assert code == 0, err
    assert json.loads((tmp_path / "ds" / "card.json").read_text())["classes"] == ["land", "water"]


def test_raw_data_left_untouched(small_s2, prepare_cli) -> None:
    raw, sections, _ = small_s2
    before = {p: p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    sections["data"]["augment"] = {"copies": 2, "hflip": True, "rotation": 5.0}
    assert prepare_cli(sections)[0] == 0
    assert {p: p.read_bytes() for p in raw.rglob("*") if p.is_file()} == before


def test_online_flag_and_old_formats(tmp_path, small_s2, write_config, ray_session) -> None:
    _, sections, _ = small_s2
    path = write_config(tmp_path / "exp.yaml", **sections)
    config, _ = load_experiment(path)
    first = prepare_dataset(config, log=_quiet)
    # augment.online acts during training only: the prepared data is the same
    online, _ = load_experiment(path, overrides={"data.augment.online": True})
    assert prepare_dataset(online, log=_quiet).reused
    # a dataset in an older format (or with a damaged card) is replaced with --overwrite only
    card = first.path / "card.json"
    card.write_text(card.read_text().replace(f'"{DATASET_FORMAT}"', '"raygym-dataset/1"'))
    with pytest.raises(DataError) as info:
        prepare_dataset(config, log=_quiet)
    assert info.value.key == "data.prepared" and "--overwrite" in (info.value.fix or "")
    again = prepare_dataset(config, overwrite=True, log=_quiet)
    assert not again.reused and read_card(first.path).format == DATASET_FORMAT
