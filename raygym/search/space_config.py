"""An experiment file and its search distributions: read, split and validated once.

Any scalar of an experiment file may instead be a search distribution (``{choice: [...]}``,
``{uniform: [a, b]}``, ``{loguniform: [a, b]}``, ``{int: [a, b]}``, ``{grid: [...]}``,
optionally with ``when: {other.key: [values]}``). :func:`load_experiment` resolves the file's
relative paths against the current directory (modules below the CLI only see absolute
paths), separates the distributions into a :class:`SearchSpace` and validates the rest with
:mod:`raygym.config`; ``prepare`` and ``train`` require an empty space
(:func:`require_fixed`). A trial's sampled values are a flat ``{key path: value}`` dict, set
on the validated config with :func:`apply_params`.
:mod:`raygym.search.space` turns the space into what Optuna and Tune sample.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field

from raygym.config import (
    DataConfig,
    ExperimentConfig,
    SearchConfig,
    TrainConfig,
    validate_experiment,
)
from raygym.config.base import YamlLoader, load_yaml
from raygym.errors import ConfigError

DistKind = Literal["choice", "uniform", "loguniform", "int", "grid"]
DIST_KINDS: tuple[DistKind, ...] = get_args(DistKind)
# Keys that fix what the prepared dataset is, or how the search itself runs: they cannot vary
# per trial (a different target size would need a different prepared dataset).
FIXED_PREFIXES = ("name", "data", "search", "resources", "mlflow", "train.output_dir",
                  "train.init_weights")
# Searched keys whose extremes, taken together, make the trial that breaks a cross-key rule
# first: the shortest run with the longest warm-up. Each candidate alone is validated only
# against the other keys' first candidates.
WORST_CASE = {"train.max_epochs": min, "train.rampup_epochs": max}


class Distribution(BaseModel):
    """One searchable key: ``kind`` in choice/uniform/loguniform/int/grid."""

    model_config = ConfigDict(frozen=True)

    path: str
    kind: DistKind
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    when: dict[str, tuple[Any, ...]] = Field(default_factory=dict)

    def candidates(self) -> list[Any]:
        """Values that validation tries: every choice, or both bounds of a range."""
        if self.kind in ("choice", "grid"):
            return list(self.values)
        if self.kind == "int":
            return [int(self.low or 0), int(self.high or 0)]
        return [self.low, self.high]

    def describe(self) -> str:
        if self.kind in ("choice", "grid"):
            text = f"{self.kind} {list(self.values)}"
        else:
            text = f"{self.kind} [{self.low:g}, {self.high:g}]"
        if self.when:
            text += " when " + ", ".join(f"{k} in {list(v)}" for k, v in self.when.items())
        return text

    def size(self) -> float:
        """Number of distinct values (inf for continuous ranges)."""
        if self.kind in ("choice", "grid"):
            return len(self.values)
        if self.kind == "int":
            return int(self.high or 0) - int(self.low or 0) + 1
        return math.inf


class SearchSpace(BaseModel):
    """The distributions found in an experiment file, in file order (conditions follow it)."""

    dists: list[Distribution] = Field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.dists)

    def __iter__(self) -> Iterator[Distribution]:  # type: ignore[override]
        return iter(self.dists)

    def paths(self) -> list[str]:
        return [d.path for d in self.dists]

    def grid_size(self) -> float:
        return math.prod(d.size() for d in self.dists if d.kind == "grid") if self.dists else 1

    def fingerprint(self) -> str:
        text = json.dumps([d.model_dump(mode="json") for d in self.dists], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_distribution(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and any(k in DIST_KINDS for k in value)
        and set(value) <= {*DIST_KINDS, "when"}
    )


def _parse_distribution(path: str, spec: Mapping[str, Any], file: str) -> Distribution:
    kinds = [k for k in spec if k in DIST_KINDS]
    if len(kinds) != 1:
        raise ConfigError(f"give exactly one of {', '.join(DIST_KINDS)} (got {kinds})",
                          file=file, key=path)
    kind = kinds[0]
    arg = spec[kind]
    when_raw = spec.get("when") or {}
    if not isinstance(when_raw, Mapping):
        raise ConfigError("`when` must map key paths to lists of values", file=file, key=path)
    when = {str(k): tuple(v if isinstance(v, list) else [v]) for k, v in when_raw.items()}
    if kind in ("choice", "grid"):
        if not isinstance(arg, list) or not arg:
            raise ConfigError(f"{kind} needs a non-empty list of values", file=file, key=path)
        return Distribution(path=path, kind=kind, values=tuple(arg), when=when)
    if not (isinstance(arg, list) and len(arg) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in arg)):
        raise ConfigError(f"{kind} needs two numbers [low, high] (got {arg!r})",
                          file=file, key=path)
    low, high = float(arg[0]), float(arg[1])
    if low >= high:
        raise ConfigError(f"{kind} bounds are reversed or equal: [{arg[0]}, {arg[1]}]",
                          file=file, key=path, fix=f"write [{arg[1]}, {arg[0]}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"loguniform needs bounds > 0 (got {arg[0]})", file=file, key=path,
                          fix="use uniform, or a positive lower bound such as 1e-7")
    if kind == "int" and not (float(arg[0]).is_integer() and float(arg[1]).is_integer()):
        raise ConfigError(f"int needs integer bounds (got {arg})", file=file, key=path)
    return Distribution(path=path, kind=kind, low=low, high=high, when=when)


def extract_space(raw: dict[str, Any], file: str) -> tuple[dict[str, Any], SearchSpace]:
    """Split a raw experiment dict into (fixed dict with first candidates, search space)."""
    fixed = copy.deepcopy(raw)
    dists: list[Distribution] = []

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, dict):
            return
        for key, value in list(node.items()):
            path = f"{prefix}.{key}" if prefix else str(key)
            if _is_distribution(value):
                dist = _parse_distribution(path, value, file)
                dists.append(dist)
                node[key] = dist.candidates()[0]
            elif isinstance(value, dict):
                walk(value, path)

    walk(fixed, "")
    for dist in dists:
        if dist.path.startswith(FIXED_PREFIXES):
            raise ConfigError(
                "cannot vary in a search (it fixes the prepared dataset, the search itself or "
                "the starting weights)",
                file=file, key=dist.path, fix="give one fixed value",
            )
        for cond in dist.when:
            if cond not in [d.path for d in dists[: dists.index(dist)]]:
                raise ConfigError(
                    f"`when` refers to '{cond}', which is not a searched key defined earlier",
                    file=file, key=dist.path,
                )
    return fixed, SearchSpace(dists=dists)


def set_path(d: dict[str, Any], path: str, value: Any) -> None:
    """Set ``d['a']['b'] = value`` for ``path='a.b'``, creating sections as needed."""
    node = d
    *parents, leaf = path.split(".")
    for i, p in enumerate(parents):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            where = ".".join(parents[: i + 1])
            raise ConfigError(f"cannot set '{path}': '{where}' is a value, not a section",
                              key=path)
    node[leaf] = value


def _refuse_repeated_keys(node: yaml.Node, visited: set[int] | None = None) -> None:
    """Raise on a key given twice in one mapping of ``node`` (the composed document): PyYAML
    keeps the last one silently, so a second ``train:`` section would drop the whole first."""
    visited = set() if visited is None else visited
    if id(node) in visited:  # an alias of a node already walked (or a recursive one)
        return
    visited.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_repeated_keys(item, visited)
    if not isinstance(node, yaml.MappingNode):
        return
    scalars = yaml.constructor.SafeConstructor()
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        _refuse_repeated_keys(value_node, visited)
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue  # `<<: *base` then a key overrides the base's on purpose
        # the parsed key: `true` / `True`, `1` / `0x1` are one key once loaded
        key = scalars.construct_object(key_node)  # type: ignore[no-untyped-call]
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key_node.value}' is given twice (lines {seen[key]} and "
                f"{line}); YAML would keep only the last: merge them into one",
                key_node.start_mark)
        seen[key] = line


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure (a key given twice included) into a one-line
    :class:`ConfigError`."""
    if not path.exists():
        raise ConfigError("file not found", file=path, fix="check the path")
    if not path.is_file():
        raise ConfigError("not a file", file=path, fix="give the experiment YAML file")
    try:
        text = path.read_text(encoding="utf-8")
        raw = load_yaml(text)
        document = yaml.compose(text, Loader=YamlLoader)
        if document is not None:
            _refuse_repeated_keys(document)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the file: {err}", file=path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}invalid YAML: {problem}", file=path) from None
    if not isinstance(raw, dict):
        raise ConfigError("the file must be a YAML mapping with a `data:` section", file=path)
    return raw


def resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the raw dict's relative paths absolute against ``base`` (``~`` expanded, URLs
    left alone), output folders left at their defaults included."""
    def absolute(value: Any) -> Any:
        if isinstance(value, str) and "://" not in value:
            p = Path(value).expanduser()
            return str(p if p.is_absolute() else (base / p).resolve())
        return value

    def folder(source: Any) -> Any:  # a FolderSource or its string shorthand
        if isinstance(source, dict) and "folder" in source:
            return {**source, "folder": absolute(source["folder"])}
        return absolute(source)

    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("manifest", "prepared"):
            if key in data:
                data[key] = absolute(data[key])
        for key in ("images", "labels"):
            if key in data:
                data[key] = folder(data[key])
        if isinstance(data.get("extra_bands"), list):
            data["extra_bands"] = [folder(v) for v in data["extra_bands"]]
        for key in ("label_vector", "label_raster"):
            site = data.get(key)
            if isinstance(site, dict) and "file" in site:
                data[key] = {**site, "file": absolute(site["file"])}
    for section, key in (("train", "output_dir"), ("train", "init_weights"),
                         ("search", "results_dir"), ("model", "encoder_weights")):
        sec = raw.get(section)
        if isinstance(sec, dict) and sec.get(key):
            sec[key] = absolute(sec[key])
    search = raw.get("search")
    if isinstance(search, dict) and isinstance(search.get("storage_path"), str):
        search["storage_path"] = absolute(search["storage_path"])
    # Output folders left at their (relative) defaults are resolved against the same base.
    for section, key, model in (("data", "prepared", DataConfig),
                                ("train", "output_dir", TrainConfig),
                                ("search", "results_dir", SearchConfig)):
        sec = raw.setdefault(section, {}) if section != "data" else raw.get(section)
        if isinstance(sec, dict) and key not in sec:
            sec[key] = absolute(str(model.model_fields[key].default))


def load_experiment(
    path: str | Path, *, overrides: Mapping[str, Any] | None = None, base_dir: Path | None = None
) -> tuple[ExperimentConfig, SearchSpace]:
    """Load an experiment YAML: (config with each distribution at its first candidate, space).

    Every candidate value of every distribution is validated too, so a bad choice fails here
    with its key path, not inside a trial. ``overrides`` set dotted keys before validation.
    """
    path = Path(path)
    file = str(path)
    raw = read_yaml(path)
    for key, value in (overrides or {}).items():
        try:
            set_path(raw, key, value)
        except ConfigError as err:
            raise ConfigError(err.message, file=f"{file} (--set)", key=key) from None
    resolve_paths(raw, base_dir or Path.cwd())
    fixed, space = extract_space(raw, file)
    try:
        config = validate_experiment(fixed, file)
    except ConfigError as err:
        raise _list_meant_as_choice(err, fixed) from None
    for dist in space:
        for value in dist.candidates():
            _validate_trial(fixed, {dist.path: value}, f"candidate {value!r}", file, dist.path)
    _check_worst_case(fixed, space, file)
    _check_points(config, fixed, space, file)
    return config, space


def _list_meant_as_choice(err: ConfigError, fixed: dict[str, Any]) -> ConfigError:
    """``err``, told how to search a list of plain values given where one value belongs
    (``filters: [2, 4]`` in a search space, which validation reads as one bad value)."""
    node: Any = fixed
    for part in (err.key or "").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if not (err.message.startswith("Input should be") and isinstance(node, list) and node
            and all(isinstance(v, str | int | float | bool) for v in node)):
        return err  # a key that takes a list (classes, target_size) failed for its own reason
    choice = "{choice: [" + ", ".join(str(v) for v in node) + "]}"
    search = f"to search over these values (raygym search) write {choice}"
    return ConfigError(err.message, file=err.file, key=err.key,
                       fix=f"{search}; for one value: {err.fix}" if err.fix else search)


def _validate_trial(fixed: dict[str, Any], values: Mapping[str, Any], what: str, file: str,
                    key: str, fix: str | None = None) -> None:
    """Validate ``fixed`` with dotted ``values`` set; an error names ``key`` (the searched key
    or point at fault) and starts with ``what``."""
    trial = copy.deepcopy(fixed)
    for path, value in values.items():
        set_path(trial, path, value)
    try:
        validate_experiment(trial, file)
    except ConfigError as err:
        raise ConfigError(f"{what}: {err.message}", file=file, key=key,
                          fix=fix or err.fix) from None


def _check_worst_case(fixed: dict[str, Any], space: SearchSpace, file: str) -> None:
    """Validate the shortest run with the longest warm-up the space can draw, under each
    schedule it can draw."""
    extremes = {d.path: WORST_CASE[d.path](d.candidates()) for d in space if d.path in WORST_CASE}
    if not extremes:
        return
    schedules = next((d.candidates() for d in space if d.path == "train.lr_schedule"), [None])
    for schedule in schedules:
        values = {**extremes, **({"train.lr_schedule": schedule} if schedule else {})}
        what = "the space's worst case (" + ", ".join(f"{k} {v}" for k, v in values.items()) + ")"
        _validate_trial(fixed, values, what, file, next(iter(extremes)))


def _check_points(config: ExperimentConfig, fixed: dict[str, Any], space: SearchSpace,
                  file: str) -> None:
    """Each of ``search.points_to_evaluate`` names searched keys only, with valid values."""
    keys = space.paths()
    for i, point in enumerate(config.search.points_to_evaluate):
        where = f"search.points_to_evaluate.{i}"
        for name in point:
            if name not in keys:
                hint = difflib.get_close_matches(name, keys, n=1)
                did = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigError(f"'{name}' is not a searched key{did}", file=file, key=where,
                                  fix="name keys of the space: " + (", ".join(keys) or "none"))
        _validate_trial(fixed, point, f"point {point}", file, where,
                        fix="give each key a value its distribution can draw")


def require_fixed(space: SearchSpace, command: str, file: str) -> None:
    """``prepare``/``train`` need one value per key: refuse a distribution, naming it."""
    if space:
        d = space.dists[0]
        raise ConfigError(
            f"is a search distribution ({d.describe()}); `raygym {command}` needs a fixed value",
            file=file, key=d.path, fix="give one value, or run `raygym search` on this file",
        )


def apply_params(config: ExperimentConfig, params: Mapping[str, Any]) -> ExperimentConfig:
    """A copy of ``config`` with dotted ``params`` set (one trial's sampled values)."""
    raw = config.to_yaml_dict()
    for key, value in params.items():
        set_path(raw, key, value)
    return validate_experiment(raw, "<trial>")

