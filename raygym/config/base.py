"""What every section of the experiment schema shares."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

IGNORE_INDEX = 255


class StrictModel(BaseModel):
    """A schema section: unknown keys, NaN and inf are refused, assignments re-validated."""

    # no NaN / inf: `max_lr: .inf` would pass `gt=0` and fail in every trial instead
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` as a float as YAML 1.2 does.

    PyYAML follows YAML 1.1, where a float needs a dot: ``1e-4`` was the *string* '1e-4', so
    ``max_lr: {choice: [1e-3, 1e-4]}`` searched two strings (shown quoted, tabled as text).
    """


class YamlDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting a string that :class:`YamlLoader` reads as a float
    (``'1e5'``), so what raygym writes reads back the same."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$")
for _yaml_class in (YamlLoader, YamlDumper):
    _yaml_class.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT,
                                      list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """A user's YAML text (a file, a ``--set`` value) as Python objects."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def dump_yaml_text(data: Any) -> str:
    """``data`` as YAML text that :func:`load_yaml` reads back unchanged (keys in order)."""
    return yaml.dump(data, Dumper=YamlDumper, sort_keys=False)
