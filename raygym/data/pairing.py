"""Pairing images, extra bands and labels by file name or by a CSV manifest.

Never by sorted position alone (Gym's fault): a missing file would silently shift every pair.

Manifest header rule: ``image``, then one column per extra band, then ``label``; the band
columns are the ones *between* ``image`` and ``label``. Every other named column (before
``image`` or after ``label``: ``site``, ``tile``, ``date``, ...) is kept as text on the
:class:`Pair` (``Pair.column(name)``), never read as a file; ``data.split.group:
column:site`` uses one. A text column whose every cell names an image file is refused (a band
column in the wrong place), so no band is ever silently dropped.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from raygym.config import DataConfig, FolderSource
from raygym.data.io import IMAGE_SUFFIXES, is_image
from raygym.errors import DataError


@dataclass(frozen=True)
class Pair:
    """One scene: ``images[0]`` is the RGB/1-band file, ``images[1:]`` one extra band each."""

    key: str
    images: tuple[Path, ...]
    label: Path
    # the manifest's named text columns, ``(name, cell)`` in header order; () by file name
    columns: tuple[tuple[str, str], ...] = ()

    def column(self, name: str) -> str | None:
        """The cell of manifest column ``name`` (stripped), or None if there is no such column."""
        return next((v for k, v in self.columns if k == name), None)


def _key_of(path: Path, source: FolderSource) -> str | None:
    return regex_key(source.key, path.stem)


def _index_folder(source: FolderSource, role: str) -> dict[str, Path]:
    folder = source.folder
    if not folder.is_dir():
        demo_layout = folder.name in ("images", "labels", "nir")  # raygym demo-data's folders
        if role == "extra_bands" and not demo_layout:  # e.g. convert-config's band_4/
            raise DataError("folder not found", file=folder, key=f"data.{role}",
                            fix="point it at the folder of that band's files (one folder per "
                            "extra band, in training order)")
        demo = folder.parent if demo_layout else folder
        raise DataError("folder not found", file=folder, key=f"data.{role}",
                        fix=f"check the path, or write the built-in demo set with "
                        f"`raygym demo-data {demo}`")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))
    if not files:
        raise DataError("folder holds no PNG/JPEG/TIFF images", file=folder, key=f"data.{role}")
    index: dict[str, Path] = {}
    for p in files:
        key = _key_of(p, source)
        if key is None:
            continue
        if key in index:
            raise DataError(f"two files share the pairing key '{key}': {index[key].name}, {p.name}",
                            file=folder, key=f"data.{role}",
                            fix="rename one, or set a `key:` regex for this folder")
        index[key] = p
    if not index:
        raise DataError(f"no file name matches the key pattern {source.key!r}", file=folder,
                        key=f"data.{role}.key")
    return index


def pair_by_name(data: DataConfig) -> list[Pair]:
    """Pair the image folder, each extra-band folder and the label folder by key (with
    ``data.label_vector`` or ``data.label_raster``, every scene's label is that one file)."""
    assert data.images is not None and (data.labels is not None or data.site_labels)
    roles = [("images", data.images)] + [
        (f"extra_bands[{i}]", s) for i, s in enumerate(data.extra_bands)
    ] + ([("labels", data.labels)] if data.labels is not None else [])
    indexes = [(role, _index_folder(src, role.split("[")[0])) for role, src in roles]
    all_keys = set().union(*(idx for _, idx in indexes))
    common = set.intersection(*(set(idx) for _, idx in indexes))
    orphans = sorted(all_keys - common)
    if orphans:
        lines = []
        for key in orphans[:5]:
            have = [role for role, idx in indexes if key in idx]
            missing = [role for role, idx in indexes if key not in idx]
            lines.append(f"'{key}' in {'/'.join(have)} but not in {'/'.join(missing)}")
        more = f" (+{len(orphans) - 5} more)" if len(orphans) > 5 else ""
        files = f"{len(orphans)} unpaired file{'s' * (len(orphans) > 1)}"
        raise DataError(f"{files}: " + "; ".join(lines) + more, key="data", fix=_suggested_keys(data, indexes) or (
                            "add the missing files, or pair with a manifest (data.manifest) "
                            "or a key regex per folder"))
    pairs = []
    for key in sorted(common):
        paths = [idx[key] for _, idx in indexes]
        if (site := data.site_labels) is not None:
            paths.append(site[1].file)
        pairs.append(Pair(key=key, images=tuple(paths[:-1]), label=paths[-1]))
    return pairs


def _suggested_keys(data: DataConfig, indexes: list[tuple[str, dict[str, Path]]]) -> str | None:
    """The ``key`` regex for each extra-band folder whose file names differ from the images'
    by a fixed word (S2: ``X-0.jpg`` and ``X_ir-0.jpg``): a rule read off a band file and the
    image name closest to it, kept only if it pairs every file of the two folders one to one
    (and keeps the image names as keys, so labels still pair by name); None where none does."""
    if data.images is None or data.images.key is not None:
        return None
    images = sorted(indexes[0][1])
    fixes = []
    for i, source in enumerate(data.extra_bands):
        bands = sorted(indexes[i + 1][1])
        if source.key is not None or set(bands) == set(images):
            continue
        rule = next((r for r in (_rule_from(_closest(b, images), b) for b in bands[:8])
                     if r is not None
                     and {regex_key(r["image"], s) for s in images} == set(images)
                     and sorted(regex_key(r["band"], s) or "" for s in bands) == images), None)
        if rule is None:
            return None
        fixes.append(f"data.extra_bands[{i}]: {{folder: {source.folder}, key: "
                     f"'{rule['band']}'}}")
    labels = sorted(indexes[-1][1]) if data.labels is not None else []
    if data.labels is not None and data.labels.key is None and set(labels) != set(images):
        key = _affix_key(labels, set(images))
        if key is not None:
            fixes.append(f"data.labels: {{folder: {data.labels.folder}, key: '{key}'}}")
        elif not data.extra_bands and (key := _affix_key(images, set(labels))) is not None:
            # images named after their labels plus a word (``X_img`` / ``X``): key the images
            fixes.append(f"data.images: {{folder: {data.images.folder}, key: '{key}'}}")
        else:
            return None
    if not fixes:
        return None
    return "pair by the naming the files follow: " + "; ".join(fixes)


def _affix_key(stems: list[str], keys: set[str]) -> str | None:
    """A key regex taking a fixed word, or one of a few, off the end (or start) of every name in
    ``stems`` so that what is left is one of ``keys``, one to one; None where none does.

    Doodler's and Gym's labels are the image's name plus ``_label_greyscale_mask`` or
    ``_mask``: ``'^(.*?)(?:_label_greyscale_mask|_mask)$'`` (the shortest key first, so
    ``X_label_greyscale_mask`` keys as ``X``, not ``X_label_greyscale``).
    """
    for at_end in (True, False):
        affixes = set()
        for stem in stems:
            tokens = _tokens(stem)
            # the longest key the name starts (ends) with, cut at a whole token
            cuts = range(len(tokens) - 1, 0, -1) if at_end else range(1, len(tokens))
            cut = next((c for c in cuts
                        if "".join(tokens[:c] if at_end else tokens[c:]) in keys), None)
            if cut is None:
                break
            affixes.add("".join(tokens[cut:] if at_end else tokens[:cut]))
        else:
            if len(affixes) > 4:  # no naming rule, just names that happen to overlap
                continue
            words = sorted(affixes, key=lambda a: (-len(a), a))
            either = (re.escape(words[0]) if len(words) == 1
                      else "(?:" + "|".join(map(re.escape, words)) + ")")
            key = f"^(.*?){either}$" if at_end else f"^{either}(.*)$"
            if sorted(regex_key(key, s) or "" for s in stems) == sorted(keys):
                return key
    return None


def _closest(band: str, images: list[str]) -> str:
    """The image name sharing the most whole name parts with ``band`` at its start and end."""
    def shared(image: str) -> int:
        mid_image, mid_band, _ = _split_stems(image, band)
        return len(image) - len(mid_image) + len(band) - len(mid_band)

    return max(images, key=shared)


def _manifest_text(manifest: Path) -> str:
    """The manifest as text: UTF-16 with a byte-order mark (Excel's "Unicode text"), UTF-8
    (with or without a BOM), else Windows-1252 / Latin-1 (Excel's plain "CSV" on Windows)."""
    data = manifest.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    if b"\0" in data:  # UTF-16 / UTF-32 without a BOM: no 8-bit reading is right
        raise DataError("manifest is not UTF-8 text (it holds NUL bytes)", file=manifest,
                        key="data.manifest", fix="save it as CSV UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _manifest_columns(columns: list[str], manifest: Path) -> tuple[list[str], list[str]]:
    """(band columns, text columns) of a manifest header; see the module docstring."""
    if "image" not in columns or "label" not in columns:
        raise DataError(f"manifest needs 'image' and 'label' columns (has {columns})",
                        file=manifest, fix="first line: image,label (band columns between)")
    twice = sorted({c for c in columns if c and columns.count(c) > 1})
    if twice:
        raise DataError(f"manifest column '{twice[0]}' appears twice in the first line",
                        file=manifest, fix="give every column its own name")
    i, j = sorted((columns.index("image"), columns.index("label")))
    bands = columns[i + 1:j]
    text = [c for c in columns[:i] + columns[j + 1:] if c]  # unnamed: Excel's trailing commas
    return bands, text


def pair_by_manifest(manifest: Path) -> list[Pair]:
    """Read ``image,<band>...,label[,<text>...]`` rows (paths relative to the manifest's
    folder); the header rule is in the module docstring."""
    if not manifest.is_file():
        raise DataError("manifest not found", file=manifest, key="data.manifest")
    reader = csv.DictReader(io.StringIO(_manifest_text(manifest), newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    bands, text = _manifest_columns(columns, manifest)
    rows = list(reader)
    if not rows:
        raise DataError("manifest has no rows", file=manifest)
    base = manifest.parent
    pairs, missing, seen = [], [], set()
    first_line: dict[Path, int] = {}
    for n, row in enumerate(rows, start=2):
        cells = [row["image"], *(row[b] for b in bands), row["label"]]
        if any(not c for c in cells):
            raise DataError(f"line {n}: empty cell", file=manifest)
        paths = [(base / c).resolve() if not Path(c).is_absolute() else Path(c) for c in cells]
        if paths[0] in first_line:
            # Two rows of one scene would become two sources that can land in different
            # splits: the same pixels in train and test.
            raise DataError(f"line {n}: image {cells[0]} is already listed on line "
                            f"{first_line[paths[0]]}", file=manifest,
                            fix="list each scene once")
        first_line[paths[0]] = n
        missing += [p for p in paths if not p.is_file()]
        key = paths[0].stem
        if key in seen:
            key = f"{key}#{n}"
        seen.add(key)
        cols = tuple((c, (row[c] or "").strip()) for c in text)
        pairs.append(Pair(key=key, images=tuple(paths[:-1]), label=paths[-1], columns=cols))
    for c in text:
        cells = [p.column(c) or "" for p in pairs]
        if all(Path(v).suffix.lower() in IMAGE_SUFFIXES for v in cells):
            raise DataError(f"column '{c}' lists image files but is not between 'image' and "
                            "'label', where band columns go", file=manifest,
                            fix=f"move '{c}' between image and label (columns outside them "
                            "are kept as text, e.g. a site for data.split.group)")
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise DataError(f"{len(missing)} files listed but not found: "
                        + ", ".join(str(p) for p in missing[:3]) + more, file=manifest)
    return pairs


def find_pairs(data: DataConfig) -> list[Pair]:
    """Pairs from the manifest if one is given, else by file name across the folders."""
    return pair_by_manifest(data.manifest) if data.manifest else pair_by_name(data)


def naming_rules(pairs: list[Pair]) -> list[dict[str, str] | None] | None:
    """How each extra band's file is named after its image, learnt from ``pairs`` (a manifest
    names them freely), so prediction finds the band files of new images named alike.

    Per extra band: ``{"image": regex, "band": regex}`` whose keys (groups joined) are equal
    for the two files of every pair and distinct between pairs, e.g. Sentinel-2 ``X-0`` and
    ``X_ir-0``: ``^(.*)(-\\d+)$`` and ``^(.*)_ir(-\\d+)$``; None for a band named as its image
    (same stem), or without one rule that fits every pair. None: no extra band, or none with
    a rule.
    """
    if not pairs or len(pairs[0].images) < 2:
        return None
    rules = [_band_rule([(p.images[0].stem, p.images[i].stem) for p in pairs])
             for i in range(1, len(pairs[0].images))]
    return rules if any(rules) else None


def _band_rule(stems: list[tuple[str, str]]) -> dict[str, str] | None:
    """The rule of :func:`naming_rules` for one band from ``(image stem, band stem)`` pairs."""
    if all(a == b for a, b in stems):
        return None
    parts = {_split_stems(a, b) for a, b in stems}
    if len(parts) != 1:  # the part that differs, or the shape of the tail, varies
        return None
    rule = _rule_from(*stems[0])
    if rule is None:
        return None
    keys = [(regex_key(rule["image"], a), regex_key(rule["band"], b)) for a, b in stems]
    if any(ka is None or ka != kb for ka, kb in keys) or len({k for k, _ in keys}) < len(keys):
        return None
    return rule


def _rule_from(image: str, band: str) -> dict[str, str] | None:
    """``{"image", "band"}`` regexes whose keys are equal for this pair of stems (None: the
    stems are equal)."""
    if image == band:
        return None
    mid_image, mid_band, tail = _split_stems(image, band)
    return {"image": f"^(.*){_token_start(mid_image)}{re.escape(mid_image)}({tail})$",
            "band": f"^(.*){_token_start(mid_band)}{re.escape(mid_band)}({tail})$"}


def _split_stems(image: str, band: str) -> tuple[str, str, str]:
    """``(image's middle, band's middle, tail pattern)``: what is left of the two stems between
    their common start and common end, both cut at whole tokens (runs of letters, runs of
    digits, single other characters: ``K_B04`` / ``K_B08`` differ in ``04`` / ``08``, never in
    ``4`` / ``8``); the common end as a regex of its tokens' kinds (digits, letters; other
    characters as they are), so new images of other numbers or names follow the rule."""
    a, b = _tokens(image), _tokens(band)
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[len(a) - 1 - end] == b[len(b) - 1 - end]:
        end += 1
    tail = a[len(a) - end:]
    pattern = "".join(r"\d+" if t.isdigit() else r"[^\W\d_]+" if t.isalpha() else re.escape(t)
                      for t in tail)
    return "".join(a[start:len(a) - end]), "".join(b[start:len(b) - end]), pattern


def _tokens(stem: str) -> list[str]:
    return re.findall(r"[^\W\d_]+|\d+|.", stem)


def _token_start(middle: str) -> str:
    """A look-behind keeping ``middle`` a whole token in a rule: ``B04`` / ``B08``'s ``04``
    must not match the end of ``tile_104``."""
    if middle[:1].isdigit():
        return r"(?<!\d)"
    if middle[:1].isalpha():
        return r"(?<![^\W\d_])"
    return ""


def regex_key(pattern: str | None, stem: str) -> str | None:
    """The pairing key of a file stem: ``pattern``'s groups joined (or its whole match), the
    stem itself without a pattern, None when it does not match (the one rule for a folder's
    ``key``, a learnt naming rule and prediction's band matching)."""
    if pattern is None:
        return stem
    m = re.match(pattern, stem)
    if m is None:
        return None
    return "".join(g or "" for g in m.groups()) if m.groups() else m.group(0)
