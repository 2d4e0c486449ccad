"""ONNX export of a model artifact (``raygym export MODEL --onnx``).

One self-contained ``.onnx`` file (weights inside) made by torch's exporter
(``torch.onnx.export(dynamo=True)``, which needs ``onnxscript``; the ``onnx`` extra installs it
with ``onnxruntime``). It maps ``image``, float32 ``(N, C, H, W)`` standardised as in training,
to ``logits``, float32 ``(N, K, H, W)``.

N is dynamic, and so are H and W where the model allows: they must be multiples of the
model's :func:`~raygym.models.requires_multiple_of` (16 for Gym's U-Nets, the encoder's output
stride for smp), which the exported graph encodes (``16*height_div_16``), so Gym's 'same'
padding, which depends on the parity of each level's size, is right at every allowed size.
A model whose graph is right only at its export size (adaptive pooling to a fixed grid:
PSPNet, UPerNet) is found by running ONNX Runtime against torch at a second size, and is
exported again with H and W fixed at its training size. The file's ``metadata_props`` say all
of it (:func:`onnx_metadata`): input name and shape, size rule, classes, bands,
standardisation and the training scale (the factor prepare resized the training scenes by:
resample new images by it first, as ``raygym predict --scale auto`` does).
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raygym.errors import DataError, RaygymError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from raygym.inference.artifact import ModelCard

INPUT = "image"
OUTPUT = "logits"
DEFAULT_OPSET = 20  # torch 2.14's recommended opset; ONNX Runtime runs it from 1.17 on
MIN_OPSET = 18  # torch's exporter has no implementations below (it would convert versions)
DYNAMIC_ATOL = 1e-3
"""Largest |ONNX Runtime - torch| logit difference (float32 noise is ~1e-5) at the check size
for which dynamic H and W are kept."""


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    ``export_hw``: the example size ``(H, W)`` in pixels the graph was traced at (the only
    size when not ``dynamic_hw``); ``multiple``: H and W must be multiples of it;
    ``max_abs_diff``: the largest |ONNX Runtime - torch| logit difference at ``checked_hw``.
    """

    path: Path
    opset: int
    dynamic_hw: bool
    multiple: int
    min_size: int
    export_hw: tuple[int, int]
    checked_hw: tuple[int, int]
    max_abs_diff: float


def export_size(target_size: list[int], multiple: int, min_size: int) -> tuple[int, int]:
    """The example ``(H, W)``: the training size rounded up to ``multiple``, at least
    ``min_size`` and ``2 * multiple`` (a dynamic size traced at 1 x multiple would be
    specialised to it, torch.export's 0/1 rule)."""
    h, w = (max(math.ceil(t / multiple) * multiple, min_size, 2 * multiple)
            for t in target_size)
    return h, w


def onnx_metadata(card: ModelCard, result: OnnxExport) -> dict[str, str]:
    """``metadata_props`` of the exported file: what a user of the bare ``.onnx`` must know."""
    c, k = card.in_channels, card.num_classes
    if result.dynamic_hw:
        size = (f"H and W: multiples of {result.multiple}, at least {result.min_size} "
                f"(trained at {card.target_size[0]} x {card.target_size[1]})")
    else:
        size = (f"H and W fixed at {result.export_hw[0]} x {result.export_hw[1]} (this "
                "model's graph holds only at its export size)")
    picked = card.dataset.get("image_bands")
    return {
        "raygym_format": card.format,
        "name": card.name,
        "arch": card.arch,
        "model_params": json.dumps(card.model_params, sort_keys=True),
        "classes": json.dumps(card.classes),
        "bands": str(c),
        # the image files' bands, numbered from 1, that make the first of those (then any
        # extra band files); "all": every band of the file, in its order
        "image_bands": json.dumps(picked) if picked else "all",
        "input_name": INPUT,
        "input_shape": f"[N, {c}, H, W]",
        "input": f"float32 (N, {c}, H, W): the {c} bands in training order, each image "
                 f"standardised on its own; {size}",
        "standardization": card.standardization,
        "size_multiple": str(result.multiple),
        "min_size": str(result.min_size),
        "dynamic_hw": str(result.dynamic_hw).lower(),
        "trained_size": json.dumps(card.target_size),
        # new images of the training sensor: resample by this first (raygym predict --scale
        # auto does), or the model sees the ground at a sample distance it never learnt
        "training_scale": (f"{card.training_scale:g}" if card.training_scale is not None
                           else "unknown"),
        "output_name": OUTPUT,
        "output": f"float32 (N, {k}, H, W) logits; softmax over axis 1 gives the class "
                  "probabilities, argmax the class id (an index into classes)",
    }


def _export(model: nn.Module, sample: torch.Tensor, opset: int, multiple: int | None,
            min_size: int) -> Any:
    """``torch.onnx.export`` with a dynamic batch, and dynamic H, W in steps of ``multiple``
    (None: H and W fixed at the sample's). Returns the ``torch.onnx.ONNXProgram``."""
    import torch
    from torch.export import Dim

    shapes: dict[int, Any] = {0: Dim("batch", min=1)}
    if multiple is not None:
        lowest = max(1, min_size // multiple)
        shapes[2] = multiple * Dim(f"height_div_{multiple}", min=lowest)
        shapes[3] = multiple * Dim(f"width_div_{multiple}", min=lowest)
    return torch.onnx.export(model, (sample,), dynamo=True, opset_version=opset,
                             input_names=[INPUT], output_names=[OUTPUT],
                             dynamic_shapes=(shapes,), verbose=False)


def _max_abs_diff(program: Any, model: nn.Module, x: torch.Tensor) -> float:
    """Largest |ONNX Runtime - eager torch| logit difference on ``x`` (eager, not the
    exported program: a graph wrong away from its export size is wrong in both)."""
    import torch

    with torch.no_grad():
        expected = model(x)
    (actual,) = program(x)  # ONNXProgram.__call__ runs ONNX Runtime
    return float((actual - expected).abs().max())


def export_onnx(model_dir: Path, out: Path, *, opset: int = DEFAULT_OPSET) -> OnnxExport:
    """Export the artifact at ``model_dir`` to the ONNX file ``out`` (written atomically).

    Raises:
        RaygymError: ``opset`` below :data:`MIN_OPSET`, or the model cannot be exported.
        DataError: a damaged artifact, or ONNX Runtime disagreeing with torch.
    """
    import torch

    from raygym.atomic import temp_beside
    from raygym.inference.artifact import load_artifact
    from raygym.models import min_input_size, requires_multiple_of

    if opset < MIN_OPSET:
        raise RaygymError(f"opset {opset} is older than torch's exporter supports",
                          key="--opset", fix=f"use --opset {MIN_OPSET} or more "
                          f"(default {DEFAULT_OPSET})")
    model, card, _ = load_artifact(model_dir)
    multiple = requires_multiple_of(card.arch, **card.model_params)
    min_size = min_input_size(card.arch, **card.model_params)
    hw = export_size(card.target_size, multiple, min_size)
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, card.in_channels, *hw, generator=gen)  # standardised: ~N(0, 1)
    other = torch.randn(1, card.in_channels, hw[0] + multiple, hw[1] + 2 * multiple,
                        generator=gen)
    try:
        program = _export(model, sample, opset, multiple, min_size)
        diff = _max_abs_diff(program, model, other)
    except Exception:  # any failure, of the export or of ONNX Runtime at the other size,
        diff = math.inf  # means this model's H and W cannot be dynamic
    dynamic = diff <= DYNAMIC_ATOL
    checked = tuple(other.shape[2:]) if dynamic else hw
    if not dynamic:
        try:
            program = _export(model, sample, opset, None, min_size)
        except torch.onnx.errors.OnnxExporterError as err:
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise RaygymError(f"torch cannot export '{card.arch}' to ONNX: {first}") from None
        diff = _max_abs_diff(program, model, sample[:1])
        if diff > DYNAMIC_ATOL:
            raise DataError(f"ONNX Runtime's logits differ from torch's by {diff:.3g}; "
                            "not written", file=model_dir, fix="try another --opset")
    result = OnnxExport(path=out, opset=opset, dynamic_hw=dynamic, multiple=multiple,
                        min_size=min_size, export_hw=hw, checked_hw=(checked[0], checked[1]),
                        max_abs_diff=diff)
    program.model.metadata_props.update(onnx_metadata(card, result))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(out)
    try:
        # one file: weights inside (external data is only needed past protobuf's 2 GB)
        program.save(str(tmp), external_data=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return result


def require_onnx_packages() -> None:
    """Raise a one-line error naming the fix when the ``onnx`` extra is not installed."""
    missing = [m for m in ("onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise RaygymError(f"ONNX export needs {' and '.join(missing)}",
                          fix="pip install 'raygym[onnx]'")


def export_command(model: Path, *, onnx: bool, out: Path | None, opset: int | None,
                   console: Any) -> int:
    """``raygym export MODEL --onnx [--out FILE] [--opset N]``; returns the exit code.

    ``model``: an artifact folder or a search's results folder (its best model). ``out``
    defaults to ``model.onnx`` inside the artifact folder.
    """
    from raygym.predict.predictor import resolve_models

    if not onnx:
        raise RaygymError("choose what to export", key="--onnx",
                          fix="raygym export MODEL --onnx")
    require_onnx_packages()
    artifact = resolve_models(Path(model), 1)[0]
    target = Path(out) if out is not None else artifact / "model.onnx"
    if target.is_dir():
        raise DataError("--out is a folder; give the .onnx file to write", file=target,
                        fix=f"--out {target / 'model.onnx'}")
    result = export_onnx(artifact, target, opset=opset if opset is not None else DEFAULT_OPSET)
    size = (f"H, W multiples of {result.multiple} (>= {result.min_size})" if result.dynamic_hw
            else f"H, W fixed at {result.export_hw[0]} x {result.export_hw[1]}: this model's "
            "graph is right only at its export size")
    console.print(f"wrote [bold]{result.path}[/] (opset {result.opset}, "
                  f"{result.path.stat().st_size / 2**20:.1f} MiB): input '{INPUT}' float32 "
                  f"(N, C, H, W), {size}; ONNX Runtime matches torch at "
                  f"{result.checked_hw[0]} x {result.checked_hw[1]} (max |diff| "
                  f"{result.max_abs_diff:.1g})")
    return 0
