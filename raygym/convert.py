"""``raygym convert-config``: a Segmentation Gym JSON config -> a raygym experiment YAML.

Every Gym key either maps to one raygym key (validated with the experiment schema before
anything is written) or is reported as *not carried over*, with the reason, in the returned
list and in the YAML's header comment. A Gym value that raygym rejects fails with a
:class:`~raygym.errors.ConfigError` naming both the Gym key and the raygym key.

Choices where Gym and raygym differ (each is also written as a comment into the YAML):

* Gym has no test split: ``data.split.test`` is 0.0 (Gym's semantics), with a comment
  recommending one.
* Gym has no class names: ``class_0`` .. ``class_{K-1}`` unless the JSON has ``CLASSES`` or
  ``CLASS_NAMES`` (a list, or a ``{"0": "water"}`` mapping). ``NCLASSES: 1`` (Gym's binary
  mode) becomes two classes.
* ``N_DATA_BANDS`` is informational (raygym reads the band count from the images); above 3,
  Gym read each extra band from its own folder, so placeholder ``extra_bands`` folders
  ``band_4/`` .. are written.
* Gym's ``simple_unet`` / ``simple_resunet`` always used 2x2 kernels and no strides, so
  ``KERNEL`` / ``STRIDE`` are not carried over for them (``model.kernel: 2``); ``segformer``
  uses none of Gym's UNet keys.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from raygym.errors import ConfigError, RaygymError

__all__ = ["GYM_LOSSES", "GYM_MODELS", "convert_gym_config", "gym_to_raw"]

GYM_MODELS: dict[str, str] = {
    "unet": "gym_unet",
    "resunet": "gym_resunet",
    "simple_unet": "simple_unet",
    "simple_resunet": "simple_resunet",
    "segformer": "segformer",
}
"""Gym ``MODEL`` value -> raygym ``model.arch``."""

GYM_LOSSES: dict[str, str] = {"dice": "dice", "cat": "cce", "cce": "cce", "kld": "kld"}
"""Gym ``LOSS`` value -> raygym ``loss.name``."""

# Gym key -> (raygym key path, value kind) for the keys that carry over one to one.
_DIRECT: dict[str, tuple[str, str]] = {
    "KERNEL": ("model.kernel", "int"),
    "STRIDE": ("model.stride", "int"),
    "FILTERS": ("model.filters", "int"),
    "DROPOUT": ("model.dropout", "float"),
    "DROPOUT_CHANGE_PER_LAYER": ("model.dropout_change_per_layer", "float"),
    "DROPOUT_TYPE": ("model.dropout_type", "lower"),
    "USE_DROPOUT_ON_UPSAMPLING": ("model.dropout_on_upsampling", "bool"),
    "BATCH_SIZE": ("train.batch_size", "int"),
    "PATIENCE": ("train.patience", "int"),
    "MAX_EPOCHS": ("train.max_epochs", "int"),
    "RAMPUP_EPOCHS": ("train.rampup_epochs", "int"),
    "SUSTAIN_EPOCHS": ("train.sustain_epochs", "int"),
    "EXP_DECAY": ("train.exp_decay", "float"),
    "START_LR": ("train.start_lr", "float"),
    "MIN_LR": ("train.min_lr", "float"),
    "MAX_LR": ("train.max_lr", "float"),
    "VALIDATION_SPLIT": ("data.split.val", "float"),
    "AUG_ROT": ("data.augment.rotation", "float"),
    "AUG_ZOOM": ("data.augment.zoom", "float"),
    "AUG_WIDTHSHIFT": ("data.augment.width_shift", "float"),
    "AUG_HEIGHTSHIFT": ("data.augment.height_shift", "float"),
    "AUG_HFLIP": ("data.augment.hflip", "bool"),
    "AUG_VFLIP": ("data.augment.vflip", "bool"),
    "AUG_COPIES": ("data.augment.copies", "int"),
}
# Keys Gym's UNet-family builders read; which of them a given raygym model uses:
_UNET_KEYS = ("KERNEL", "STRIDE", "FILTERS", "DROPOUT", "DROPOUT_CHANGE_PER_LAYER",
              "DROPOUT_TYPE", "USE_DROPOUT_ON_UPSAMPLING")
_SIMPLE_IGNORED = {
    "KERNEL": "Gym's simple_unet/simple_resunet always used 2x2 kernels (model.kernel: 2)",
    "STRIDE": "Gym's simple_unet/simple_resunet have no strided convolutions (max pooling)",
}
# Keys that are handled but map to no single raygym key.
_HANDLED = frozenset({"TARGET_SIZE", "NCLASSES", "N_DATA_BANDS", "MODEL", "LOSS", "LOSS_WEIGHTS",
                      "REMAP_CLASSES", "ROOT_STRING", "CLASSES", "CLASS_NAMES"})
# Known Gym keys raygym does not carry over, and why.
_NOT_CARRIED: dict[str, str] = {
    "FILTER_VALUE": "label dilation radius; not supported by raygym",
    "HOT_START": "starting from Keras weights is not supported (yet)",
    "TESTTIMEAUG": "test-time augmentation is a prediction option: use `raygym predict --tta`",
    "SET_GPU": "GPU choice: set resources.gpus_per_worker (devices via CUDA_VISIBLE_DEVICES)",
    "SET_PCI_BUS_ID": "GPU ordering is left to Ray and CUDA",
    "DO_CRF": "CRF post-processing is not supported",
    "DO_TRAIN": "raygym trains when you run `raygym train` (or `raygym search`)",
    "DOPLOT": "plots come from `raygym evaluate` and `raygym report`",
    "PLOT": "plots come from `raygym evaluate` and `raygym report`",
    "USEMASK": "Gym's label-file naming switch; raygym pairs files by name (data.labels.key)",
    "AUG_LOOPS": "memory chunking in Gym's make_dataset; raygym streams shards with Ray Data",
    "MODE": "Gym's all/aug/noaug switch; raygym trains on the augmented train split "
            "(data.augment.copies: 0 for none)",
    "WRITE_MODELMETADATA": "prediction metadata; `raygym predict` writes its own",
    "OTSU_THRESHOLD": "Otsu thresholding of predictions is not supported",
    "INITIAL_EPOCH": "resume a run with `raygym train --resume RUN_DIR`",
    "CLEAR_MEMORY": "TensorFlow memory setting; not needed",
    "LOAD_DATA_WITH_CPU": "TensorFlow data placement setting; not needed",
}
_KNOWN_GYM_KEYS = sorted({*_DIRECT, *_HANDLED, *_NOT_CARRIED})
_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")


# ------------------------------------------------------------------------------------ helpers
def _set(d: dict[str, Any], path: str, value: Any) -> None:
    node = d
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def _get(d: Any, path: str) -> Any:
    for p in path.split("."):
        d = d[p]
    return d


def _safe_name(text: str, default: str) -> str:
    name = _NAME_RE.sub("_", text).strip("_.-")
    return name if name and name[0].isalnum() else default


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_whole(v: Any) -> bool:
    """An int, or a float with no fractional part (JSON writers turn 4 into 4.0); not NaN/inf."""
    return _is_number(v) and math.isfinite(v) and v == int(v)


class _Converter:
    """Holds one conversion's state: the raygym dict, where each key came from, the notes."""

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
        _set(self.raw, path, value)
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
                path, kind = _DIRECT[key]
                self.put(path, self.scalar(key, path, kind), key)
        root = gym.get("ROOT_STRING")
        prepared_name = _safe_name(root, stem) if isinstance(root, str) else stem
        self.put("data.prepared", f"datasets/{prepared_name}",
                 "ROOT_STRING" if isinstance(root, str) else None)
        self._model()
        self._loss()
        for key, (path, kind) in _DIRECT.items():
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
        for key in _UNET_KEYS:
            if key not in gym:
                continue
            path, kind = _DIRECT[key]
            if arch.startswith("simple_") and key in _SIMPLE_IGNORED:
                self.skipped[key] = _SIMPLE_IGNORED[key]
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
                from raygym.train.losses import LOSS_REGISTRY

                mapped = key if key in LOSS_REGISTRY else None
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
            if key in self.skipped or key in _DIRECT or key in _HANDLED:
                continue
            if key in _NOT_CARRIED:
                self.skipped[key] = _NOT_CARRIED[key]
            else:
                hint = difflib.get_close_matches(key, _KNOWN_GYM_KEYS, n=1)
                did = f" (did you mean {hint[0]}?)" if hint else ""
                self.skipped[key] = f"not a Segmentation Gym key{did}"
        # keep the Gym file's order
        order = {k: i for i, k in enumerate(self.gym)}
        self.skipped = dict(sorted(self.skipped.items(), key=lambda kv: order.get(kv[0], 0)))

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> Any:
        from raygym.config import validate_experiment

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


# --------------------------------------------------------------------------------- YAML out
class _Dumper(yaml.SafeDumper):
    """Block style, except lists of scalars, which read better inline (``[768, 768]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(v, dict | list) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _normalised(raw: dict[str, Any], validated: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``raw``'s keys in ``raw``'s order with the schema's parsed values (types normalised);
    folder paths and the remap keep the values written (placeholders, int keys)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path != "data.remap":
            out[key] = _normalised(value, validated, f"{path}.")
        elif path in ("data.images", "data.labels", "data.extra_bands", "data.remap"):
            out[key] = value
        else:
            out[key] = _plain(_get(validated, path))
    return out


def _with_comments(text: str, comments: dict[str, list[str]]) -> str:
    """Insert ``# ...`` lines above the YAML lines of the dotted key paths in ``comments``."""
    out: list[str] = []
    stack: list[tuple[int, str]] = []
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


def _render(conv: _Converter, doc: dict[str, Any], source: Path, out: Path) -> str:
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


def _read_gym_json(path: Path) -> dict[str, Any]:
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


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------ public
def gym_to_raw(gym: dict[str, Any], *, file: Path = Path("<gym config>"),
               images: Path | None = None, labels: Path | None = None
               ) -> tuple[dict[str, Any], list[str]]:
    """Map a parsed Gym config to a validated raygym experiment dict (YAML-ready, in section
    order) and the Gym keys not carried over. Raises :class:`ConfigError` naming the Gym key
    and the raygym key for any value raygym rejects."""
    conv, doc = _convert(gym, file, images, labels)
    return doc, list(conv.skipped)


def _convert(gym: dict[str, Any], file: Path, images: Path | None, labels: Path | None
             ) -> tuple[_Converter, dict[str, Any]]:
    conv = _Converter(gym, file, images, labels)
    conv.convert()
    validated = conv.validate().model_dump(mode="python")
    return conv, _normalised(conv.raw, validated)


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
    _write_atomic(out, _render(conv, doc, gym_json, out))
    return out, list(conv.skipped)

