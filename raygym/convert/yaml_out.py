"""The converted experiment as YAML text: a header comment (how it was made, notes, the Gym
keys not carried over), the sections in reading order, and ``# ...`` lines above the keys a
conversion chose for the user (placeholders, differences from Gym)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from raygym.config.base import YamlDumper
from raygym.convert.mapping import GymConverter

# Folder paths keep the text written (placeholders stay relative), the remap its int keys.
_KEPT_AS_WRITTEN = ("data.images", "data.labels", "data.extra_bands", "data.remap")


class _Dumper(YamlDumper):
    """Block style, except lists of scalars, which read better inline (``[768, 768]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(v, dict | list) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _plain(value: Any) -> Any:
    """Tuples -> lists and paths -> strings, recursively, so that SafeDumper takes them."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _get_path(d: Any, path: str) -> Any:
    """``d['a']['b']`` for ``path='a.b'``."""
    for p in path.split("."):
        d = d[p]
    return d


def normalised(raw: dict[str, Any], validated: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``raw``'s keys in ``raw``'s order with the schema's parsed values (types normalised);
    folder paths and the remap keep the values written (placeholders, int keys)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path != "data.remap":
            out[key] = normalised(value, validated, f"{path}.")
        elif path in _KEPT_AS_WRITTEN:
            out[key] = value
        else:
            out[key] = _plain(_get_path(validated, path))
    return out


def _with_comments(text: str, comments: dict[str, list[str]]) -> str:
    """Insert ``# ...`` lines above the YAML lines of the dotted key paths in ``comments``."""
    out: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing sections
    for line in text.splitlines():
        m = re.match(r"^( *)([A-Za-z0-9_]+):(?: |$)", line)
        if m:
            indent, key = len(m.group(1)), m.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key))
            path = ".".join(k for _, k in stack)
            for c in comments.get(path, []):
                out.append(f"{' ' * indent}# {c}")
        out.append(line)
    return "\n".join(out) + "\n"


def render_yaml(conv: GymConverter, doc: dict[str, Any], source: Path, out: Path) -> str:
    """The YAML text of ``doc`` (from :func:`normalised`) with ``conv``'s header and comments;
    ``source`` is the Gym JSON and ``out`` the YAML's path, both named in the header."""
    header = [
        f"raygym experiment converted from the Segmentation Gym config {source}",
        "by `raygym convert-config`. Check the placeholders and notes, then run",
        f"  raygym prepare {out}",
        f"  raygym train {out}",
    ]
    if conv.notes:
        header += ["", "Notes:"] + [f"  {n}" for n in conv.notes]
    if conv.skipped:
        header += ["", "Gym keys not carried over:"]
        for key, reason in conv.skipped.items():
            value = json.dumps(conv.gym[key])
            value = value if len(value) <= 40 else value[:37] + "..."
            header.append(f"  {key} = {value}: {reason}")
    head = "".join(f"# {h}".rstrip() + "\n" for h in header)
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)
    return head + "\n" + _with_comments(body, conv.comments)
