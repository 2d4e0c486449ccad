"""Tests of the synthetic demo dataset writer."""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import numpy as np
from PIL import Image

from raygym.data.demo import DemoInfo, write_demo_data


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_default_dataset_layout_and_speed(tmp_path: Path) -> None:
    start = time.perf_counter()
    info = write_demo_data(tmp_path / "demo")
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0, f"took {elapsed:.1f} s"
    assert isinstance(info, DemoInfo)
    assert info.n_scenes == 48 and info.bands == 4
    assert info.class_names == ["water", "whitewater", "sand", "other"]
    root = info.out_dir
    assert len(list((root / "images").glob("*.png"))) == 48
    assert len(list((root / "nir").glob("*_nir.png"))) == 48
    assert len(list((root / "labels").glob("*.png"))) == 48
    assert "SYNTHETIC" in (root / "README.md").read_text()

    with open(info.pairs_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48 and list(rows[0]) == ["image", "nir", "label"]

    pixels = np.zeros(4, dtype=np.int64)
    for row in rows:
        with (Image.open(root / row["image"]) as rgb, Image.open(root / row["nir"]) as nir,
              Image.open(root / row["label"]) as lbl):
            assert rgb.mode == "RGB" and nir.mode == "L" and lbl.mode == "L"
            assert rgb.size == nir.size == lbl.size == (192, 128)  # PIL size is (W, H)
            values = np.asarray(lbl)
        assert Path(row["nir"]).stem == Path(row["image"]).stem + "_nir"
        assert set(np.unique(values)) <= {0, 1, 2, 3}
        pixels += np.bincount(values.ravel(), minlength=4)
    assert (pixels > 0).all(), pixels
    # Not degenerate: every class has a real share of the data.
    assert (pixels / pixels.sum() > 0.02).all(), pixels


def test_bands_carry_class_signal(tmp_path: Path) -> None:
    info = write_demo_data(tmp_path, n_scenes=6, size_hw=(64, 96), seed=3)
    nir_by_class: list[list[float]] = [[], [], [], []]
    for i in range(info.n_scenes):
        nir = _read(tmp_path / "nir" / f"scene_{i:03d}_nir.png").astype(np.float64)
        lbl = _read(tmp_path / "labels" / f"scene_{i:03d}.png")
        for c in range(4):
            if (lbl == c).any():
                nir_by_class[c].append(float(nir[lbl == c].mean()))
    means = [float(np.mean(v)) for v in nir_by_class]
    # NIR: water darkest, vegetation/land brighter than water.
    assert means[0] < means[2] and means[0] < means[3] and means[0] < means[1]


def test_seeded_determinism(tmp_path: Path) -> None:
    a = write_demo_data(tmp_path / "a", n_scenes=5, seed=7)
    b = write_demo_data(tmp_path / "b", n_scenes=5, seed=7)
    c = write_demo_data(tmp_path / "c", n_scenes=5, seed=8)
    assert _digest(a.out_dir) == _digest(b.out_dir)
    assert _digest(a.out_dir) != _digest(c.out_dir)
    # Scene i does not depend on how many scenes are written.
    d = write_demo_data(tmp_path / "d", n_scenes=2, seed=7)
    for sub, name in (("images", "scene_001.png"), ("labels", "scene_001.png")):
        assert (a.out_dir / sub / name).read_bytes() == (d.out_dir / sub / name).read_bytes()


def test_a_file_the_demo_did_not_write_is_never_overwritten(tmp_path: Path) -> None:
    """A folder of the user's holding a file of a name the demo writes is refused before
    anything is written; an earlier demo's folder is written again; other files stay."""
    import pytest

    from raygym.errors import DataError

    mine = tmp_path / "mine"
    (mine / "labels").mkdir(parents=True)
    (mine / "labels" / "scene_001.png").write_bytes(b"the user's label")
    with pytest.raises(DataError, match="would overwrite this file") as err:
        write_demo_data(mine, n_scenes=3, size_hw=(32, 32))
    assert err.value.file == str(mine / "labels" / "scene_001.png")
    assert (mine / "labels" / "scene_001.png").read_bytes() == b"the user's label"
    assert sorted(p.name for p in mine.iterdir()) == ["labels"]  # no folder made
    demo = tmp_path / "demo"
    write_demo_data(demo, n_scenes=3, size_hw=(32, 32))
    (demo / "notes.txt").write_text("kept")
    write_demo_data(demo, n_scenes=3, size_hw=(32, 32))  # its own files: written again
    assert (demo / "notes.txt").read_text() == "kept"
