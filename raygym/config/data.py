"""The ``data`` section: where the images and labels are, which classes, how they are split,
resized and augmented."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raygym.config.base import IGNORE_INDEX, StrictModel
from raygym.config_errors import KeyedError


class FolderSource(StrictModel):
    """One folder of files; ``key`` is a regex whose groups, joined, give the pairing key.

    Without ``key`` the file stem is the key. Example for Sentinel-2 NIR files named
    ``<stem>_ir-0.jpg`` beside ``<stem>-0.jpg``: ``key: '^(.*)_ir(-\\d+)$'``.
    """

    folder: Path
    key: str | None = None

    @field_validator("key")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            import re

            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"not a valid regular expression: {err}") from None
        return value


class SplitConfig(StrictModel):
    """Fractions of *source images* (not augmented copies) per split; the rest is train.

    ``group`` keeps every scene of one group (tile, site, date) in one split, so adjacent crops
    of one capture never sit in train and test: a regex searched in each scene key (its capture
    groups, joined with ``/``, give the group id; with none, the whole match), or
    ``column:NAME`` for a column of ``data.manifest``. See :mod:`raygym.data.split`.
    """

    val: float = Field(0.2, ge=0.0, lt=1.0)
    test: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 42
    # Left out of dumps when unset, so the fingerprint (hence the reuse check) of every dataset
    # prepared before `group` existed stays what it was.
    group: str | None = Field(None, min_length=1, exclude_if=lambda v: v is None)

    @field_validator("group")
    @classmethod
    def _group_rule(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("column:"):
            if not value[len("column:"):].strip():
                raise ValueError("`column:` needs a manifest column name, e.g. `column:site`")
            return value
        import re

        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a valid regular expression: {err} (fix: e.g. "
                             f"'^(.*)_\\d+_\\d+$' for <scene>_<row>_<col> crops, or "
                             f"`column:NAME` for a manifest column)") from None
        return value

    @property
    def group_column(self) -> str | None:
        """The manifest column named by ``group: column:NAME``, else None."""
        if self.group and self.group.startswith("column:"):
            return self.group[len("column:"):].strip()
        return None

    @model_validator(mode="after")
    def _leaves_train(self) -> SplitConfig:
        if self.val + self.test >= 1.0:
            raise ValueError("val + test must be < 1 so that some images remain for training")
        return self


class AugmentConfig(StrictModel):
    """Offline augmentation of the train split (Gym's AUG_* keys) plus optional photometrics."""

    copies: int = Field(0, ge=0, le=100)
    rotation: float = Field(0.0, ge=0.0, le=180.0, description="degrees, +/-")
    zoom: float = Field(0.0, ge=0.0, lt=1.0, description="fraction, scale 1 +/- zoom")
    width_shift: float = Field(0.0, ge=0.0, lt=1.0)
    height_shift: float = Field(0.0, ge=0.0, lt=1.0)
    hflip: bool = Field(False, description="true: flip left-right with probability 0.5")
    vflip: bool = Field(False, description="true: flip up-down with probability 0.5")
    brightness_contrast: float = Field(0.0, ge=0.0, le=1.0)
    fog: float = Field(0.0, ge=0.0, le=1.0, description="probability")
    sun_glare: float = Field(0.0, ge=0.0, le=1.0, description="probability")
    online: bool = Field(False, description="also augment on the fly each epoch during training")

    def augmenter_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"copies", "online"})


class VectorLabels(StrictModel):
    """Labels as polygons (a GeoPackage, shapefile or GeoJSON layer) burnt onto each scene's
    pixel grid at prepare (:mod:`raygym.data.vector_labels`); scenes must be georeferenced."""

    file: Path
    column: str = Field(description="the attribute holding each feature's class: a class name "
                        "of data.classes, or a whole number mapped by data.remap")
    layer: str | None = Field(None, description="the layer's name (default: the first)")
    background: str | None = Field(None, description="the class of pixels no polygon covers "
                                   "(null: they are ignored by losses and metrics)")


class RasterLabels(StrictModel):
    """Labels from one classified raster covering the site (a land-cover map, an earlier
    classification), read within each scene's bounds onto its pixel grid at prepare
    (:mod:`raygym.data.raster_labels`); scenes must be georeferenced."""

    file: Path
    band: int = Field(1, ge=1, description="the band of class numbers, from 1")
    resampling: Literal["nearest", "mode"] = Field(
        "nearest", description="nearest: the class under each scene pixel's centre; mode: the "
        "most common class under the scene pixel (for a map finer than the scenes)")
    background: str | None = Field(None, description="the class of pixels the raster does "
                                   "not cover or holds nodata at (null: they are ignored by "
                                   "losses and metrics)")


class ChipConfig(StrictModel):
    """Cutting each scene into ``target_size`` chips at native resolution (large orthomosaics,
    satellite tiles) instead of shrinking it whole into one ``target_size`` tile."""

    overlap: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of a chip shared with "
                           "its neighbour (0: chips side by side; the last row and column of "
                           "chips end at the scene's edge)")
    min_labelled: float = Field(0.05, ge=0.0, le=1.0, description="a chip with a smaller "
                                "share of labelled pixels (not nodata, not ignored) is dropped")
    blocks: int | None = Field(None, ge=1, description="split chips, not scenes: blocks of "
                               "blocks x blocks chips go whole to train / val / test by "
                               "data.split's fractions (seeded), for one or a few large scenes; "
                               "null: scenes are split, then cut")


class DataConfig(StrictModel):
    """Where the raw data is, how to pair and decode it, and where the prepared dataset goes."""

    images: FolderSource | None = None
    image_bands: list[int] | None = Field(
        None, min_length=1, description="the image files' bands the model reads, numbered "
        "from 1 as GDAL and rasterio number them, in the order it reads them (e.g. [4, 3, 2, 8] "
        "of a Sentinel-2 stack); extra_bands follow; null: every band")
    extra_bands: list[FolderSource] = Field(default_factory=list)
    labels: FolderSource | None = None
    label_vector: VectorLabels | None = Field(None, description="labels drawn as polygons in "
                                              "a GIS, instead of label rasters (labels)")
    label_raster: RasterLabels | None = Field(None, description="one classified raster "
                                              "covering every scene, instead of a label file "
                                              "per image (labels)")
    manifest: Path | None = None
    classes: list[str] = Field(min_length=2)
    remap: dict[int, int] | None = None
    unknown_labels: Literal["error", "ignore", "clip"] = "error"
    palette: dict[str, int] | None = None
    target_size: tuple[int, int] = (256, 256)
    upscale: bool = False
    chips: ChipConfig | None = Field(None, description="cut scenes into target_size chips at "
                                     "native resolution (null: each scene shrunk into one)")
    split: SplitConfig = Field(default_factory=SplitConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    prepared: Path = Path("datasets/default")
    seed: int = 0

    @field_validator("images", "labels", mode="before")
    @classmethod
    def _folder_shorthand(cls, value: Any) -> Any:
        return {"folder": value} if isinstance(value, str | Path) else value

    @field_validator("image_bands")
    @classmethod
    def _band_numbers(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if min(value) < 1:
                raise ValueError(f"band {min(value)}: bands are numbered from 1 (GDAL's "
                                 "numbering), e.g. [4, 3, 2]")
            twice = sorted({b for b in value if value.count(b) > 1})
            if twice:
                raise ValueError(f"band {twice[0]} is named twice; each band once")
        return value

    @field_validator("chips", mode="before")
    @classmethod
    def _chips_shorthand(cls, value: Any) -> Any:
        """``chips: true`` is ``chips: {}`` (the defaults), ``false`` is none."""
        if isinstance(value, bool):
            return {} if value else None
        return value

    @field_validator("extra_bands", mode="before")
    @classmethod
    def _bands_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"folder": v} if isinstance(v, str | Path) else v for v in value]
        return value

    @field_validator("target_size", mode="before")
    @classmethod
    def _square_shorthand(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("target_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 16:
            raise ValueError(f"must be at least 16 x 16 (got {list(value)})")
        return value

    @field_validator("palette")
    @classmethod
    def _palette_colours(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None:
            for colour in value:
                parse_colour(colour)
        return value

    @property
    def site_labels(self) -> tuple[str, VectorLabels | RasterLabels] | None:
        """``(key, spec)`` of the one file that labels every scene on its own grid
        (``label_vector`` or ``label_raster``); None with a label file per image."""
        if self.label_vector is not None:
            return "data.label_vector", self.label_vector
        if self.label_raster is not None:
            return "data.label_raster", self.label_raster
        return None

    @model_validator(mode="after")
    def _inputs_and_classes(self) -> DataConfig:
        if self.label_vector is not None and self.label_raster is not None:
            raise KeyedError("data.label_raster", "and data.label_vector both label every "
                             "scene (fix: keep one)")
        if (site := self.site_labels) is not None:
            key, spec = site
            what = "polygons are" if key == "data.label_vector" else "the raster is"
            if self.labels is not None or self.manifest is not None or self.palette:
                raise KeyedError(key, f"{what} the labels: give no labels folder, manifest "
                                 "or palette beside them (fix: drop one)")
            if self.images is None:
                raise ValueError(f"{key.split('.')[1]} labels the `images:` folder: give it")
            background = spec.background
            if background is not None and background not in self.classes:
                raise KeyedError(f"{key}.background", f"'{background}' is not one of "
                                 f"data.classes {self.classes}")
        elif self.manifest is None and (self.images is None or self.labels is None):
            raise ValueError(
                "give either `manifest: pairs.csv` or both `images:` and `labels:` folders"
            )
        if self.manifest is not None and (self.images is not None or self.labels is not None):
            raise ValueError("give either `manifest` or `images`/`labels` folders, not both")
        if self.chips is not None and self.chips.blocks is not None:
            if self.chips.overlap > 0:
                raise KeyedError("data.chips.overlap", "chips that overlap would put the same "
                                 "pixels in two splits at a block's edge (fix: overlap 0 with "
                                 "blocks)")
            if self.split.group is not None:
                raise KeyedError("data.split.group", "chips.blocks splits by blocks of chips, "
                                 "group by groups of scenes: give one (fix: drop one)")
        if self.chips is not None and self.upscale:
            raise KeyedError("data.upscale", "chips are cut at native resolution, so nothing "
                             "is enlarged (fix: drop upscale, or data.chips)")
        if self.split.group_column is not None and self.manifest is None:
            raise KeyedError("data.split.group", (
                f"'{self.split.group}' takes each scene's group from a manifest column, but the "
                "scenes are paired by file name (fix: pair with data.manifest, or use a regex "
                "over the scene key, e.g. '^(.*)_\\d+_\\d+$' for <scene>_<row>_<col> crops)"))
        k = len(self.classes)
        if self.remap:
            bad = {old: new for old, new in self.remap.items()
                   if not (0 <= new < k or new == IGNORE_INDEX)}
            if bad:
                old, new = next(iter(bad.items()))
                raise ValueError(
                    f"remap {old}: {new} maps to class {new} but only {k} classes are named "
                    f"(0..{k - 1}, or {IGNORE_INDEX} = ignore); fix the remap or add class names"
                )
        if self.palette:
            bad_p = {c: v for c, v in self.palette.items() if not (0 <= v < k or v == IGNORE_INDEX)}
            if bad_p:
                colour, v = next(iter(bad_p.items()))
                raise ValueError(f"palette {colour}: {v} is not a class id 0..{k - 1} (or 255)")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def parse_colour(text: str) -> tuple[int, int, int]:
    """``'#00ff7f'`` or ``'0,255,127'`` -> (0, 255, 127)."""
    s = text.strip()
    try:
        if s.startswith("#") and len(s) == 7:
            return int(s[1:3], 16), int(s[3:5], 16), int(s[5:7], 16)
        parts = [int(p) for p in s.split(",")]
        if len(parts) == 3 and all(0 <= p <= 255 for p in parts):
            return parts[0], parts[1], parts[2]
    except ValueError:
        pass
    raise ValueError(f"colour {text!r} is not '#rrggbb' or 'r,g,b'")
