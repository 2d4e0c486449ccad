"""Keras-style model summary: per-layer output shapes and parameters, totals and FLOPs per image.

Backs ``raygym models NAME --filters 8 --kernel 7 --bands 3 --classes 4 --size 256``
(:func:`describe_arch`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from raygym.models.fused import fast_paths


@dataclass(frozen=True)
class LayerRow:
    """One leaf module: dotted name, class name, output shape of one image, own parameters."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int


@dataclass(frozen=True)
class ModelSummary:
    """Result of :func:`model_summary`. ``flops_per_image`` counts a multiply-add as 2 FLOPs
    (``torch.utils.flop_counter`` convention) for one forward pass of one image."""

    model_name: str
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    trainable_params: int = 0
    non_trainable_params: int = 0
    buffer_elements: int = 0  # e.g. BN running mean/var: Keras counts them as non-trainable
    flops_per_image: int = 0

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def gflops(self) -> float:
        """FLOPs per image in units of 1e9."""
        return self.flops_per_image / 1e9


def _first_tensor(out: object) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)):
        for item in out:
            t = _first_tensor(item)
            if t is not None:
                return t
    if isinstance(out, dict):
        for item in out.values():
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


@torch.no_grad()
def model_summary(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelSummary:
    """Run one ``(1, C, H, W)`` zero-mean random image through ``model`` in eval mode and
    record every leaf module's output shape (batch dim dropped) and own parameter count,
    total trainable / frozen parameters, and FLOPs of that forward pass.

    The model's training flag is restored afterwards; nothing else is changed.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.randn(1, *input_shape, device=device, dtype=dtype)

    shapes: dict[str, tuple[int, ...]] = {}
    leaves = [(n or type(m).__name__, m) for n, m in model.named_modules()
              if not any(True for _ in m.children())]  # a bare layer is its own only leaf

    def hook_for(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(_m: nn.Module, _inp: object, out: object) -> None:
            t = _first_tensor(out)
            if t is not None and name not in shapes:
                shapes[name] = tuple(t.shape[1:])
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in leaves]
    was_training = model.training
    model.eval()
    try:
        flops = FlopCounterMode(display=False)
        # PyTorch's own ops: every leaf module is called (fused ops skip some, e.g. the
        # decoders' BN + ReLU before the upsampling), so every row gets its shape
        with flops, fast_paths(False):
            out = model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    out_t = _first_tensor(out)

    rows = [
        LayerRow(n, type(m).__name__, shapes.get(n, ()),
                 sum(p.numel() for p in m.parameters(recurse=False)))
        for n, m in leaves
    ]
    return ModelSummary(
        model_name=type(model).__name__,
        input_shape=tuple(input_shape),  # type: ignore[arg-type]
        output_shape=tuple(out_t.shape[1:]) if out_t is not None else (),
        rows=rows,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        non_trainable_params=sum(p.numel() for p in model.parameters() if not p.requires_grad),
        buffer_elements=sum(b.numel() for b in model.buffers() if b.is_floating_point()),
        flops_per_image=int(flops.get_total_flops()),
    )


def format_summary(summary: ModelSummary, *, width: int = 110, layers: bool = True) -> str:
    """Render ``summary`` as a plain-text table (rich, no colour codes) plus a totals footer;
    ``layers=False`` prints only the header line and the totals."""
    table = Table(title=f"{summary.model_name}  input {summary.input_shape}", show_lines=False)
    table.add_column("Layer", overflow="fold")
    table.add_column("Type")
    table.add_column("Output shape", justify="right")
    table.add_column("Params", justify="right")
    if layers:
        for r in summary.rows:
            shape = "x".join(map(str, r.output_shape)) if r.output_shape else "-"
            table.add_row(r.name, r.type, shape, f"{r.params:,}")
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    if layers:
        console.print(table)
    else:
        console.print(f"{summary.model_name}  input {summary.input_shape}")
    footer = (
        f"Output shape: {'x'.join(map(str, summary.output_shape))} (logits)\n"
        f"Trainable params: {summary.trainable_params:,}\n"
        f"Non-trainable params: {summary.non_trainable_params:,}\n"
        f"Buffers (BN running stats etc.): {summary.buffer_elements:,} "
        f"(params + buffers, Keras' 'Total params': "
        f"{summary.total_params + summary.buffer_elements:,})\n"
        f"FLOPs per image: {summary.gflops:.3f} GFLOPs (multiply-add = 2)"
    )
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return f"{text}{footer}\n"


def describe_arch(name: str, *, bands: int, classes: int, size: int, **given: object) -> str:
    """The printed summary of architecture ``name`` built with the model keys ``given``
    (``filters``, ``kernel``, ``encoder``; the schema's defaults otherwise) for square
    ``size`` x ``size`` px images of ``bands`` bands.

    Raises:
        RaygymError: an unknown architecture, a bad model key (named as its option, e.g.
            ``--filters``), or a size the architecture cannot take (with the nearest one
            that it can).
    """
    from pydantic import ValidationError

    from raygym.config import ModelConfig
    from raygym.errors import RaygymError
    from raygym.models import build_model, min_input_size, requires_multiple_of

    try:
        config = ModelConfig(arch=name, **given)
        model = build_model(name, in_channels=bands, num_classes=classes,
                            **config.builder_kwargs())
    except ValidationError as err:
        e = err.errors()[0]
        field_name = ".".join(map(str, e["loc"]))
        raise RaygymError(e["msg"].removeprefix("Value error, "),
                          key="model" if field_name == "arch" else f"--{field_name}") from None
    except ValueError as err:
        raise RaygymError(str(err), key="model") from None
    unused = [k for k in given if k not in config.builder_kwargs()]
    if unused:  # printed as if it applied, the summary would mislead
        raise RaygymError(f"{name} takes no {unused[0]} (--encoder applies to smp "
                          "architectures, --filters and --kernel to Gym networks)",
                          key=f"--{unused[0]}", fix=f"drop --{unused[0]}")
    multiple = requires_multiple_of(name, **config.builder_kwargs())
    smallest = min_input_size(name, **config.builder_kwargs())
    if size < smallest or size % multiple:
        ok = max(smallest, -(-size // multiple) * multiple)
        raise RaygymError(f"{name} needs a size that is a multiple of {multiple} and at "
                          f"least {smallest}, got {size}", key="--size", fix=f"use --size {ok}")
    return format_summary(model_summary(model, (bands, size, size)))
