"""How a prediction looks to a person: the QGIS style of a label raster (``<stem>_label.qml``,
which QGIS applies by itself when it opens ``<stem>_label.tif``) and the overlay PNG with its
legend (class name + colour). Colours are :func:`raygym.data.preview.class_colours`, the same as
the label GeoTIFF's colour table."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from raygym.atomic import write_text_atomic

QGIS_VERSION = "3.28.0"
"""Version written in the style file (any QGIS 3 reads a paletted renderer this way)."""


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def label_qml(classes: Sequence[str]) -> str:
    """A QGIS layer style (QML): band 1 drawn by a paletted renderer, one entry per class id
    (its colour and name); other values (the nodata 255) stay transparent."""
    from raygym.data.preview import class_colours

    qgis = ET.Element("qgis", version=QGIS_VERSION, styleCategories="AllStyleCategories")
    pipe = ET.SubElement(qgis, "pipe")
    renderer = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1", opacity="1",
                             alphaBand="-1", nodataColor="")
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for value, (name, rgb) in enumerate(zip(classes, class_colours(len(classes)), strict=True)):
        ET.SubElement(palette, "paletteEntry", value=str(value), color=_hex(rgb), alpha="255",
                      label=name)
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0",
                  colorizeOn="0", colorizeRed="255", colorizeGreen="128", colorizeBlue="128",
                  colorizeStrength="100")
    # nearest: class ids must never be interpolated when QGIS zooms
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(qgis, "blendMode").text = "0"
    ET.indent(qgis)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + \
        ET.tostring(qgis, encoding="unicode") + "\n"


def write_label_qml(path: Path, classes: Sequence[str]) -> Path:
    """:func:`label_qml` written atomically to ``path``."""
    return write_text_atomic(path, label_qml(classes))


def add_legend(rgb: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``(H, W, 3)`` uint8 overlay -> the same with a legend panel below it (one row per class:
    colour swatch + name), widened if the image is narrower than the legend.

    Returns:
        ``(H + legend height, max(W, legend width), 3)`` uint8; the image at the top left.
    """
    from PIL import Image, ImageDraw, ImageFont

    from raygym.data.preview import class_colours

    h, w = rgb.shape[:2]
    # readable at a glance whether the overlay is 70 or 4000 px wide
    size = int(np.clip(round(max(w, h) / 60), 11, 48))
    font = ImageFont.load_default(size=size)
    pad, line = size // 2, int(size * 1.4)
    names_w = max(int(font.getlength(name)) for name in classes)
    legend_w = pad * 3 + size + names_w
    canvas = Image.new("RGB", (max(w, legend_w), h + pad * 2 + line * len(classes)), "white")
    canvas.paste(Image.fromarray(rgb), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (name, colour) in enumerate(zip(classes, class_colours(len(classes)), strict=True)):
        y = h + pad + i * line
        draw.rectangle((pad, y, pad + size, y + size), fill=tuple(int(c) for c in colour),
                       outline="black")
        draw.text((pad * 2 + size, y), name, fill="black", font=font)
    return np.asarray(canvas)
