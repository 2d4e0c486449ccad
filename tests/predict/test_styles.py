"""``raygym.predict.styles``: the QGIS style names and colours every class, the overlay legend
fits the class names. No model needed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np


def test_qml_is_valid_xml_naming_every_class(tmp_path: Path) -> None:
    from raygym.predict.rasters import class_colormap
    from raygym.predict.styles import write_label_qml

    classes = ["water", "surf & foam", "wet <sand>", "dry_land"]
    root = ET.parse(write_label_qml(tmp_path / "a_label.qml", classes)).getroot()
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "paletted"
    entries = list(renderer.iter("paletteEntry"))
    assert [e.get("label") for e in entries] == classes
    assert [int(e.get("value", -1)) for e in entries] == [0, 1, 2, 3]
    table = class_colormap(4)  # the label GeoTIFF's colour table
    assert [e.get("color") for e in entries] == [
        "#{:02x}{:02x}{:02x}".format(*table[i][:3]) for i in range(4)]


def test_legend_is_added_below_and_widens_a_narrow_image() -> None:
    from raygym.data.preview import class_colours
    from raygym.predict.styles import add_legend

    rgb = np.full((50, 20, 3), 7, np.uint8)
    shown = add_legend(rgb, ["deep_water", "land"])
    assert shown.shape[0] > 50 and shown.shape[1] > 20  # names are wider than 20 px
    assert (shown[:50, :20] == 7).all()
    legend = shown[50:].reshape(-1, 3)
    for colour in class_colours(2):
        assert (legend == colour).all(axis=1).any()  # each class's swatch is drawn
