"""The ``raygym`` command line: help, version, and one-line errors with exit code 2."""

from __future__ import annotations

import argparse

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
    assert _exit_code(["prepare", str(path), "--set", "model.filters={choice:[2,4"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--set model.filters" in err and "is not YAML" in err and "quoted" in err


def test_config_error_is_one_line(tmp_path, capsys, write_config, s2_config) -> None:
    s2_config["model"]["filter"] = 4
    path = write_config(tmp_path / "exp.yaml", **s2_config)
    assert _exit_code(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "model.filter" in err and "did you mean 'filters'?" in err


def _verbs() -> dict[str, argparse.ArgumentParser]:
    from raygym.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_has_help_with_its_default() -> None:
    """Each option of each verb says what it does, and its default where it has one; each
    verb's help ends with one example of that verb, kept as written."""
    verbs = _verbs()
    assert len(verbs) == 13
    for verb, sp in verbs.items():
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help.strip(), f"{verb} {name}: no help"
            has_default = action.default not in (None, False, argparse.SUPPRESS)
            if has_default and action.option_strings:
                assert "%(default)s" in action.help or "default: " in action.help, \
                    f"{verb} {name}: default {action.default!r} not stated"
        assert sp.epilog and sp.epilog.startswith("example"), f"{verb}: no example"
        assert f"raygym {verb} " in sp.epilog or sp.epilog.rstrip().endswith(f"raygym {verb}")
        assert sp.format_help().rstrip().endswith(sp.epilog.splitlines()[-1].rstrip()), \
            f"{verb}: the example must close the help, unwrapped"


@pytest.mark.parametrize("verb", sorted(["prepare", "train", "search", "evaluate", "predict",
                                         "export", "report", "dashboard", "models",
                                         "convert-config", "demo-data", "cluster"]))
def test_help_of_each_verb_ends_with_its_example(verb: str, capsys) -> None:
    assert _exit_code([verb, "--help"]) == 0
    out = capsys.readouterr().out.rstrip().splitlines()
    assert out[-2] == "example:" and out[-1].startswith(f"  raygym {verb}")
    assert "(default: " in "\n".join(out)


def test_computed_defaults_in_help_match_their_source() -> None:
    """Defaults the parser does not hold (``models --filters / --kernel / --encoder``: the
    schema's; ``export --opset``: the exporter's) are named in words, without importing
    their modules at every call; they must match them."""
    from raygym.inference.onnx_export import DEFAULT_OPSET
    from raygym.models.spec import DEFAULT_ENCODER, GYM_DEFAULTS

    helps = {a.dest: a.help for a in _verbs()["models"]._actions}
    assert helps["filters"].endswith(f"default, {GYM_DEFAULTS.filters})")
    assert helps["kernel"].endswith(f"default, {GYM_DEFAULTS.kernel})")
    assert helps["encoder"].endswith(f"default, {DEFAULT_ENCODER})")
    opset = {a.dest: a.help for a in _verbs()["export"]._actions}["opset"]
    assert opset.endswith(f"(default: {DEFAULT_OPSET})")


def test_ray_data_is_quiet_in_any_command_that_imports_it() -> None:
    """Ray Data sets its log level when first imported (``raygym search`` imports it with
    ``ray.tune``, before starting Ray): the CLI sets raygym's Ray defaults first, or every
    dataset's progress is logged at INFO level on a non-interactive stdout."""
    import logging
    import os
    import subprocess
    import sys

    script = ("import logging; from raygym.cli import main; main(['models']); "
              "import ray.data; print(logging.getLogger('ray.data').getEffectiveLevel())")
    env = {k: v for k, v in os.environ.items() if k != "RAY_DATA_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.splitlines()[-1]) == logging.ERROR


def test_an_output_path_that_cannot_be_written_is_one_line(tmp_path, capsys) -> None:
    """A path under a file (or in a read-only / missing place) is bad input: exit 2, one line
    naming the path the user gave (not raygym's temp name beside it), no traceback."""
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    assert _exit_code(["demo-data", str(blocker / "demo")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(blocker / "demo") in err and "a part of the path is a file, not a folder" in err
    assert blocker.read_text() == "mine"


def test_path_errors_name_the_path_meant() -> None:
    import errno

    from raygym.cli import path_error_line

    temp = FileNotFoundError(errno.ENOENT, "No such file", "/data/out/.report.tmp-41-99")
    assert path_error_line(temp) == ("/data/out/report: no such file or folder (fix: give a "
                                     "path whose folder exists and that you can write to, or "
                                     "an input you can read)")
    named = PermissionError(errno.EACCES, "denied", "/data/.maps.tmp-7.tif")
    assert path_error_line(named).startswith("/data/maps.tif: permission denied")
    assert path_error_line(OSError(errno.ENOSPC, "full", "/data/x")) is None  # not the path's
    assert path_error_line(OSError(errno.ENOENT, "gone")) is None  # no path to name
