"""``raygym export MODEL --onnx``: ONNX Runtime's logits equal torch's on a real Sentinel-2
scene (standardised as raygym does) at two input sizes, for a Gym and an smp model; a model
whose graph holds only at its export size (PSPNet) gets fixed H and W; bad requests are one
line errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from raygym.config import validate_experiment
from raygym.data.io import read_image
from raygym.data.transforms import standardize
from raygym.errors import DataError, RaygymError
from raygym.inference.artifact import export_artifact, load_artifact
from raygym.inference.onnx_export import DEFAULT_OPSET, INPUT, OUTPUT, export_command
from raygym.models import build_model
from tests.conftest import S2_DIR

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed")

CLASSES = ["water", "surf", "wet_sand", "dry_land"]
SIZES = [(144, 64), (96, 48)]  # two crops of a ~153 x 72 scene, multiples of 16 and 8


def make_artifact(root: Path, arch: str, **params: Any) -> Path:
    """A freshly initialised model with BN statistics moved off their defaults, exported."""
    config = validate_experiment({
        "name": arch, "data": {"images": str(root / "i"), "labels": str(root / "l"),
                               "classes": CLASSES, "target_size": [64, 64],
                               "prepared": str(root / "ds")},
        "model": {"arch": arch, **params}})
    torch.manual_seed(0)
    model = build_model(arch, in_channels=3, num_classes=4, **config.model.builder_kwargs())
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64))
    return export_artifact(root / arch, model.eval(), config, in_channels=3, classes=CLASSES,
                           metrics={}, dataset={"train_scale": {"median": 0.42, "min": 0.4,
                                                                "max": 0.45}})


def export(artifact: Path, **kwargs: Any) -> tuple[int, str]:
    buffer = io.StringIO()
    args: dict[str, Any] = {"onnx": True, "out": None, "opset": None, **kwargs}
    code = export_command(artifact, console=Console(file=buffer, width=400), **args)
    return code, buffer.getvalue()


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A real Sentinel-2 RGB scene, standardised whole as ``raygym predict`` does:
    ``(H, W, 3)`` float32."""
    if not (S2_DIR / "pairs.csv").is_file():
        pytest.skip(f"S2 data set not found at {S2_DIR.resolve()}")
    first = (S2_DIR / "pairs.csv").read_text().splitlines()[1].split(",")[0]
    return standardize(read_image(S2_DIR / first))


@pytest.mark.slow
@pytest.mark.parametrize("arch, params", [
    ("gym_resunet", {"filters": 4, "kernel": 3}),
    ("unet", {"encoder": "resnet18", "encoder_depth": 3}),
])
def test_onnx_runtime_matches_torch_on_a_real_scene_at_two_sizes(
        tmp_path: Path, scene: np.ndarray, arch: str, params: dict[str, Any]) -> None:
    artifact = make_artifact(tmp_path, arch, **params)
    code, text = export(artifact)
    assert code == 0 and "model.onnx" in text and "multiples of" in text
    path = artifact / "model.onnx"
    model, card, _ = load_artifact(artifact)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == (INPUT, OUTPUT)
    assert isinstance(inp.shape[0], str) and inp.shape[1] == 3
    assert all(isinstance(d, str) for d in inp.shape[2:]), "H and W are dynamic"
    meta = session.get_modelmeta().custom_metadata_map
    multiple = 16 if arch.startswith("gym") else 8
    assert json.loads(meta["classes"]) == CLASSES and meta["bands"] == "3"
    assert meta["input_name"] == INPUT and meta["input_shape"] == "[N, 3, H, W]"
    assert meta["size_multiple"] == str(multiple) and meta["dynamic_hw"] == "true"
    assert meta["standardization"] == card.standardization and meta["arch"] == arch
    assert meta["training_scale"] == "0.42"  # resample new images by this first
    assert meta["image_bands"] == "all"  # no data.image_bands: every band of the file
    opsets = {o.domain: o.version for o in onnx.load(str(path)).opset_import}
    assert opsets[""] == DEFAULT_OPSET
    for h, w in SIZES:
        x = np.ascontiguousarray(scene[:h, -w:].transpose(2, 0, 1)[None])
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        (actual,) = session.run(None, {INPUT: x})
        assert actual.shape == (1, 4, h, w)
        print(f"{arch} {h}x{w}: max |onnxruntime - torch| = "
              f"{np.abs(actual - expected).max():.2e}")
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_model_right_only_at_its_export_size_gets_fixed_h_and_w(
        tmp_path: Path, scene: np.ndarray) -> None:
    # PSPNet pools to a fixed 1/2/3/6 grid: exported with dynamic H, W its graph keeps the
    # pooling windows of the example size and is wrong at any other
    artifact = make_artifact(tmp_path, "pspnet", encoder="resnet18")
    code, text = export(artifact, out=tmp_path / "out" / "psp.onnx")
    assert code == 0 and "fixed at 64 x 64" in text
    session = ort.InferenceSession(str(tmp_path / "out" / "psp.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[2:] == [64, 64]
    assert session.get_modelmeta().custom_metadata_map["dynamic_hw"] == "false"
    model, _, _ = load_artifact(artifact)
    x = np.ascontiguousarray(scene[:64, :64].transpose(2, 0, 1)[None])
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {INPUT: x})[0], expected, rtol=1e-4,
                               atol=1e-4)


def test_bad_requests_are_refused_before_any_export(tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path, "gym_unet", filters=2, kernel=3)
    with pytest.raises(RaygymError, match="choose what to export"):
        export(artifact, onnx=False)
    with pytest.raises(RaygymError, match="opset 12"):
        export(artifact, opset=12)
    with pytest.raises(DataError, match="is a folder"):
        export(artifact, out=tmp_path)
    with pytest.raises(DataError, match="model folder not found"):
        export(tmp_path / "missing")
    assert not (artifact / "model.onnx").exists()
