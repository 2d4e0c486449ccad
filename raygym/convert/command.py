"""``raygym convert-config`` end to end: read the Gym JSON, convert and validate, write the
YAML (atomically, never over an existing file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from raygym.atomic import write_text_atomic
from raygym.convert.mapping import GymConverter
from raygym.convert.yaml_out import normalised, render_yaml
from raygym.errors import ConfigError, RaygymError


def _read_gym_json(path: Path) -> dict[str, Any]:
    """The Gym config as a dict; unreadable or invalid JSON fails naming the line and column."""
    if not path.is_file():
        raise ConfigError("file not found", file=path, fix="check the path")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the file: {err}", file=path) from None
    try:
        gym = json.loads(text)
    except json.JSONDecodeError as err:
        fix = None
        if err.msg.startswith(("Expecting property name", "Expecting value")):
            fix = "JSON allows no comma after the last entry, and needs double quotes"
        raise ConfigError(f"line {err.lineno}, column {err.colno}: invalid JSON: {err.msg}",
                          file=path, fix=fix) from None
    if not isinstance(gym, dict):
        raise ConfigError(f"expected a JSON object of Gym keys (got {type(gym).__name__})",
                          file=path)
    return gym


def _convert(gym: dict[str, Any], file: Path, images: Path | None, labels: Path | None
             ) -> tuple[GymConverter, dict[str, Any]]:
    conv = GymConverter(gym, file, images, labels)
    conv.convert()
    validated = conv.validate().model_dump(mode="python")
    return conv, normalised(conv.raw, validated)


def gym_to_raw(gym: dict[str, Any], *, file: Path = Path("<gym config>"),
               images: Path | None = None, labels: Path | None = None
               ) -> tuple[dict[str, Any], list[str]]:
    """Map a parsed Gym config to a validated raygym experiment dict (YAML-ready, in section
    order) and the Gym keys not carried over. Raises :class:`ConfigError` naming the Gym key
    and the raygym key for any value raygym rejects."""
    conv, doc = _convert(gym, file, images, labels)
    return doc, list(conv.skipped)


def convert_gym_config(gym_json: Path, out: Path | None = None, *, images: Path | None = None,
                       labels: Path | None = None) -> tuple[Path, list[str]]:
    """Convert a Segmentation Gym JSON config into a raygym experiment YAML.

    ``out`` defaults to ``<stem>.yaml`` beside ``gym_json``; an existing file is never
    overwritten. ``images`` / ``labels`` fill ``data.images`` / ``data.labels`` (placeholders
    ``images/`` and ``labels/`` otherwise). The result is validated with the experiment schema
    before it is written (atomically). Returns ``(path written, Gym keys not carried over)``;
    the reasons are in the YAML's header comment.
    """
    gym_json = Path(gym_json)
    out = Path(out) if out is not None else gym_json.with_suffix(".yaml")
    gym = _read_gym_json(gym_json)
    if out.exists():
        raise RaygymError("already exists; not overwriting it", file=out,
                          fix="choose another file with --out, or delete this one")
    conv, doc = _convert(gym, gym_json, images, labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, render_yaml(conv, doc, gym_json, out))
    return out, list(conv.skipped)
