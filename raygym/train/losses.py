"""Segmentation losses: Gym's Dice / CCE / KLD plus smp's focal, Tversky and Lovasz.

Conventions shared by every loss here:

* ``logits``: (B, K, H, W) float (any float dtype; computed in float32 internally, with autocast
  disabled, so bf16 / fp16 mixed precision cannot degrade the reductions).
* ``target``: (B, H, W) int64 class indices; pixels equal to :data:`IGNORE_INDEX` (padding added
  to keep aspect ratio, or user-ignored pixels) never contribute to a loss or its gradient.
* A loss returns a scalar float32 tensor.

:func:`build_loss` turns a config value (``"dice"`` or ``{"dice": 0.5, "cce": 0.5}``) into an
``nn.Module`` with ``forward(logits, target) -> scalar``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX: int = 255
"""Target value of pixels excluded from every loss and metric."""

KERAS_EPSILON: float = 1e-7
"""Keras' ``backend.epsilon()``: the clip used by Gym's KLD."""

LossFn = nn.Module
"""What the registry builders return: an ``nn.Module`` with ``forward(logits, target)``."""

__all__ = [
    "IGNORE_INDEX",
    "LOSS_REGISTRY",
    "CCELoss",
    "DiceLoss",
    "KLDLoss",
    "SMPLoss",
    "WeightedSumLoss",
    "build_loss",
    "cce_loss",
    "dice_loss",
    "gym_class_weights",
    "kld_loss",
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_shapes(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, K, H, W), got shape {tuple(logits.shape)}")
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"target must be (B, H, W) = {(logits.shape[0], *logits.shape[2:])}, "
            f"got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point:
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")


def _weights_tensor(
    class_weights: Sequence[float] | torch.Tensor | None, num_classes: int, device: torch.device
) -> torch.Tensor | None:
    """Float32 (K,) weight tensor on ``device``, or None.

    Values are checked only when given as a Python sequence: a tensor (e.g. a loss module's
    buffer, validated when the module was built) is used as is, so no per-step host sync.
    """
    if class_weights is None:
        return None
    if isinstance(class_weights, torch.Tensor):
        w = class_weights.to(device=device, dtype=torch.float32).flatten()
        if w.numel() != num_classes:
            raise ValueError(f"class_weights has {w.numel()} entries, expected {num_classes}")
        return w
    w = torch.tensor([float(v) for v in class_weights], dtype=torch.float32).flatten()
    if w.numel() != num_classes:
        raise ValueError(f"class_weights has {w.numel()} entries, expected {num_classes}")
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"class_weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    return w.to(device)


def _onehot_valid(target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot (B, K, H, W) float32 target with ignored pixels all-zero, and the (B, H, W) mask."""
    valid = target != IGNORE_INDEX
    # Ignored pixels are mapped to class 0 only so one_hot accepts them; the mask zeroes them.
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(torch.float32)
    return onehot * valid.unsqueeze(1), valid


def _masked_mean(values: torch.Tensor, pixel_w: torch.Tensor) -> torch.Tensor:
    """``sum(values * w) / sum(w)``; 0 (not NaN) when ``sum(w) == 0``, without a host sync.

    A batch that is all padding has ``sum(w) == 0`` and then also ``sum(values * w) == 0``, so
    clamping the denominator to the smallest float gives exactly 0.
    """
    denom = pixel_w.sum().clamp_min(torch.finfo(torch.float32).tiny)
    return (values * pixel_w).sum() / denom


# --------------------------------------------------------------------------------------------
# functional losses
# --------------------------------------------------------------------------------------------
def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    smooth: float = 1e-5,
) -> torch.Tensor:
    """Gym's mean (optionally weighted) Dice loss over the whole batch.

    ``p = softmax(logits)``; for each class c, summing over every valid pixel of the batch,
    ``dice_c = (2 * sum(y_c * p_c) + s) / (sum(y_c) + sum(p_c) + s)`` and
    ``loss = 1 - sum_c w_c * dice_c`` with ``w`` normalised to sum to 1 (uniform by default,
    which is Gym's ``1 - mean_dice_coef``). A class absent from both truth and prediction
    scores ``s / s = 1``, so it does not pull the loss up.

    Args:
        logits: (B, K, H, W) raw scores.
        target: (B, H, W) int64 labels, :data:`IGNORE_INDEX` for ignored pixels.
        class_weights: (K,) non-negative weights, e.g. from :func:`gym_class_weights`.
        smooth: Gym's ``s`` (its ``10e-6``).

    Returns:
        Scalar float32 loss in [0, 1].
    """
    _check_shapes(logits, target)
    num_classes = logits.shape[1]
    with torch.autocast(device_type=logits.device.type, enabled=False):
        onehot, valid = _onehot_valid(target, num_classes)
        probs = torch.softmax(logits.float(), dim=1) * valid.unsqueeze(1)
        dims = (0, 2, 3)
        intersection = (onehot * probs).sum(dims)
        dice = (2.0 * intersection + smooth) / (onehot.sum(dims) + probs.sum(dims) + smooth)
        w = _weights_tensor(class_weights, num_classes, logits.device)
        if w is None:
            return 1.0 - dice.mean()
        return 1.0 - (dice * (w / w.sum())).sum()


def cce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Categorical cross-entropy averaged over valid pixels (``F.cross_entropy``).

    With ``class_weights`` the mean is PyTorch's weighted mean:
    ``sum_i w[y_i] * ce_i / sum_i w[y_i]`` over valid pixels i.

    Args:
        logits: (B, K, H, W) raw scores.
        target: (B, H, W) int64 labels, :data:`IGNORE_INDEX` for ignored pixels.
        class_weights: optional (K,) non-negative weights.

    Returns:
        Scalar float32 loss; 0 (not NaN) when every pixel is ignored.
    """
    _check_shapes(logits, target)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        w = _weights_tensor(class_weights, logits.shape[1], logits.device)
        per_pixel = F.cross_entropy(
            logits.float(), target.long(), ignore_index=IGNORE_INDEX, reduction="none"
        )  # (B, H, W), 0 on ignored pixels
        valid = target != IGNORE_INDEX
        safe = torch.where(valid, target, torch.zeros_like(target)).long()
        pixel_w = valid.to(torch.float32) if w is None else w[safe] * valid
        return _masked_mean(per_pixel, pixel_w)


def kld_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    eps: float = KERAS_EPSILON,
) -> torch.Tensor:
    """Kullback-Leibler divergence KL(one-hot || softmax) averaged over valid pixels.

    Computed like Keras' ``KLDivergence`` that Gym uses: both the one-hot target and the softmax
    are clipped to ``[eps, 1]`` and ``sum_c y_c * log(y_c / p_c)`` is taken per pixel.

    Note:
        With hard labels ``KL(y || p) = CE(y, p) - H(y)`` and the entropy ``H`` of a one-hot
        vector is 0, so this loss equals :func:`cce_loss` up to the eps clipping (a difference of
        at most about ``(K - 1) * eps * log(1 / eps)`` per pixel, ~1e-6, except that the clip
        caps a pixel's loss at ``-log(eps)`` ~ 16.1 where CE keeps growing). Gym's "kld" models
        therefore train like its "cat" models; the option is kept for config compatibility.

    Args:
        logits: (B, K, H, W) raw scores.
        target: (B, H, W) int64 labels, :data:`IGNORE_INDEX` for ignored pixels.
        class_weights: optional (K,) weights; pixel i is weighted by ``w[y_i]`` (as in CCE).
        eps: clip value (Keras' ``epsilon()``).

    Returns:
        Scalar float32 loss; 0 (not NaN) when every pixel is ignored.
    """
    _check_shapes(logits, target)
    num_classes = logits.shape[1]
    with torch.autocast(device_type=logits.device.type, enabled=False):
        onehot, valid = _onehot_valid(target, num_classes)
        y = onehot.clamp(eps, 1.0)
        p = torch.softmax(logits.float(), dim=1).clamp(eps, 1.0)
        per_pixel = (y * (y.log() - p.log())).sum(1)  # (B, H, W)
        pixel_w = valid.to(torch.float32)
        w = _weights_tensor(class_weights, num_classes, logits.device)
        if w is not None:
            pixel_w = (onehot * w.view(1, -1, 1, 1)).sum(1)  # w[y_i]; 0 on ignored pixels
        return _masked_mean(per_pixel, pixel_w)


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------
class _SegLoss(nn.Module):
    """Base: checks K and stores validated class weights as a buffer (follows ``.to(device)``)."""

    def __init__(self, num_classes: int, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background counts), got {num_classes}")
        self.num_classes = num_classes
        w = _weights_tensor(class_weights, num_classes, torch.device("cpu"))
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", w, persistent=False)

    def _check(self, logits: torch.Tensor) -> None:
        if logits.dim() != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"{type(self).__name__} expects logits (B, {self.num_classes}, H, W), "
                f"got {tuple(logits.shape)}"
            )


class DiceLoss(_SegLoss):
    """Module form of :func:`dice_loss` (Gym's "dice")."""

    def __init__(
        self, num_classes: int, class_weights: Sequence[float] | None = None, smooth: float = 1e-5
    ) -> None:
        super().__init__(num_classes, class_weights)
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W), (B, H, W) -> scalar."""
        self._check(logits)
        return dice_loss(logits, target, self.class_weights, self.smooth)


class CCELoss(_SegLoss):
    """Module form of :func:`cce_loss` (Gym's "cat")."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W), (B, H, W) -> scalar."""
        self._check(logits)
        return cce_loss(logits, target, self.class_weights)


class KLDLoss(_SegLoss):
    """Module form of :func:`kld_loss` (Gym's "kld"; equals CCE for hard labels)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W), (B, H, W) -> scalar."""
        self._check(logits)
        return kld_loss(logits, target, self.class_weights)


class SMPLoss(_SegLoss):
    """Wraps a ``segmentation_models_pytorch.losses`` multiclass loss: float32, no autocast.

    smp's losses already handle ``ignore_index``; this wrapper only adds the shape check and the
    float32 computation so results do not depend on the mixed-precision setting.
    """

    def __init__(self, inner: nn.Module, num_classes: int) -> None:
        super().__init__(num_classes)
        self.inner = inner

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W), (B, H, W) -> scalar."""
        self._check(logits)
        _check_shapes(logits, target)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            loss = self.inner(logits.float(), target.long())
            if loss.dim() != 0:  # smp's Lovasz returns an empty tensor for an all-ignored batch
                loss = loss.sum()
            # smp's focal averages an empty selection (NaN) when every pixel is ignored; select 0
            # then, without a host sync and without hiding NaNs that come from real pixels.
            any_valid = (target != IGNORE_INDEX).any()
            return torch.where(any_valid, loss, torch.zeros_like(loss))


class WeightedSumLoss(nn.Module):
    """``sum_name weight[name] * loss[name](logits, target)``; ``parts()`` gives each term."""

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float]) -> None:
        super().__init__()
        if set(losses) != set(weights):
            raise ValueError("losses and weights must have the same names")
        self.losses = nn.ModuleDict(dict(losses))
        self.weights = {k: float(v) for k, v in weights.items()}

    def parts(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each unweighted term, for logging."""
        return {name: fn(logits, target) for name, fn in self.losses.items()}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W), (B, H, W) -> scalar weighted sum."""
        terms = [self.weights[n] * fn(logits, target) for n, fn in self.losses.items()]
        return torch.stack(terms).sum()


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
def _smp_losses() -> ModuleType:
    """Import smp's losses on first use: the package pulls in timm & co (~4 s), which metrics-only
    users (evaluation, distributed workers) should not pay for."""
    from segmentation_models_pytorch import losses

    return losses


def _smp_weighted(loss_name: str) -> Callable[..., LossFn]:
    """A builder for smp's multiclass ``loss_name`` (``FocalLoss``, ``TverskyLoss``: alpha =
    beta = 0.5 is smp's Dice-like default) with class weights."""

    def build(num_classes: int, class_weights: Sequence[float] | None = None) -> LossFn:
        inner = getattr(_smp_losses(), loss_name)(
            mode="multiclass", ignore_index=IGNORE_INDEX,
            class_weights=list(class_weights) if class_weights is not None else None)
        return SMPLoss(inner, num_classes)

    return build


def _build_lovasz(num_classes: int, class_weights: Sequence[float] | None = None) -> LossFn:
    if class_weights is not None:
        # Refuse rather than silently drop the user's weights.
        raise ValueError("loss 'lovasz' does not support class_weights; remove them or use "
                         "another loss (dice, cce, kld, focal, tversky)")
    inner = _smp_losses().LovaszLoss(mode="multiclass", ignore_index=IGNORE_INDEX)
    return SMPLoss(inner, num_classes)


LOSS_REGISTRY: dict[str, Callable[..., LossFn]] = {
    "dice": DiceLoss,
    "cce": CCELoss,
    "cat": CCELoss,  # Gym's config name for categorical cross-entropy
    "kld": KLDLoss,
    "focal": _smp_weighted("FocalLoss"),
    "tversky": _smp_weighted("TverskyLoss"),
    "lovasz": _build_lovasz,
}
"""Loss name -> builder ``(num_classes, class_weights=None) -> nn.Module``."""


def _valid_names() -> str:
    return ", ".join(sorted(LOSS_REGISTRY))


def build_loss(
    spec: str | Mapping[str, float],
    num_classes: int,
    class_weights: Sequence[float] | None = None,
) -> nn.Module:
    """Build a loss module from a config value.

    Args:
        spec: a loss name (``"dice"``) or a weighted sum (``{"dice": 0.5, "cce": 0.5}``).
            Names are case-insensitive; see :data:`LOSS_REGISTRY`.
        num_classes: K, the number of output channels.
        class_weights: optional (K,) weights passed to every term.

    Returns:
        ``nn.Module`` with ``forward(logits (B, K, H, W), target (B, H, W)) -> scalar``; a
        :class:`WeightedSumLoss` when ``spec`` is a mapping.

    Raises:
        ValueError: unknown name (the message lists valid ones), bad weights or class weights.
    """
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name not in LOSS_REGISTRY:
            raise ValueError(f"unknown loss {spec!r}; valid losses: {_valid_names()}")
        return LOSS_REGISTRY[name](num_classes, class_weights=class_weights)
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(
            f"loss must be a name or a non-empty mapping name -> weight, got {spec!r}; "
            f"valid losses: {_valid_names()}"
        )
    modules: dict[str, nn.Module] = {}
    weights: dict[str, float] = {}
    for raw_name, raw_weight in spec.items():
        name = str(raw_name).strip().lower()
        if name not in LOSS_REGISTRY:
            raise ValueError(f"unknown loss {raw_name!r}; valid losses: {_valid_names()}")
        if name in modules:
            raise ValueError(f"loss {name!r} appears twice in {dict(spec)!r}")
        weight = float(raw_weight)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"loss weight for {name!r} must be finite and >= 0, got {raw_weight}")
        modules[name] = LOSS_REGISTRY[name](num_classes, class_weights=class_weights)
        weights[name] = weight
    if sum(weights.values()) <= 0:
        raise ValueError(f"at least one loss weight must be > 0, got {dict(spec)!r}")
    return WeightedSumLoss(modules, weights)


def gym_class_weights(pixel_counts: Sequence[int]) -> list[float]:
    """Gym's class weights ``w_c = 1 - freq_c / sum(freq)`` from per-class pixel counts.

    Rare classes get weights near 1, dominant ones near 0. With two classes the weights are
    swapped frequencies; an absent class gets weight 1.

    Args:
        pixel_counts: (K,) non-negative pixel counts per class (ignored pixels excluded).

    Returns:
        (K,) list of floats.
    """
    counts = [float(c) for c in pixel_counts]
    if not counts:
        raise ValueError("pixel_counts is empty")
    if any(c < 0 or not math.isfinite(c) for c in counts):
        raise ValueError(f"pixel_counts must be finite and >= 0, got {list(pixel_counts)}")
    total = sum(counts)
    if total <= 0:
        raise ValueError("pixel_counts sum to 0: no labelled pixels to weight")
    weights = [1.0 - c / total for c in counts]
    if sum(weights) <= 0:  # a single class holds every pixel: weights would all be 0
        raise ValueError(
            f"only one class is present in {list(pixel_counts)}; Gym weights would all be 0"
        )
    return weights
