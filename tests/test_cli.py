"""The ``raygym`` command line: help, version, and one-line errors with exit code 2."""

from __future__ import annotations

import pytest

from raygym import __version__
from raygym.cli import main


def _exit_code(argv: list[str]) -> int:
    """Run the CLI; argparse's own exits (help, version, usage) arrive as SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_version(capsys) -> None:
    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"raygym {__version__}"


def test_help_lists_commands(capsys) -> None:
    assert _exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("prepare", "train", "search", "evaluate", "predict", "demo-data"):
        assert command in out


def test_prepare_help(capsys) -> None:
    assert _exit_code(["prepare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--overwrite" in out and "--set" in out and "config" in out


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert _exit_code([]) == 2
    assert "usage:" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys) -> None:
    assert _exit_code(["prepair", "x.yaml"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["prepare", "train", "search"])
def test_missing_config_file(tmp_path, capsys, command) -> None:
    missing = tmp_path / "nope.yaml"
    assert _exit_code([command, str(missing)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert str(missing) in lines[0] and "file not found" in lines[0]
    assert "Traceback" not in captured.err


def test_bad_set_override(tmp_path, capsys, write_config, s2_config) -> None:
    path = write_config(tmp_path / "exp.yaml", **s2_config)
    assert _exit_code(["prepare", str(path), "--set", "train.max_epochs"]) == 2
    err = capsys.readouterr().err
    assert "key.path=value" in err and len(err.strip().splitlines()) == 1


def test_config_error_is_one_line(tmp_path, capsys, write_config, s2_config) -> None:
    s2_config["model"]["filter"] = 4
    path = write_config(tmp_path / "exp.yaml", **s2_config)
    assert _exit_code(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "model.filter" in err and "did you mean 'filters'?" in err


def test_prepare_refuses_a_search_space(tmp_path, capsys, write_config, s2_config) -> None:
    s2_config["model"]["filters"] = {"choice": [2, 4]}
    path = write_config(tmp_path / "exp.yaml", **s2_config)
    assert _exit_code(["prepare", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.filters" in err
    assert not (tmp_path / "ds").exists()
