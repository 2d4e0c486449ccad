"""raygym.convert.command and ``raygym convert-config``: reading the JSON, the output path,
never overwriting, and the CLI's messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from raygym.cli import main
from raygym.convert import convert_gym_config
from raygym.errors import ConfigError, RaygymError
from raygym.search.space_config import load_experiment

from . import write_gym


def test_images_labels_and_out_arguments(tmp_path: Path) -> None:
    gym = write_gym(tmp_path)
    want = tmp_path / "sub" / "exp.yaml"
    out, _ = convert_gym_config(gym, want, images=tmp_path / "imgs", labels=tmp_path / "lbls")
    assert out == want
    config, _ = load_experiment(out)
    assert config.data.images is not None and config.data.images.folder == tmp_path / "imgs"
    assert config.data.labels is not None and config.data.labels.folder == tmp_path / "lbls"
    assert "placeholders: point them" not in out.read_text()


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    gym = write_gym(tmp_path)
    existing = tmp_path / "hatteras.yaml"
    existing.write_text("keep me\n")
    with pytest.raises(RaygymError, match="already exists") as info:
        convert_gym_config(gym)
    assert "hatteras.yaml" in str(info.value) and "--out" in str(info.value)
    assert existing.read_text() == "keep me\n"


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "NCLASSES": 4,\n  "MODEL": "unet",\n}\n')
    with pytest.raises(ConfigError, match=r"bad\.json: line 4, column 1: invalid JSON") as info:
        convert_gym_config(path)
    assert "comma" in str(info.value)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        convert_gym_config(path)
    assert not (tmp_path / "bad.yaml").exists()


def test_cli_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gym = write_gym(tmp_path)
    out = tmp_path / "exp.yaml"
    assert main(["convert-config", str(gym), "--out", str(out)]) == 0
    assert out.is_file()
    stdout = capsys.readouterr().out
    assert "exp.yaml" in stdout and "FILTER_VALUE" in stdout
    config, _ = load_experiment(out, base_dir=tmp_path)
    assert config.model.arch == "gym_resunet"


def test_cli_convert_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    assert main(["convert-config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "nope.json" in err and "not found" in err
