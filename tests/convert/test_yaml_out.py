"""raygym.convert.yaml_out: the header, the notes and the comments of the written YAML."""

from __future__ import annotations

from pathlib import Path

import yaml

from . import convert_and_load


def test_yaml_header_and_comments(tmp_path: Path) -> None:
    _, _, out = convert_and_load(tmp_path)
    text = out.read_text()
    assert text.startswith("# raygym experiment converted from the Segmentation Gym config ")
    assert "hatteras.json" in text.splitlines()[0]
    header = text.split("\n\n", 2)
    assert "raygym predict --tta" in text and "FILTER_VALUE = 3: label dilation" in text
    assert "HOT_START" in "".join(header[:2])
    assert "test split such as 0.1 is recommended" in text
    assert "placeholders" in text
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert yaml.safe_load(text)["data"]["remap"] == {0: 0, 1: 0, 2: 1, 3: 2, 4: 3}


def test_unknown_keys_listed_with_hint(tmp_path: Path) -> None:
    _, skipped, out = convert_and_load(tmp_path, TARGETSIZE=3, MY_NOTE="x")
    assert skipped[-2:] == ["TARGETSIZE", "MY_NOTE"]
    text = out.read_text()
    assert "TARGETSIZE = 3: not a Segmentation Gym key (did you mean TARGET_SIZE?)" in text
    assert "MY_NOTE" in text


def test_a_switch_set_off_is_said_to_lose_nothing(tmp_path: Path) -> None:
    """FILTER_VALUE 0 / DO_CRF false did nothing in Gym: the note says so, and a value that
    did something (FILTER_VALUE 3, above) is not told so."""
    _, _, out = convert_and_load(tmp_path, FILTER_VALUE=0, DO_CRF=False)
    text = out.read_text()
    assert "FILTER_VALUE = 0: label dilation radius; not supported by raygym; off in this " \
           "file, so nothing is lost" in text
    assert "DO_CRF = false: CRF post-processing is not supported; off in this file" in text
    (tmp_path / "on").mkdir()
    _, _, out = convert_and_load(tmp_path / "on", DO_CRF=True)
    assert "DO_CRF = true: CRF post-processing is not supported\n" in out.read_text()
