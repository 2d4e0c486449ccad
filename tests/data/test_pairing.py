"""Pairing images, extra bands and labels by name (key regex) or by manifest."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from raygym.config import DataConfig, FolderSource
from raygym.data.pairing import Pair, find_pairs, naming_rules, pair_by_manifest, pair_by_name
from raygym.errors import DataError

NIR_KEY = r"^(.*)_ir(-\d+)$"
CLASSES = ["water", "surf", "wet_sand", "dry_land"]


def _folders(root: Path, **extra: object) -> DataConfig:
    return DataConfig(images=root / "images", labels=root / "labels",
                      extra_bands=[{"folder": root / "nir", "key": NIR_KEY}],
                      classes=CLASSES, **extra)


def test_s2_pairs_by_name_with_nir_key(s2_data) -> None:
    pairs = pair_by_name(_folders(s2_data))
    assert len(pairs) == 80
    assert len({p.key for p in pairs}) == 80
    for pair in pairs:
        image, nir = pair.images
        assert image.parent.name == "images" and image.stem == pair.key
        assert nir.parent.name == "nir" and nir.name.replace("_ir-", "-") == f"{pair.key}.jpg"
        assert pair.label == s2_data / "labels" / f"{pair.key}.jpg"
    assert [p.key for p in pairs] == sorted(p.key for p in pairs)


def test_without_key_regex_nothing_pairs(s2_data) -> None:
    data = DataConfig(images=s2_data / "images", labels=s2_data / "labels",
                      extra_bands=[s2_data / "nir"], classes=CLASSES)
    with pytest.raises(DataError) as info:
        pair_by_name(data)
    # every scene is an orphan: the NIR stems (..._ir-0) differ from the image stems
    assert "160 unpaired files" in info.value.message
    assert "in images/labels but not in extra_bands[0]" in info.value.message
    assert "(+155 more)" in info.value.message, "a long list is cut short"
    # the fix names the key regex the names follow, and that key pairs every scene
    rule = r"^(.*)_ir(\-\d+)$"
    assert info.value.fix == ("pair by the naming the files follow: data.extra_bands[0]: "
                              f"{{folder: {s2_data / 'nir'}, key: '{rule}'}}")
    keyed = data.model_copy(update={"extra_bands": [
        FolderSource(folder=s2_data / "nir", key=rule)]})
    assert len(pair_by_name(keyed)) == 80


def test_no_key_is_suggested_when_a_band_file_is_missing(tmp_path, s2_subset) -> None:
    """Names that do not line up one to one: no guessed rule, the general fix."""
    s2_subset(tmp_path, 4)
    sorted((tmp_path / "nir").iterdir())[1].unlink()
    data = DataConfig(images=tmp_path / "images", labels=tmp_path / "labels",
                      extra_bands=[tmp_path / "nir"], classes=CLASSES)
    with pytest.raises(DataError) as info:
        pair_by_name(data)
    assert info.value.fix is not None and info.value.fix.startswith("add the missing files")


def _suggested_fix(data: DataConfig) -> str:
    with pytest.raises(DataError) as info:
        pair_by_name(data)
    assert info.value.fix is not None
    return info.value.fix


def test_doodler_label_names_get_a_key(tmp_path, s2_subset) -> None:
    """Labels named as Doodler / Gym write them (the image's name + ``_label_greyscale_mask``
    or ``_mask``, as in the aerial set): the fix names a key that pairs every scene."""
    keys = s2_subset(tmp_path, 4)
    for n, key in enumerate(keys):
        word = "_label_greyscale_mask" if n % 2 else "_mask"
        (tmp_path / "labels" / f"{key}.jpg").rename(tmp_path / "labels" / f"{key}{word}.jpg")
    data = DataConfig(images=tmp_path / "images", labels=tmp_path / "labels", classes=CLASSES)
    rule = r"^(.*?)(?:_label_greyscale_mask|_mask)$"
    assert _suggested_fix(data) == ("pair by the naming the files follow: data.labels: "
                                    f"{{folder: {tmp_path / 'labels'}, key: '{rule}'}}")
    keyed = data.model_copy(update={"labels": FolderSource(folder=tmp_path / "labels", key=rule)})
    pairs = pair_by_name(keyed)
    assert [p.key for p in pairs] == sorted(keys)
    assert all(p.label.name.startswith(f"{p.key}_") for p in pairs)


def test_image_names_with_a_word_get_a_key(tmp_path, s2_subset) -> None:
    """Images named ``X_img`` beside labels ``X`` (no extra band): the images get the key."""
    keys = s2_subset(tmp_path, 3)
    for key in keys:
        (tmp_path / "images" / f"{key}.jpg").rename(tmp_path / "images" / f"img_{key}.jpg")
    data = DataConfig(images=tmp_path / "images", labels=tmp_path / "labels", classes=CLASSES)
    assert _suggested_fix(data).endswith(f"data.images: {{folder: {tmp_path / 'images'}, "
                                         "key: '^img_(.*)$'}")
    keyed = data.model_copy(update={"images": FolderSource(folder=tmp_path / "images",
                                                           key="^img_(.*)$")})
    assert [p.key for p in pair_by_name(keyed)] == sorted(keys)


def test_no_label_key_when_a_name_follows_no_rule(tmp_path, s2_subset) -> None:
    keys = s2_subset(tmp_path, 3)
    (tmp_path / "labels" / f"{keys[0]}.jpg").rename(tmp_path / "labels" / f"{keys[0]}_mask.jpg")
    (tmp_path / "labels" / f"{keys[1]}.jpg").rename(tmp_path / "labels" / "other.jpg")
    data = DataConfig(images=tmp_path / "images", labels=tmp_path / "labels", classes=CLASSES)
    assert _suggested_fix(data).startswith("add the missing files")


def test_aerial_label_names_get_a_key(s2_data) -> None:
    """The real aerial set's 165 labels (two namings) pair by the suggested key alone."""
    aerial = s2_data.parent / "usgs_coastal_aerial_3class"
    if not (aerial / "pairs.csv").is_file():
        pytest.skip(f"aerial data set not found at {aerial}")
    data = DataConfig(images=aerial / "images", labels=aerial / "labels",
                      classes=["deep", "shallow", "dry"])
    fix = _suggested_fix(data)
    key = fix.split("key: '")[1].rstrip("'}")
    keyed = data.model_copy(update={"labels": FolderSource(folder=aerial / "labels", key=key)})
    with (aerial / "pairs.csv").open() as f:
        truth = {(Path(r["image"]).name, Path(r["label"]).name) for r in csv.DictReader(f)}
    assert {(p.images[0].name, p.label.name) for p in pair_by_name(keyed)} == truth


def test_orphans_are_listed(tmp_path, s2_subset) -> None:
    keys = s2_subset(tmp_path, 4)
    (tmp_path / "labels" / f"{keys[1]}.jpg").unlink()
    with pytest.raises(DataError) as info:
        pair_by_name(_folders(tmp_path))
    text = str(info.value)
    assert "1 unpaired file:" in text
    assert f"'{keys[1]}' in images/extra_bands[0] but not in labels" in text
    assert "manifest" in (info.value.fix or "")


def test_extra_image_without_band_is_listed(tmp_path, s2_subset) -> None:
    keys = s2_subset(tmp_path, 3)
    base, tile = keys[0].rsplit("-", 1)
    (tmp_path / "nir" / f"{base}_ir-{tile}.jpg").unlink()
    with pytest.raises(DataError, match=rf"'{keys[0]}' in images/labels but not in extra_bands"):
        pair_by_name(_folders(tmp_path))


def test_non_image_files_are_skipped(tmp_path, s2_subset) -> None:
    s2_subset(tmp_path, 3)
    (tmp_path / "images" / "notes.txt").write_text("x")
    (tmp_path / "labels" / ".hidden.png").write_bytes(b"")
    assert len(pair_by_name(_folders(tmp_path))) == 3


def test_duplicate_keys_in_one_folder(tmp_path, s2_subset) -> None:
    keys = s2_subset(tmp_path, 3)
    shutil.copy(tmp_path / "images" / f"{keys[0]}.jpg", tmp_path / "images" / f"{keys[0]}.png")
    with pytest.raises(DataError) as info:
        pair_by_name(_folders(tmp_path))
    assert info.value.key == "data.images"
    assert f"share the pairing key '{keys[0]}'" in info.value.message


def test_key_regex_that_matches_nothing(tmp_path, s2_subset) -> None:
    s2_subset(tmp_path, 2)
    data = DataConfig(images=tmp_path / "images", labels=tmp_path / "labels",
                      extra_bands=[{"folder": tmp_path / "nir", "key": r"^(.*)_nir$"}],
                      classes=CLASSES)
    with pytest.raises(DataError) as info:
        pair_by_name(data)
    assert info.value.key == "data.extra_bands.key"


def test_missing_and_empty_folders(tmp_path) -> None:
    (tmp_path / "labels").mkdir()
    data = DataConfig(images=tmp_path / "images", labels=tmp_path / "labels", classes=CLASSES)
    with pytest.raises(DataError) as info:
        pair_by_name(data)
    assert info.value.key == "data.images" and "not found" in info.value.message
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError) as info:
        pair_by_name(data)
    assert info.value.key == "data.images" and "no PNG/JPEG/TIFF" in info.value.message
    # convert-config's placeholder band folder: no demo-data hint (it would write the demo
    # set into band_4/)
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "a.png")
    missing_band = data.model_copy(update={"extra_bands": [
        FolderSource(folder=tmp_path / "band_4")]})
    with pytest.raises(DataError) as info:
        pair_by_name(missing_band)
    assert info.value.key == "data.extra_bands" and "demo-data" not in str(info.value)
    assert "one folder per extra band" in str(info.value)


def test_s2_manifest(s2_data) -> None:
    pairs = pair_by_manifest(s2_data / "pairs.csv")
    assert len(pairs) == 80
    assert all(len(p.images) == 2 for p in pairs), "image + nir per row"
    assert all(len({*p.images, p.label}) == 3 for p in pairs), "three distinct files each"
    assert all(f.is_absolute() and f.is_file() for p in pairs for f in (*p.images, p.label))
    assert len({p.key for p in pairs}) == 80
    # same scenes, same files as pairing by name
    by_name = {p.key: p for p in pair_by_name(_folders(s2_data))}
    for p in pairs:
        assert by_name[p.key].images == p.images and by_name[p.key].label == p.label
    via_config = find_pairs(DataConfig(manifest=s2_data / "pairs.csv", classes=CLASSES))
    assert via_config == pairs


def _write_manifest(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header or ["image", "nir", "label"])
        writer.writerows(rows)
    return path


def test_missing_manifest(tmp_path) -> None:
    with pytest.raises(DataError) as info:
        pair_by_manifest(tmp_path / "pairs.csv")
    assert info.value.key == "data.manifest" and str(tmp_path / "pairs.csv") in str(info.value)


def test_manifest_with_missing_files(tmp_path, s2_subset) -> None:
    keys = s2_subset(tmp_path, 2)
    rows = [[f"images/{k}.jpg", f"nir/{k.rsplit('-', 1)[0]}_ir-{k.rsplit('-', 1)[1]}.jpg",
             f"labels/{k}.jpg"] for k in keys]
    rows[1][2] = "labels/gone.jpg"
    manifest = _write_manifest(tmp_path / "pairs.csv", rows)
    with pytest.raises(DataError) as info:
        pair_by_manifest(manifest)
    assert "1 files listed but not found" in info.value.message
    assert "gone.jpg" in info.value.message


def test_manifest_columns_and_rows(tmp_path) -> None:
    bad = _write_manifest(tmp_path / "a.csv", [["x.png", "y.png"]], header=["img", "mask"])
    with pytest.raises(DataError, match="'image' and 'label' columns"):
        pair_by_manifest(bad)
    empty = _write_manifest(tmp_path / "b.csv", [])
    with pytest.raises(DataError, match="no rows"):
        pair_by_manifest(empty)
    hole = _write_manifest(tmp_path / "c.csv", [["a.png", "", "b.png"]])
    with pytest.raises(DataError, match="line 2: empty cell"):
        pair_by_manifest(hole)


def test_manifest_listing_a_scene_twice_is_refused(tmp_path, s2_data) -> None:
    # Two rows of one scene would be two "sources" that may land in train and test.
    rows = (s2_data / "pairs.csv").read_text().splitlines()
    manifest = tmp_path / "pairs.csv"
    base = s2_data.as_posix()
    body = [",".join(f"{base}/{c}" for c in r.split(",")) for r in rows[1:4]]
    manifest.write_text("\n".join([rows[0], *body, body[0]]) + "\n")
    with pytest.raises(DataError) as info:
        pair_by_manifest(manifest)
    assert "line 5" in info.value.message and "line 2" in info.value.message


def test_manifest_same_stem_in_two_folders_gets_distinct_keys(tmp_path, s2_subset) -> None:
    keys = s2_subset(tmp_path / "a", 1)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    k = keys[0]
    nir = f"nir/{k.rsplit('-', 1)[0]}_ir-{k.rsplit('-', 1)[1]}.jpg"
    rows = [[f"{site}/images/{k}.jpg", f"{site}/{nir}", f"{site}/labels/{k}.jpg"]
            for site in ("a", "b")]
    pairs = pair_by_manifest(_write_manifest(tmp_path / "pairs.csv", rows))
    assert len(pairs) == 2 and len({p.key for p in pairs}) == 2
    assert pairs[0].images[0].parent.parent.name == "a"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_manifest_in_the_encodings_spreadsheets_save(tmp_path: Path, encoding: str) -> None:
    for name in ("plage_été.png", "plage_été_label.png"):
        (tmp_path / name).write_bytes(b"")
    text = "image,label\r\nplage_été.png,plage_été_label.png\r\n"
    (tmp_path / "pairs.csv").write_bytes(text.encode(encoding))
    pairs = pair_by_manifest(tmp_path / "pairs.csv")
    assert [p.images[0].name for p in pairs] == ["plage_été.png"]
    assert pairs[0].label.name == "plage_été_label.png"


def test_manifest_in_utf16_without_a_bom_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_bytes("image,label\na.png,b.png\n".encode("utf-16-le"))
    with pytest.raises(DataError, match="CSV UTF-8"):
        pair_by_manifest(tmp_path / "pairs.csv")


def _pairs(*stems: tuple[str, ...]) -> list[Pair]:
    return [Pair(names[0], tuple(Path(f"{n}.jpg") for n in names), Path("label.png"))
            for names in stems]


def test_band_naming_is_learnt_from_the_pairs(s2_data) -> None:
    """A manifest names band files freely; the rule they follow is learnt so prediction can
    find a new image's band files (S2: X-0 and X_ir-0)."""
    import re

    pairs = pair_by_manifest(s2_data / "pairs.csv")
    rules = naming_rules(pairs)
    assert rules is not None and len(rules) == 1 and rules[0] is not None

    def key(pattern: str, stem: str) -> str:
        m = re.match(pattern, stem)
        assert m is not None, (pattern, stem)
        return "".join(m.groups())

    for p in pairs:  # the rule pairs every training scene with its own band file
        assert key(rules[0]["image"], p.images[0].stem) == key(rules[0]["band"], p.images[1].stem)
    # and a new scene number follows it
    assert key(rules[0]["image"], "20250101T000000_X-17") == key(rules[0]["band"],
                                                                  "20250101T000000_X_ir-17")
    # a middle word swapped, also one sharing its first letter; a number whose digit count
    # varies; a name prefix
    word = r"(?<![^\W\d_])"
    assert naming_rules(_pairs(("a_rgb-0", "a_nir-0"), ("b_rgb-10", "b_nir-10"))) == [
        {"image": rf"^(.*){word}rgb(\-\d+)$", "band": rf"^(.*){word}nir(\-\d+)$"}]
    assert naming_rules(_pairs(("a_rgb-0", "a_red-0"), ("b_rgb-1", "b_red-1")))[0]["band"] == (
        rf"^(.*){word}red(\-\d+)$")
    (prefix,) = naming_rules(_pairs(("abc", "nir_abc"), ("xyz", "nir_xyz")))
    assert key(prefix["image"], "new") == key(prefix["band"], "nir_new") == "new"
    # whole name parts only: Sentinel-2 band names differ in 04 / 08, so the rule never
    # pairs tile_104 with tile_108 (cut inside a number, it would)
    (bands,) = naming_rules(_pairs(("K_B04", "K_B08"), ("L_B04", "L_B08")))
    assert key(bands["image"], "M_B04") == key(bands["band"], "M_B08") == "M_B"
    assert re.match(bands["image"], "tile_104") is None
    # same stems need no rule; names with nothing in common have none
    assert naming_rules(_pairs(("a", "a"), ("b", "b"))) is None
    assert naming_rules(_pairs(("a", "zz"), ("b", "qq"))) is None
    assert naming_rules(_pairs(("a",), ("b",))) is None  # no extra band
    # two rules for one band (one pair differs): none, never a rule that misses a pair
    assert naming_rules(_pairs(("a-0", "a_ir-0"), ("b-0", "b_nir-0"))) is None


def test_a_key_is_suggested_for_names_that_sort_out_of_step(tmp_path) -> None:
    """'-' sorts before '_': Sao-0 / Sao_Paulo-0 against Sao_ir-0 / Sao_Paulo_ir-0 do not
    line up by sorted position, and the rule is still found (and pairs both scenes)."""
    from PIL import Image

    stems = {"images": ["Sao-0", "Sao_Paulo-0"], "labels": ["Sao-0", "Sao_Paulo-0"],
             "nir": ["Sao_ir-0", "Sao_Paulo_ir-0"]}
    for folder, names in stems.items():
        (tmp_path / folder).mkdir()
        for name in names:
            Image.new("L", (4, 4)).save(tmp_path / folder / f"{name}.png")
    data = DataConfig(images=tmp_path / "images", labels=tmp_path / "labels",
                      extra_bands=[tmp_path / "nir"], classes=CLASSES)
    with pytest.raises(DataError) as info:
        pair_by_name(data)
    rule = r"^(.*)_ir(\-\d+)$"
    assert info.value.fix is not None and f"key: '{rule}'" in info.value.fix
    keyed = data.model_copy(update={"extra_bands": [
        FolderSource(folder=tmp_path / "nir", key=rule)]})
    assert [p.images[1].name for p in pair_by_name(keyed)] == ["Sao_ir-0.png",
                                                              "Sao_Paulo_ir-0.png"]
