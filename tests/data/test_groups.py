"""Spatial split groups (``data.split.group``): manifest text columns, and one real prepare of
S2 crops grouped by capture, checked in the card, the printed summary and the report's rows."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from rich.console import Console

from raygym.data.dataset import read_card
from raygym.data.pairing import pair_by_manifest
from raygym.data.prepare import prepare_dataset
from raygym.data.summary import print_prepare_summary
from raygym.report.best_model import split_rows
from raygym.search.space_config import load_experiment

CAPTURE = r"^(.*)-\d+$"  # S2 crops <capture>-0 / <capture>-1: two neighbouring stretches


def _manifest(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def _s2_rows(keys: list[str]) -> list[list[str]]:
    """``image, nir, label`` cells for copied S2 scenes (paths relative to their root)."""
    out = []
    for k in keys:
        base, tile = k.rsplit("-", 1)
        out.append([f"images/{k}.jpg", f"nir/{base}_ir-{tile}.jpg", f"labels/{k}.jpg"])
    return out


def test_manifest_keeps_text_columns_outside_image_and_label(tmp_path, s2_subset) -> None:
    keys = s2_subset(tmp_path, 3)
    rows = [["north", *r, "2019-01", ""] for r in _s2_rows(keys)]
    rows[2][0] = "south"
    # trailing comma (an unnamed column, as Excel writes) is dropped
    pairs = pair_by_manifest(_manifest(tmp_path / "pairs.csv",
                                       ["site", "image", "nir", "label", "date", ""], rows))
    assert [len(p.images) for p in pairs] == [2, 2, 2], "nir is still a band"
    assert [p.column("site") for p in pairs] == ["north", "north", "south"]
    assert pairs[0].columns == (("site", "north"), ("date", "2019-01"))
    assert pairs[0].column("tile") is None


def test_manifest_band_column_after_label_is_refused(tmp_path, s2_subset) -> None:
    from raygym.errors import DataError

    keys = s2_subset(tmp_path, 2)
    rows = [[r[0], r[2], r[1]] for r in _s2_rows(keys)]
    with pytest.raises(DataError) as info:  # image,label,nir: never silently drop the band
        pair_by_manifest(_manifest(tmp_path / "pairs.csv", ["image", "label", "nir"], rows))
    assert "column 'nir' lists image files" in info.value.message
    assert "between image and label" in (info.value.fix or "")
    with pytest.raises(DataError, match="column 'site' appears twice"):
        pair_by_manifest(_manifest(tmp_path / "b.csv", ["image", "label", "site", "site"],
                                   [[r[0], r[2], "a", "b"] for r in _s2_rows(keys)]))


def test_prepare_by_group_records_groups_per_split(tmp_path, s2_subset, write_config,
                                                   ray_session) -> None:
    """8 crops of 4 captures, val 0.25 / test 0.25: one capture (2 crops) each for val and
    test, two for train; the card, the summary and the report rows say so."""
    keys = s2_subset(tmp_path / "raw", 8)
    sections = {"name": "groups", "data": {
        "images": str(tmp_path / "raw" / "images"),
        "extra_bands": [{"folder": str(tmp_path / "raw" / "nir"), "key": r"^(.*)_ir(-\d+)$"}],
        "labels": str(tmp_path / "raw" / "labels"), "classes": ["w", "s", "ws", "d"],
        "remap": {1: 0, 2: 1, 3: 2, 4: 3}, "unknown_labels": "ignore", "target_size": [32, 32],
        "split": {"val": 0.25, "test": 0.25, "seed": 3, "group": CAPTURE},
        "prepared": str(tmp_path / "ds")}}
    config, _ = load_experiment(write_config(tmp_path / "exp.yaml", **sections))
    logged: list[str] = []
    result = prepare_dataset(config, log=logged.append)
    card = read_card(result.path)
    assert card == result.card and card.group_rule == CAPTURE
    assert card.data_config["split"]["group"] == CAPTURE
    assert {s: (i["groups"], i["sources"]) for s, i in card.splits.items()} == {
        "train": (2, 4), "val": (1, 2), "test": (1, 2)}
    captures = {k.rsplit("-", 1)[0] for k in keys}
    split_of: dict[str, set[str]] = {}
    for src in card.sources:  # from the card alone: each capture in exactly one split
        assert src["group"] == src["key"].rsplit("-", 1)[0]
        split_of.setdefault(src["group"], set()).add(src["split"])
    assert set(split_of) == captures and all(len(s) == 1 for s in split_of.values())
    # evaluate's intervals resample captures, not the crops of one capture
    units, name = card.resampling_units(keys)
    assert units == [k.rsplit("-", 1)[0] for k in keys] and name.startswith("groups")
    assert any("split by 4 groups: train 4 (2 groups), val 2 (1 group), test 2 (1 group)"
               in line for line in logged), logged

    console = Console(record=True, width=160)
    print_prepare_summary(result, console)
    text = console.export_text()
    assert re.search(r"split\W+groups\W+sources\W+rows", text), text  # the header
    for split, groups, images in (("train", 2, 4), ("val", 1, 2), ("test", 1, 2)):
        assert re.search(rf"{split}\W+{groups}\W+{images}\W", text), (split, text)
    assert f"split by data.split.group '{CAPTURE}': 4 groups, none in two splits" in text, text

    dataset = {"path": str(result.path), "config_hash": card.config_hash}
    ((name, row),) = split_rows(dataset)
    assert name == "split" and "train 2 groups / 4 images" in row and "test 1 group / 2 images" in row
    assert split_rows({**dataset, "config_hash": "other"}) == []
    assert split_rows({"path": str(tmp_path / "gone")}) == []


def test_no_group_keeps_the_fingerprint_of_existing_datasets(tmp_path) -> None:
    from raygym.config import DataConfig
    from raygym.data.prepare import data_fingerprint

    plain = DataConfig(images=tmp_path / "i", labels=tmp_path / "l", classes=["a", "b"])
    # a dataset prepared before `group` existed was fingerprinted from exactly these keys
    assert plain.model_dump()["split"] == {"val": 0.2, "test": 0.1, "seed": 42}
    grouped = plain.model_copy(update={"split": plain.split.model_copy(
        update={"group": CAPTURE})})
    assert grouped.model_dump()["split"]["group"] == CAPTURE
    assert data_fingerprint(grouped) != data_fingerprint(plain), "a new split, a new dataset"
