"""Pydantic's validation errors as raygym's one-line :class:`~raygym.errors.ConfigError`."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from raygym.errors import ConfigError


class KeyedError(ValueError):
    """A cross-field error naming the key to fix (pydantic's location names only the section
    whose validator raised it)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def format_validation_error(err: ValidationError, file: str,
                            root: type[BaseModel]) -> ConfigError:
    """The first of pydantic's errors as one line naming ``file``, the dotted key and the fix
    (``root``: the schema validated, for the valid keys of an unknown one)."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if not str(p).startswith("function-")]
    # pydantic puts union branch names into loc ("str", "dict[str,float]"); drop them
    loc = [p for p in loc if "[" not in p and p not in ("str", "int", "float", "bool", "list")]
    key = getattr((first.get("ctx") or {}).get("error"), "key", None) or ".".join(loc) or None
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        valid = _valid_keys(root, loc[:-1])
        hint = difflib.get_close_matches(loc[-1], valid, n=1)
        did = f"did you mean '{hint[0]}'? " if hint else ""
        return ConfigError(f"unknown key; {did}valid keys here: {', '.join(valid)}",
                           file=file, key=key)
    if first["type"] == "missing":
        return ConfigError("required key is missing", file=file, key=key)
    got = first.get("input")
    got_text = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    return ConfigError(f"{msg}{got_text}", file=file, key=key)


def _valid_keys(root: type[BaseModel], loc: list[str]) -> list[str]:
    model = root
    for part in loc:
        if part.isdigit():  # a list index (data.extra_bands.0): same model as the list's items
            continue
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        sub = _model_in(ann)
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
