"""``data.chips``: scenes cut into ``target_size`` chips at native resolution, as large
orthomosaics need, split by scene before cutting, chips with too little label dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from raygym.data.dataset import PreparedDataset
from raygym.data.labels import IGNORE_INDEX
from raygym.data.prepare import prepare_dataset
from raygym.data.split import SPLITS
from raygym.data.transforms import scene_chips
from raygym.errors import ConfigError, DataError
from raygym.search.space_config import load_experiment


def test_chips_tile_the_scene_as_prediction_windows_do() -> None:
    image = np.arange(70 * 100 * 2).reshape(70, 100, 2)
    label = np.zeros((70, 100), np.uint8)
    label[:, 80:] = IGNORE_INDEX  # the right fifth unlabelled
    chips, dropped = scene_chips(image, label, (32, 32), overlap=0.0, min_labelled=0.5)
    # rows at 0, 32, 38 (the last ends at the edge); columns at 0, 32, 64, 68
    assert sorted({y for y, *_ in chips}) == [0, 32, 38]
    # the chip at x 68 is 12 / 32 labelled: dropped in each of the 3 rows
    assert sorted({x for _, x, *_ in chips}) == [0, 32, 64] and dropped == 3
    for y, x, img, lab in chips:
        assert img.shape == (32, 32, 2) and lab.shape == (32, 32)
        assert (img == image[y:y + 32, x:x + 32]).all()
    small, _ = scene_chips(image[:20, :20], label[:20, :20], (32, 32), 0.0, 0.0)
    assert [(y, x, img.shape) for y, x, img, _ in small] == [(0, 0, (20, 20, 2))]
    overlapping, _ = scene_chips(image, label, (32, 32), overlap=0.5, min_labelled=0.0)
    assert sorted({x for _, x, *_ in overlapping}) == [0, 16, 32, 48, 64, 68]


def _scenes(root: Path, n: int = 4, unlabelled_cols: int = 40) -> None:
    """``n`` 80 x 120 px RGB scenes; each label's top-left 40 x ``unlabelled_cols`` px is 255
    (unlabelled)."""
    rng = np.random.default_rng(0)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(
            root / "images" / f"site{i}.png")
        label = np.zeros((80, 120), np.uint8)
        label[:, 60:] = 1
        label[:40, :unlabelled_cols] = 255
        Image.fromarray(label).save(root / "labels" / f"site{i}.png")


def _experiment(root: Path, write_config: Any, **data: Any) -> Path:
    return write_config(root / "exp.yaml", data={
        "images": str(root / "images"), "labels": str(root / "labels"),
        "classes": ["sand", "water"], "remap": {0: 0, 1: 1, 255: 255}, "target_size": [32, 48],
        "split": {"val": 0.25, "test": 0.25}, "prepared": str(root / "ds"), **data})


def test_prepare_cuts_chips_at_native_resolution(tmp_path: Path, write_config: Any,
                                                 ray_session: None) -> None:
    _scenes(tmp_path)
    path = _experiment(tmp_path, write_config,
                       chips={"min_labelled": 0.5}, augment={"copies": 1, "hflip": True})
    config, _ = load_experiment(path)
    lines: list[str] = []
    result = prepare_dataset(config, log=lambda *a, **k: lines.append(str(a[0])))
    card = result.card
    # 80 x 120 in 32 x 48 chips: rows 0, 32, 48 x columns 0, 48, 72 = 9 chips a scene; the
    # one at (0, 0) is 25 / 32 x 40 / 48 unlabelled (35 % labelled): dropped
    assert "cut into 32 chips of 32 x 48 px (train 16, val 8, test 8); 4 dropped" in "".join(
        lines)
    assert [card.splits[s]["sources"] for s in SPLITS] == [2, 1, 1]
    assert [card.splits[s]["chips"] for s in SPLITS] == [16, 8, 8]
    assert card.splits["train"]["rows"] == 32, "each train chip + 1 augmented copy"
    # chips keep the pixel size: prediction resamples nothing
    assert card.train_scale == {"median": 1.0, "min": 1.0, "max": 1.0}
    val = PreparedDataset(result.path).load_numpy("val")
    scene = next(iter({k.rsplit("_y", 1)[0] for k in val.keys}))
    assert sorted(val.keys) == sorted(f"{scene}_y{y}_x{x}" for y in (0, 32, 48)
                                      for x in (0, 48, 72) if (y, x) != (0, 0))
    with Image.open(tmp_path / "images" / f"{scene}.png") as im:
        pixels = np.asarray(im)
    i = list(val.keys).index(f"{scene}_y48_x72")
    assert (val.images[i] == pixels[48:80, 72:120]).all(), "a chip is the scene's pixels"
    # evaluate's intervals resample scenes, not their neighbouring chips
    units, name = card.resampling_units(list(val.keys))
    assert set(units) == {scene} and name == "scenes (their chips summed)"
    assert {tuple(v) for v in val.valid_hw.tolist()} == {(32, 48)}, "no padding"
    assert (tmp_path / "ds" / "preview_val.png").is_file()


def test_chips_bad_settings(tmp_path: Path, write_config: Any, ray_session: None) -> None:
    _scenes(tmp_path, 3, unlabelled_cols=120)  # the top half unlabelled
    with pytest.raises(ConfigError, match="data.upscale"):
        load_experiment(_experiment(tmp_path, write_config, chips={}, upscale=True))
    for shorthand, meant in ((True, {"overlap": 0.0, "min_labelled": 0.05, "blocks": None}),
                             (False, None)):
        config, _ = load_experiment(_experiment(tmp_path, write_config, chips=shorthand))
        chips = config.data.chips
        assert (chips.model_dump() if chips is not None else None) == meant
    # the best chips (rows 48-80) are whole; rows 32-64 are half labelled: 0.5 keeps them
    config, _ = load_experiment(_experiment(tmp_path, write_config,
                                            chips={"min_labelled": 0.5}))
    assert prepare_dataset(config, log=lambda *a, **k: None).card.splits["val"]["chips"] == 6
    for label_file in (tmp_path / "labels").iterdir():  # the last row unlabelled too
        label = np.asarray(Image.open(label_file)).copy()
        label[-1] = 255
        Image.fromarray(label).save(label_file)
    config, _ = load_experiment(_experiment(tmp_path, write_config, chips={"min_labelled": 1.0},
                                            prepared=str(tmp_path / "ds2")))
    with pytest.raises(DataError) as info:
        prepare_dataset(config, log=lambda *a, **k: None)
    assert info.value.key == "data.chips.min_labelled"
    assert not (tmp_path / "ds2").exists(), "nothing is left half-written"


def test_axis_blocks_keep_the_edge_chip_with_its_neighbour() -> None:
    from raygym.data.split import axis_blocks

    # 100 px in 32 px chips: starts 0, 32, 64 side by side and 68 at the edge, which overlaps
    # the chip at 64 and so shares its block
    assert axis_blocks(100, 32, 1) == {0: 0, 32: 1, 64: 2, 68: 2}
    assert axis_blocks(100, 32, 2) == {0: 0, 32: 0, 64: 1, 68: 1}
    assert axis_blocks(20, 32, 2) == {0: 0}


def test_one_large_scene_is_split_by_blocks_of_chips(tmp_path: Path, write_config: Any,
                                                     ray_session: None) -> None:
    """One 160 x 240 px scene, 32 x 48 px chips in blocks of 2 x 2: 3 x 3 blocks drawn to
    train / val / test; no pixel lies in two splits."""
    rng = np.random.default_rng(1)
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    Image.fromarray(rng.integers(0, 255, (160, 240, 3), dtype=np.uint8)).save(
        tmp_path / "images" / "mosaic.png")
    Image.fromarray((np.arange(240)[None, :] >= 120).repeat(160, 0).astype(np.uint8)).save(
        tmp_path / "labels" / "mosaic.png")
    path = _experiment(tmp_path, write_config, chips={"blocks": 2},
                       split={"val": 0.25, "test": 0.25, "seed": 3})
    config, _ = load_experiment(path)
    lines: list[str] = []
    card = prepare_dataset(config, log=lambda *a, **k: lines.append(str(a[0]))).card
    assert "split by 9 blocks of 2 x 2 chips: train 5, val 2, test 2 (blocks)" in lines[0]
    chips = {s: card.splits[s]["chips"] for s in SPLITS}
    assert sum(chips.values()) == 25 and min(chips.values()) >= 2
    assert [card.splits[s]["sources"] for s in SPLITS] == [1, 1, 1]
    covered = {}
    for split in SPLITS:
        for key in PreparedDataset(tmp_path / "ds").load_numpy(split).keys:
            y, x = (int(v[1:]) for v in key.rsplit("_", 2)[1:])
            mask = np.zeros((160, 240), bool)
            mask[y:y + 32, x:x + 48] = True
            covered[split] = covered.get(split, np.zeros_like(mask)) | mask
    assert not (covered["train"] & covered["val"]).any()
    assert not ((covered["train"] | covered["val"]) & covered["test"]).any()
    with pytest.raises(ConfigError, match="data.chips.overlap"):
        load_experiment(_experiment(tmp_path, write_config,
                                    chips={"blocks": 2, "overlap": 0.5}))
    # blocks of 5 x 5 chips: the scene is one block, which cannot make three splits
    config, _ = load_experiment(_experiment(tmp_path, write_config, chips={"blocks": 5},
                                            prepared=str(tmp_path / "ds5")))
    with pytest.raises(DataError, match="split by 1 block of 5 x 5 chips: train 1, val 0, "
                       "test 0 .blocks.: too few blocks to give the val split one") as info:
        prepare_dataset(config, log=lambda *a, **k: None)
    assert info.value.key == "data.chips.blocks"


def test_a_large_scene_is_written_in_shards_as_its_chips_come(tmp_path: Path,
                                                              write_config: Any) -> None:
    """The task body (no Ray) writes a shard every ``shard_bytes`` of rows per split: the
    rows are the scene's, each once, whatever the shard size."""
    import pandas as pd
    import pyarrow.parquet as pq

    from raygym.data.prepare import _process_and_write
    from raygym.data.scenes import process_scene

    _scenes(tmp_path, 1)
    config, _ = load_experiment(_experiment(tmp_path, write_config, chips={},
                                            split={"val": 0.0, "test": 0.0}))
    record = {"key": "site0", "images": [str(tmp_path / "images" / "site0.png")],
              "label": str(tmp_path / "labels" / "site0.png"), "split": "train", "bands": 3}
    rows, _ = process_scene(record, config.data, "uint8")
    chip_bytes = rows[0]["image"].nbytes + rows[0]["label"].nbytes
    meta = _process_and_write(pd.DataFrame([record]), config.data, "uint8",
                              str(tmp_path / "shards"), shard_bytes=3 * chip_bytes)
    assert meta["error"].tolist() == [""]
    files = sorted((tmp_path / "shards" / "split=train").iterdir())
    # 80 x 120 px in 32 x 48 chips: 9, every one labelled enough; a shard every 3 as they come
    assert len(rows) == 9 and len(files) == 3
    keys = [k for f in files for k in pq.read_table(f, columns=["key"]).column("key").to_pylist()]
    assert sorted(keys) == sorted(r["key"] for r in rows) and len(set(keys)) == 9


def test_the_smoke_test_keeps_the_chip_size(tmp_path: Path, write_config: Any) -> None:
    """--smoke-test shrinks target_size to ~64 px; with chips that would cut 16 times as many
    chips of a 256 px setting, so the chip size stays."""
    from raygym.search.run import smoke_config

    _scenes(tmp_path, 1)
    config, _ = load_experiment(_experiment(tmp_path, write_config, target_size=[256, 256]))
    assert smoke_config(config).data.target_size == (64, 64)
    config, _ = load_experiment(_experiment(tmp_path, write_config, target_size=[256, 256],
                                            chips={}))
    smoke = smoke_config(config)
    assert smoke.data.target_size == (256, 256) and smoke.train.max_epochs <= 3


@pytest.mark.parametrize("overlap", [0.0, 0.3])
def test_a_geotiff_is_cut_window_by_window_as_it_would_be_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overlap: float) -> None:
    """TIFF scenes are read a chip's window at a time (a large orthomosaic never whole in
    memory): the rows equal those of the scene read whole and cut, nodata, an extra band, the
    remap and dropped chips included."""
    import rasterio
    from rasterio.transform import from_origin

    from raygym.config import validate_experiment
    from raygym.data import scenes
    from raygym.data.scenes import process_scene

    rng = np.random.default_rng(3)
    profile = {"driver": "GTiff", "height": 90, "width": 130, "crs": "EPSG:32610",
               "transform": from_origin(500_000, 4_100_000, 2, 2)}
    rgb = rng.integers(1, 4000, (3, 90, 130)).astype(np.uint16)
    rgb[:, :, :30] = 0  # a nodata strip: the chips mostly in it are dropped
    nir = rng.integers(0, 255, (1, 90, 130)).astype(np.uint8)
    label = rng.integers(1, 4, (1, 90, 130)).astype(np.uint8)
    with rasterio.open(tmp_path / "s.tif", "w", count=3, dtype="uint16", nodata=0,
                       **profile) as dst:
        dst.write(rgb)
    with rasterio.open(tmp_path / "s_nir.tif", "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(nir)
    with rasterio.open(tmp_path / "s_label.tif", "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(label)
    data = validate_experiment({"data": {
        "images": str(tmp_path), "labels": str(tmp_path), "classes": ["a", "b", "c"],
        "remap": {1: 0, 2: 1, 3: 2}, "target_size": [32, 48],
        "chips": {"overlap": overlap, "min_labelled": 0.5},
        "augment": {"copies": 1, "hflip": True}}}).data
    record = {"key": "s", "images": [str(tmp_path / "s.tif"), str(tmp_path / "s_nir.tif")],
              "label": str(tmp_path / "s_label.tif"), "split": "train", "bands": 4}
    assert scenes.by_windows(record, data)
    windowed, info_w = process_scene(record, data, "float32")
    monkeypatch.setattr(scenes, "by_windows", lambda row, data: False)
    whole, info_h = process_scene(record, data, "float32")
    assert not info_w["error"] and not info_h["error"]
    assert info_w["dropped"] == info_h["dropped"] > 0 and info_w["chips"] == info_h["chips"]
    assert [(r["key"], r["copy"]) for r in windowed] == [(r["key"], r["copy"]) for r in whole]
    for a, b in zip(windowed, whole, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])  # NaN where nodata, both
        np.testing.assert_array_equal(a["label"], b["label"])
        np.testing.assert_array_equal(a["valid_hw"], b["valid_hw"])
