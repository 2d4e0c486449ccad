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
    fix = _TYPE_FIXES.get(first["type"])
    if first["type"] in _BOUNDS:  # a number out of its range: say which values are allowed
        sign, name = _BOUNDS[first["type"]]
        fix = f"use a value {sign} {(first.get('ctx') or {}).get(name)}"
    field = _field_at(root, loc)
    about = getattr(field, "description", None)
    if fix and about:
        fix = f"{fix} ({about})"
    return ConfigError(f"{msg}{got_text}", file=file, key=key, fix=fix)


# what to write instead, for pydantic's type errors (the message names the type, not the form)
_TYPE_FIXES: dict[str, str] = {
    "bool_parsing": "write true or false", "bool_type": "write true or false",
    "int_parsing": "write a whole number", "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number, e.g. 0.5 or 1.0e-4", "float_type": "write a number",
    "string_type": "write a text value (quote it if YAML reads it as a number or a date)",
    "list_type": "write a list, e.g. [a, b]", "tuple_type": "write a list, e.g. [256, 256]",
    "dict_type": "write a mapping, e.g. {key: value}",
    "string_pattern_mismatch": "write a value the pattern allows",
}


# pydantic's range errors: the comparison and the name of its bound in the error's ctx
_BOUNDS: dict[str, tuple[str, str]] = {
    "greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"), "less_than": ("<", "lt"),
}


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The schema that holds the keys under ``loc`` (None: ``loc`` is not a section)."""
    model = root
    for part in loc:
        if part.isdigit():  # a list index (data.extra_bands.0): same model as the list's items
            continue
        field = model.model_fields.get(part)
        sub = _model_in(getattr(field, "annotation", None))
        if sub is None:
            return None
        model = sub
    return model


def _field_at(root: type[BaseModel], loc: list[str]) -> Any:
    """Pydantic's FieldInfo of the key at ``loc`` (None when there is none)."""
    while loc and loc[-1].isdigit():  # an item of a list key: the list key's field
        loc = loc[:-1]
    model = _model_at(root, loc[:-1]) if loc else None
    return model.model_fields.get(loc[-1]) if model is not None else None


def _valid_keys(root: type[BaseModel], loc: list[str]) -> list[str]:
    model = _model_at(root, loc)
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
