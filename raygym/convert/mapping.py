"""The conversion itself: a parsed Gym config -> a raygym experiment dict, with where each
raygym key came from, the Gym keys not carried over, and the notes and comments for the YAML.

A value raygym rejects raises :class:`~raygym.errors.ConfigError` naming both keys, as
``NCLASSES (raygym data.classes)``; schema errors are re-issued under the Gym key that caused
them.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

from raygym.config import ExperimentConfig, validate_experiment
from raygym.convert.gym_keys import (
    DIRECT_KEYS,
    GYM_LOSSES,
    GYM_MODELS,
    HANDLED_KEYS,
    KNOWN_GYM_KEYS,
    NOT_CARRIED,
    SIMPLE_NET_IGNORED,
    UNET_KEYS,
)
from raygym.errors import ConfigError
from raygym.search.space_config import set_path

_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
# Gym switches that raygym lacks: set to 0 / false they did nothing, so nothing is lost
_OFF_AT_ZERO = ("FILTER_VALUE", "DO_CRF", "OTSU_THRESHOLD")


def _safe_name(text: str, default: str) -> str:
    """``text`` as a file/experiment name (runs of other characters -> ``_``), else ``default``."""
    name = _NAME_RE.sub("_", text).strip("_.-")
    return name if name and name[0].isalnum() else default


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_whole(v: Any) -> bool:
    """An int, or a float with no fractional part (JSON writers turn 4 into 4.0); not NaN/inf."""
    return _is_number(v) and math.isfinite(v) and v == int(v)


class GymConverter:
    """Holds one conversion's state: the raygym dict, where each key came from, the notes.

    Call :meth:`convert` (fills ``raw``, ``skipped``, ``notes``, ``comments``), then
    :meth:`validate`.
    """

    def __init__(self, gym: dict[str, Any], file: Path, images: Path | None,
                 labels: Path | None) -> None:
        self.gym = gym
        self.file = file
        self.images = images
        self.labels = labels
        self.raw: dict[str, Any] = {}
        self.origin: dict[str, str] = {}  # raygym key path -> Gym key
        self.skipped: dict[str, str] = {}  # Gym key -> reason it is not carried over
        self.notes: list[str] = []  # header notes
        self.comments: dict[str, list[str]] = {}  # raygym key path -> comment lines above it

    # -- errors ------------------------------------------------------------------------------
    def fail(self, gym_key: str, raygym_key: str, message: str, fix: str | None = None
             ) -> ConfigError:
        return ConfigError(message, file=self.file, key=f"{gym_key} (raygym {raygym_key})",
                           fix=fix)

    def put(self, path: str, value: Any, gym_key: str | None = None) -> None:
        set_path(self.raw, path, value)
        if gym_key is not None:
            self.origin[path] = gym_key

    def comment(self, path: str, *lines: str) -> None:
        self.comments.setdefault(path, []).extend(lines)

    # -- value kinds ---------------------------------------------------------------------------
    def scalar(self, gym_key: str, path: str, kind: str) -> Any:
        value = self.gym[gym_key]
        if kind == "int":
            if isinstance(value, float) and _is_whole(value):
                return int(value)  # Gym configs often say "SUSTAIN_EPOCHS": 0.0
            if isinstance(value, bool):
                raise self.fail(gym_key, path, f"expected a whole number (got {value!r})")
        elif kind == "float" and isinstance(value, bool):
            raise self.fail(gym_key, path, f"expected a number (got {value!r})")
        elif kind == "lower" and isinstance(value, str):
            return value.strip().lower()
        return value

    # -- the mapping ---------------------------------------------------------------------------
    def convert(self) -> dict[str, Any]:
        gym = self.gym
        stem = _safe_name(self.file.stem, "experiment")
        self.put("name", stem)
        # data: inputs first, so the YAML reads top-down
        self.put("data.images", str(self.images) if self.images else "images/")
        self.put("data.labels", str(self.labels) if self.labels else "labels/")
        if self.images is None or self.labels is None:
            self.comment("data.images", "images/ and labels/ are placeholders: point them at "
                         "your folders (or pass --images/--labels to convert-config)")
        self._bands()
        self._classes()
        self._remap()
        if "TARGET_SIZE" in gym:
            self._target_size()
        if "VALIDATION_SPLIT" in gym:
            self.put("data.split.val", self.scalar("VALIDATION_SPLIT", "data.split.val", "float"),
                     "VALIDATION_SPLIT")
        self.put("data.split.test", 0.0)
        self.comment("data.split.test", "0.0 keeps Gym's semantics (no held-out test split); "
                     "a test split such as 0.1 is recommended,", "so that `raygym evaluate "
                     "--split test` scores images no model selection has seen")
        for key in ("AUG_COPIES", "AUG_ROT", "AUG_ZOOM", "AUG_WIDTHSHIFT", "AUG_HEIGHTSHIFT",
                    "AUG_HFLIP", "AUG_VFLIP"):
            if key in gym:
                path, kind = DIRECT_KEYS[key]
                self.put(path, self.scalar(key, path, kind), key)
        root = gym.get("ROOT_STRING")
        prepared_name = _safe_name(root, stem) if isinstance(root, str) else stem
        self.put("data.prepared", f"datasets/{prepared_name}",
                 "ROOT_STRING" if isinstance(root, str) else None)
        self._model()
        self._loss()
        for key, (path, kind) in DIRECT_KEYS.items():
            if path.startswith("train.") and key in gym:
                self.put(path, self.scalar(key, path, kind), key)
        self._leftovers()
        return self.raw

    def _bands(self) -> None:
        if "N_DATA_BANDS" not in self.gym:
            return
        n = self.gym["N_DATA_BANDS"]
        if not _is_whole(n) or n < 1:
            raise self.fail("N_DATA_BANDS", "data.extra_bands",
                            f"expected a whole number of bands >= 1 (got {n!r})")
        n = int(n)
        if n > 3:
            bands = [f"band_{i}/" for i in range(4, n + 1)]
            self.put("data.extra_bands", bands, "N_DATA_BANDS")
            self.comment("data.extra_bands", f"Gym's N_DATA_BANDS: {n} = 3 bands from images/ "
                         f"plus {n - 3} single-band folder(s);",
                         "these are placeholders: point each at its folder, in Gym's band order "
                         "(files are paired by name)")
        else:
            self.notes.append(f"N_DATA_BANDS: {n} is not needed: raygym reads the band count "
                              "from the images")

    def _classes(self) -> None:
        gym = self.gym
        names_key = next((k for k in ("CLASSES", "CLASS_NAMES") if k in gym), None)
        names: list[str] | None = None
        if names_key is not None:
            value = gym[names_key]
            if isinstance(value, dict):
                try:
                    items = sorted((int(k), v) for k, v in value.items())
                except ValueError:
                    raise self.fail(names_key, "data.classes", "a mapping of class names needs "
                                    "integer keys such as {\"0\": \"water\"}") from None
                if [i for i, _ in items] != list(range(len(items))):
                    raise self.fail(names_key, "data.classes",
                                    f"class ids must be 0..{len(items) - 1} without gaps "
                                    f"(got {[i for i, _ in items]})")
                value = [v for _, v in items]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise self.fail(names_key, "data.classes",
                                f"expected a list of class names (got {value!r})")
            names = value
        if "NCLASSES" not in gym:
            if names is None:
                raise ConfigError("required key is missing (the number of classes)",
                                  file=self.file, key="NCLASSES (raygym data.classes)")
            self.put("data.classes", names, names_key)
            return
        n = gym["NCLASSES"]
        if not _is_whole(n) or n < 1:
            raise self.fail("NCLASSES", "data.classes", f"expected a whole number >= 1 (got {n!r})")
        k = int(n)
        if k == 1:
            k = 2
            self.notes.append("NCLASSES: 1 (Gym's binary mode) becomes two classes, "
                              "background and foreground")
        if names is not None:
            if len(names) != k:
                raise self.fail(f"{names_key} / NCLASSES", "data.classes",
                                f"{len(names)} class names for {k} classes")
            self.put("data.classes", names, "NCLASSES")
            return
        self.put("data.classes", [f"class_{i}" for i in range(k)], "NCLASSES")
        self.comment("data.classes", "Gym configs have no class names: rename these (they label "
                     "metrics, reports and legends)")

    def _remap(self) -> None:
        value = self.gym.get("REMAP_CLASSES")
        if value is None or value == {}:
            return
        if not isinstance(value, dict):
            raise self.fail("REMAP_CLASSES", "data.remap",
                            f"expected a mapping {{\"old\": new}} (got {value!r})")
        remap: dict[int, int] = {}
        for old, new in value.items():
            try:
                old_i = int(str(old).strip())
            except ValueError:
                raise self.fail("REMAP_CLASSES", "data.remap",
                                f"label value {old!r} is not an integer") from None
            if not _is_whole(new):
                raise self.fail("REMAP_CLASSES", "data.remap",
                                f"{old!r} maps to {new!r}, which is not an integer class")
            remap[old_i] = int(new)
        self.put("data.remap", remap, "REMAP_CLASSES")

    def _target_size(self) -> None:
        value = self.gym["TARGET_SIZE"]
        if _is_whole(value):
            value = [int(value), int(value)]
        if (not isinstance(value, list) or len(value) != 2
                or not all(_is_whole(v) for v in value)):
            raise self.fail("TARGET_SIZE", "data.target_size",
                            f"expected [height, width] in pixels (got {value!r})")
        self.put("data.target_size", [int(v) for v in value], "TARGET_SIZE")

    def _model(self) -> None:
        gym = self.gym
        arch = "gym_resunet"
        if "MODEL" in gym:
            name = gym["MODEL"]
            if not isinstance(name, str):
                raise self.fail("MODEL", "model.arch", f"expected a model name (got {name!r})")
            key = name.strip().lower()
            arch = GYM_MODELS.get(key, key)  # a raygym name passes through; validation checks
            self.put("model.arch", arch, "MODEL")
        else:
            self.notes.append("MODEL is missing: model.arch is raygym's default, gym_resunet")
            self.put("model.arch", arch)
        if arch == "segformer":
            self.comment("model.arch", "smp SegFormer (model.encoder, default resnet18; no "
                         "pretrained weights unless model.encoder_weights);",
                         "Gym's segformer was HuggingFace mit-b0 with ImageNet weights")
        for key in UNET_KEYS:
            if key not in gym:
                continue
            path, kind = DIRECT_KEYS[key]
            if arch.startswith("simple_") and key in SIMPLE_NET_IGNORED:
                self.skipped[key] = SIMPLE_NET_IGNORED[key]
            elif arch.startswith(("gym_", "simple_")):
                self.put(path, self.scalar(key, path, kind), key)
            else:
                self.skipped[key] = f"not used by model '{arch}'"
        if arch.startswith("simple_"):
            self.put("model.kernel", 2)

    def _loss(self) -> None:
        gym = self.gym
        if "LOSS" in gym:
            name = gym["LOSS"]
            key = name.strip().lower() if isinstance(name, str) else name
            mapped = GYM_LOSSES.get(key) if isinstance(key, str) else None
            if mapped is None and isinstance(key, str):
                from raygym.train.loss_spec import LOSS_NAMES

                mapped = key if key in LOSS_NAMES else None
            if mapped is None:
                self.skipped["LOSS"] = (f"loss {name!r} has no raygym equivalent, so loss.name "
                                        f"is dice; valid: {', '.join(GYM_LOSSES)}")
                self.put("loss.name", "dice")
            else:
                self.put("loss.name", mapped, "LOSS")
        weights = gym.get("LOSS_WEIGHTS")
        if weights is True:
            self.put("loss.class_weights", "auto", "LOSS_WEIGHTS")
            self.comment("loss.class_weights", "auto: Gym's 1 - freq / sum(freq) from the "
                         "prepared train split")
        elif isinstance(weights, list):
            if not all(_is_number(w) for w in weights):
                raise self.fail("LOSS_WEIGHTS", "loss.class_weights",
                                f"expected true, false or a list of numbers (got {weights!r})")
            k = len(self.raw["data"]["classes"])
            if len(weights) != k:
                raise self.fail("LOSS_WEIGHTS", "loss.class_weights",
                                f"{len(weights)} weights for {k} classes")
            self.put("loss.class_weights", [float(w) for w in weights], "LOSS_WEIGHTS")
        elif weights not in (None, False):
            raise self.fail("LOSS_WEIGHTS", "loss.class_weights",
                            f"expected true, false or a list of numbers (got {weights!r})")

    def _leftovers(self) -> None:
        for key in self.gym:
            if key in self.skipped or key in DIRECT_KEYS or key in HANDLED_KEYS:
                continue
            if key in NOT_CARRIED:
                off = key in _OFF_AT_ZERO and not self.gym[key]  # 0 / false: nothing lost
                self.skipped[key] = (f"{NOT_CARRIED[key]}; off in this file, so nothing is lost" if off
                                     else NOT_CARRIED[key])
            else:
                hint = difflib.get_close_matches(key, KNOWN_GYM_KEYS, n=1)
                did = f" (did you mean {hint[0]}?)" if hint else ""
                self.skipped[key] = f"not a Segmentation Gym key{did}"
        # keep the Gym file's order
        order = {k: i for i, k in enumerate(self.gym)}
        self.skipped = dict(sorted(self.skipped.items(), key=lambda kv: order.get(kv[0], 0)))

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> ExperimentConfig:
        """The converted dict parsed by the experiment schema; errors name the Gym key."""
        try:
            return validate_experiment(self.raw, str(self.file))
        except ConfigError as err:
            raise self._blame(err) from None

    def _blame(self, err: ConfigError) -> ConfigError:
        """Re-issue a schema error under the Gym key(s) that produced the bad raygym key."""
        key = err.key or ""
        message = err.message
        hits: list[str] = []
        if key in self.origin:
            hits = [key]
        if not hits:  # e.g. a model-level check whose message names the keys
            hits = [p for p in self.origin if re.search(rf"(?<![\w.]){re.escape(p)}\b", message)]
        if not hits:
            hits = [p for p in self.origin if p.startswith(f"{key}.")
                    and re.search(rf"\b{re.escape(p.rsplit('.', 1)[-1])}\b", message)]
        if not hits:
            hits = [p for p in self.origin if p.startswith(f"{key}.")]
        if not hits:
            return ConfigError(message, file=self.file, key=f"raygym {key}", fix=err.fix)
        blamed = ", ".join(f"{self.origin[p]} (raygym {p})" for p in hits)
        return ConfigError(message, file=self.file, key=blamed, fix=err.fix)
