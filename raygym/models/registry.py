"""Model registry: one name -> builder table for Gym's own networks and smp architectures.

Every builder has the signature ``builder(*, in_channels, num_classes, **params) -> nn.Module``
and every built model maps ``(B, C, H, W)`` float input to ``(B, K, H, W)`` logits.

* Gym models (:data:`GYM_MODELS`): ``gym_unet``, ``gym_resunet`` (Gym's "unet" / "resunet"),
  ``simple_unet``, ``simple_resunet``; params are the constructor arguments of the classes in
  :mod:`raygym.models.gym` (``filters``, ``kernel``, ``dropout`` ...).
* segmentation_models_pytorch architectures, keyed by lowercase class name (``unet``, ``fpn``,
  ``deeplabv3plus``, ``segformer`` ...); params: ``encoder`` (default ``"resnet18"``),
  ``encoder_depth``, ``encoder_weights`` (``None`` or a *local* file; nothing is ever
  downloaded) and the architecture's other keyword arguments (``decoder_*``, ``upsampling``,
  ``encoder_output_stride`` ...).

smp (with timm and torchvision: ~3.5 s of CPU) is imported only when an smp architecture is
named, listed or built: a Gym model's trial or training worker never pays for it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from raygym.models.gym import GymResUNet, GymUNet, SimpleResUNet, SimpleUNet
from raygym.models.spec import DEFAULT_ENCODER, GYM_ARCHS, GYM_LEVELS

if TYPE_CHECKING:
    from segmentation_models_pytorch.base import SegmentationModel

Builder = Callable[..., nn.Module]

# in GYM_ARCHS' order (the list is written once, in raygym.models.spec)
_GYM_CLASSES: dict[str, type[nn.Module]] = dict(
    zip(GYM_ARCHS, (GymUNet, GymResUNet, SimpleUNet, SimpleResUNet), strict=True))
GYM_MODELS: frozenset[str] = frozenset(_GYM_CLASSES)

# DPT needs a ViT ("tu-vit_*") encoder with a fixed patch grid and no small CNN option, so it
# does not fit the "any encoder, any band count, any size" contract of this registry.
_SMP_EXCLUDED = frozenset({"DPT"})


@functools.cache
def _smp_classes() -> dict[str, type[SegmentationModel]]:
    """smp's architectures by lowercase class name (imports smp on first use)."""
    import segmentation_models_pytorch as smp
    from segmentation_models_pytorch.base import SegmentationModel

    return {
        cls.__name__.lower(): cls
        for cls in (getattr(smp, n) for n in smp.__all__)
        if isinstance(cls, type) and issubclass(cls, SegmentationModel)
        and cls.__name__ not in _SMP_EXCLUDED
    }

# Constructor arguments raygym sets itself (or renames), never passed through from params.
_SMP_RESERVED = frozenset({"self", "in_channels", "classes", "encoder_name", "activation",
                           "aux_params"})
# Extra input-size floor for decoders that pool the deepest feature map further.
_SMP_MIN_DEEP_SIZE = {"pan": 8}  # PAN's feature pyramid attention pools the stride-16 map 3x


def _gym_param_names(cls: type[nn.Module]) -> list[str]:
    sig = inspect.signature(cls.__init__)
    return [n for n in sig.parameters if n not in ("self", "in_channels", "num_classes")]


def _smp_param_names(cls: type[SegmentationModel]) -> list[str]:
    sig = inspect.signature(cls.__init__)
    names = [
        n for n, p in sig.parameters.items()
        if n not in _SMP_RESERVED and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return ["encoder", *names]


def _reject_unknown(name: str, params: Mapping[str, Any], valid: list[str]) -> None:
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for model '{name}'; "
            f"valid: {', '.join(valid)}"
        )


def _build_gym(cls: type[nn.Module], *, in_channels: int, num_classes: int,
               **params: Any) -> nn.Module:
    """Build a Gym network; unknown ``params`` raise ValueError listing the valid ones."""
    _reject_unknown(cls.__name__, params, _gym_param_names(cls))
    return cls(in_channels=in_channels, num_classes=num_classes, **params)


def _adapt_in_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit a pretrained first-conv kernel ``(O, C0, k, k)`` to ``in_channels`` like smp does:
    1 band sums the RGB kernels; more bands cycle them and rescale by ``C0 / in_channels``."""
    c0 = weight.shape[1]
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    idx = torch.arange(in_channels) % c0
    return weight[:, idx] * (c0 / in_channels)


def load_encoder_weights(model: SegmentationModel, path: str | os.PathLike[str]) -> None:
    """Load a local encoder state dict (``.safetensors`` or a torch file) into ``model.encoder``.

    Accepts a bare encoder state dict, a full smp model state dict (``encoder.`` keys are
    picked out) or a checkpoint dict with ``state_dict``. First-conv kernels trained on a
    different band count are adapted (see :func:`_adapt_in_channels`). Loading is strict.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Mapping[str, Any] = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    if any(k.startswith("encoder.") for k in state):
        state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    own = model.encoder.state_dict()
    fixed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = own.get(key)
        if (target is not None and value.dim() == 4 and target.dim() == 4
                and value.shape[1] != target.shape[1] and value.shape[0] == target.shape[0]):
            value = _adapt_in_channels(value, target.shape[1])
        fixed[key] = value
    try:
        model.encoder.load_state_dict(fixed, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit encoder: {err}") from err


def _build_smp(cls: type[SegmentationModel], *, in_channels: int, num_classes: int,
               **params: Any) -> SegmentationModel:
    """Build an smp architecture with random init, then optionally load local encoder weights."""
    import segmentation_models_pytorch as smp

    name = cls.__name__.lower()
    _reject_unknown(name, params, _smp_param_names(cls))
    encoder = params.pop("encoder", DEFAULT_ENCODER)
    weights = params.pop("encoder_weights", None)
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)) or not Path(weights).is_file():
            raise ValueError(
                f"encoder_weights={weights!r} is not a local file; raygym never downloads "
                "weights: pass None or the path of a .safetensors / .pt encoder state dict"
            )
    if not encoder.startswith("tu-") and encoder not in smp.encoders.get_encoder_names():
        close = difflib.get_close_matches(encoder, smp.encoders.get_encoder_names(), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown encoder {encoder!r} for model '{name}'{hint}")
    sig = inspect.signature(cls.__init__)
    depth = int(params.get("encoder_depth", sig.parameters["encoder_depth"].default))
    channels = sig.parameters.get("decoder_channels")
    if (channels is not None and "decoder_channels" not in params
            and isinstance(channels.default, (list, tuple)) and len(channels.default) > depth):
        # smp's default has one entry per stage of a depth-5 encoder; shallower encoders
        # would otherwise fail with "Model depth is 3, but you provide decoder_channels for 5"
        params["decoder_channels"] = tuple(channels.default[:depth])
    try:
        model = cls(encoder_name=encoder, encoder_weights=None, in_channels=in_channels,
                    classes=num_classes, activation=None, **params)
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"cannot build '{name}' with encoder {encoder!r}: {err}") from err
    if weights is not None:
        load_encoder_weights(model, weights)
    size = max(64, min_input_size(name, **{**params, "encoder_depth": depth}))
    freeze_unused_parameters(model, (in_channels, size, size))
    return model


def freeze_unused_parameters(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Set ``requires_grad=False`` on parameters that never get a gradient; return how many
    elements were frozen.

    smp keeps encoder stages deeper than ``encoder_depth`` (PSPNet's default depth 3 on
    resnet18 carries 10.5M unused parameters) and efficientnet encoders keep their unused
    classifier ``conv_head``. Left trainable they make DDP fail ("parameters that were not used
    in producing loss") and inflate the trainable count. Found structurally with one eval-mode
    forward/backward of a zero ``(1, C, H, W)`` image: no RNG draw, no BN statistics update,
    state dict keys unchanged (full pretrained encoders still load).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = torch.zeros(1, *input_shape)
            out = model(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            out.sum().backward()
    finally:
        model.train(was_training)
    frozen = 0
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.requires_grad_(False)
            frozen += p.numel()
        p.grad = None
    return frozen


def encoder_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in ``model.named_parameters()``) of the encoder's parameters: the contracting
    path of a gym network (its ``encoder_modules``), an smp model's ``encoder``."""
    prefixes = getattr(type(model), "encoder_modules", None) or (
        ("encoder",) if isinstance(getattr(model, "encoder", None), nn.Module) else ())
    return {name for name, _ in model.named_parameters()
            if name.split(".", 1)[0] in prefixes}


@functools.cache
def _registry() -> dict[str, Builder]:
    return {
        **{n: functools.partial(_build_gym, c) for n, c in _GYM_CLASSES.items()},
        **{n: functools.partial(_build_smp, c) for n, c in sorted(_smp_classes().items())},
    }


def __getattr__(name: str) -> Any:
    # MODEL_REGISTRY (name -> builder) and SMP_MODELS need smp: built on first access
    if name == "MODEL_REGISTRY":
        return _registry()
    if name == "SMP_MODELS":
        return frozenset(_smp_classes())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def list_models() -> list[str]:
    """All registered model names, Gym models first."""
    return list(_registry())


def _check_name(name: str) -> None:
    if name not in GYM_MODELS and name not in _smp_classes():
        raise ValueError(f"unknown model '{name}'; valid: {', '.join(list_models())}")


def model_params(name: str) -> dict[str, Any]:
    """Accepted ``params`` of model ``name`` with their defaults (``inspect.Parameter.empty``
    where none)."""
    _check_name(name)
    if name in GYM_MODELS:
        cls: type[nn.Module] = _GYM_CLASSES[name]
        sig = inspect.signature(cls.__init__)
        return {n: sig.parameters[n].default for n in _gym_param_names(cls)}
    smp_cls = _smp_classes()[name]
    sig = inspect.signature(smp_cls.__init__)
    out: dict[str, Any] = {"encoder": DEFAULT_ENCODER}
    for n in _smp_param_names(smp_cls)[1:]:
        out[n] = None if n == "encoder_weights" else sig.parameters[n].default
    return out


def build_model(name: str, *, in_channels: int, num_classes: int, **params: Any) -> nn.Module:
    """Build model ``name`` returning ``(B, num_classes, H, W)`` logits for ``(B, in_channels,
    H, W)`` input. Unknown names or params raise ValueError listing the valid choices."""
    _check_name(name)
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, "
                         f"{num_classes}")
    if name in GYM_MODELS:
        return _build_gym(_GYM_CLASSES[name], in_channels=in_channels, num_classes=num_classes,
                          **params)
    return _registry()[name](in_channels=in_channels, num_classes=num_classes, **params)


def requires_multiple_of(name: str, **params: Any) -> int:
    """Input H and W must be a multiple of this for model ``name`` built with ``params``.

    Gym models: ``2 ** levels`` (16). smp models: the encoder's output stride,
    ``min(encoder_output_stride, 2 ** encoder_depth)`` (32 for depth-5 encoders, 8 for PSPNet's
    default depth 3 or DeepLabV3's dilated stride 8). Computed from defaults, no model is built.
    """
    _check_name(name)
    defaults = model_params(name)
    if name in GYM_MODELS:
        return 2 ** int(params.get("num_layers", defaults.get("num_layers", GYM_LEVELS)))
    depth = int(params.get("encoder_depth", defaults["encoder_depth"]))
    stride = int(params.get("encoder_output_stride", defaults.get("encoder_output_stride", 32)))
    return min(stride, 2**depth)


def min_input_size(name: str, **params: Any) -> int:
    """Smallest H and W that model ``name`` accepts (a multiple of
    :func:`requires_multiple_of`); e.g. PAN needs 8 pixels at its deepest (stride-16) level."""
    multiple = requires_multiple_of(name, **params)
    return multiple * _SMP_MIN_DEEP_SIZE.get(name, 1)
