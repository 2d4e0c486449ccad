"""PyTorch ports of Segmentation Gym's own networks (doodleverse_utils ``model_imports.py``).

* :class:`GymUNet` / :class:`GymResUNet` - ``custom_unet`` / ``custom_resunet`` (Gym's "unet" and
  "resunet"): pre-activation blocks (Dropout -> BN -> ReLU -> Conv), strided-conv downsampling,
  nearest upsampling, a 2x2 "bottleneck" stem at full resolution.
* :class:`SimpleUNet` / :class:`SimpleResUNet` - ``simple_unet`` / ``simple_resunet``:
  post-activation blocks (Conv -> ReLU -> BN, twice), max-pool downsampling.

Everything that decides numerics is copied from Keras so a trained Gym model and its port behave
alike: 'same' padding with TensorFlow's asymmetric split (extra pixel at the bottom/right), Keras
BatchNorm (momentum 0.99 == PyTorch 0.01, eps 1e-3), Glorot-uniform / He-normal kernels and zero
biases, skip concatenation order ``[upsampled, skip]``. The trainable parameter counts equal
Keras' (its "total" additionally counts BN running mean/var, which PyTorch keeps as buffers).

All models take ``(B, C, H, W)`` float input and return ``(B, K, H, W)`` logits (no softmax; the
loss and the predictor apply it). H and W must be divisible by ``2 ** levels`` (16).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from raygym.models.fused import BatchNorm2d, Dropout, up_concat, up_concat_bn_relu
from raygym.models.spec import GYM_DEFAULTS, GYM_LEVELS, DropoutType

_D = GYM_DEFAULTS  # the constructors' defaults, written once in raygym.models.spec

# Keras BatchNormalization defaults: moving = 0.99 * moving + 0.01 * batch.
KERAS_BN_MOMENTUM = 0.01
KERAS_BN_EPS = 1e-3


def keras_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding for one spatial dim: ``(before, after)``.

    Output size is ``ceil(size / stride)``; odd totals put the extra pixel *after* (bottom/right),
    which PyTorch's symmetric ``padding=`` cannot express (even kernels, or stride 2 on even sizes).
    """
    # (ceil(size / stride) - 1) * stride + kernel - size, written without a max() of sizes:
    # under torch.export (ONNX) a symbolic max nests level by level and export takes minutes
    rem = size % stride
    total = max(kernel - (stride if rem == 0 else rem), 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras ``padding="same"`` semantics (square kernel, zero padding).

    Symmetric cases use the convolution's own padding (no copy); asymmetric ones go through
    ``F.pad`` first. Input ``(B, C_in, H, W)`` -> ``(B, C_out, ceil(H/s), ceil(W/s))``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if k == 1 and s > 1:
            # Same result as a strided 1x1 conv (it only reads every s-th pixel), and avoids a
            # heap corruption in torch 2.14's CPU strided 1x1 conv on channels_last inputs.
            return F.conv2d(x[:, :, ::s, ::s], self.weight, self.bias)
        top, bottom = keras_same_padding(x.shape[-2], k, s)
        left, right = keras_same_padding(x.shape[-1], k, s)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left))
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride)


def _dropout(p: float, dropout_type: DropoutType) -> nn.Module:
    """Keras ``Dropout`` / ``SpatialDropout2D`` (whole channels) or Identity when ``p <= 0``."""
    if dropout_type not in ("standard", "spatial"):
        raise ValueError(f"dropout_type must be 'standard' or 'spatial', got {dropout_type!r}")
    if p <= 0.0:
        return nn.Identity()
    if p >= 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return nn.Dropout2d(p) if dropout_type == "spatial" else Dropout(p)


def _bn(channels: int, momentum: float, eps: float) -> nn.BatchNorm2d:
    return BatchNorm2d(channels, eps=eps, momentum=momentum)


def _check_input(x: torch.Tensor, in_channels: int, multiple: int, name: str) -> None:
    """Fail early with a fixable message instead of a shape error deep in the decoder."""
    if x.dim() != 4:
        raise ValueError(f"{name} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    c, h, w = x.shape[1:]
    if c != in_channels:
        raise ValueError(f"{name} was built for {in_channels} input channels (bands), got {c}")
    if h % multiple or w % multiple:
        nh, nw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
        raise ValueError(
            f"{name} needs height and width divisible by {multiple}, got {h}x{w}; "
            f"use a target size such as {nh}x{nw}"
        )


# --------------------------------------------------------------------------------------------
# custom_unet / custom_resunet building blocks (pre-activation)
# --------------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """Gym ``conv_block``: Dropout (input) -> BN -> ReLU -> Conv(k, stride, same, bias).

    ``(B, C_in, H, W)`` -> ``(B, f, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_channels: int, filters: int, kernel: int, stride: int = 1,
                 dropout: float = 0.0, dropout_type: DropoutType = "standard",
                 bn_momentum: float = KERAS_BN_MOMENTUM, bn_eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        self.drop = _dropout(dropout, dropout_type)
        self.bn = _bn(in_channels, bn_momentum, bn_eps)
        self.act = nn.ReLU(inplace=True)  # BN output is a fresh tensor: in-place is safe
        self.conv = SameConv2d(in_channels, filters, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.bn(self.drop(x))))

    def forward_up(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``self(up_concat(x, skip))``, a decoder block; without dropout, BN and ReLU run
        before the upsampling (:func:`up_concat_bn_relu`: same results, fewer values)."""
        if isinstance(self.drop, nn.Identity):
            fused = up_concat_bn_relu(x, skip, self.bn)
            if fused is not None:
                return self.conv(fused)
        return self(up_concat(x, skip))


class Shortcut(nn.Module):
    """Residual projection: Conv 1x1 (stride) -> BN -> ReLU, as in Gym's blocks."""

    def __init__(self, in_channels: int, filters: int, stride: int = 1,
                 bn_momentum: float = KERAS_BN_MOMENTUM, bn_eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        self.conv = SameConv2d(in_channels, filters, 1, stride)
        self.bn = _bn(filters, bn_momentum, bn_eps)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class BottleneckBlock(nn.Module):
    """Gym ``bottleneck_block`` (the stem): Conv 2x2 -> conv_block(2x2), plus a 1x1 shortcut.

    ``(B, C_in, H, W)`` -> ``(B, f, H, W)``. The 2x2 'same' convs pad one pixel bottom/right.
    """

    def __init__(self, in_channels: int, filters: int, bn_momentum: float = KERAS_BN_MOMENTUM,
                 bn_eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        self.conv = SameConv2d(in_channels, filters, 2)
        self.block = ConvBlock(filters, filters, 2, 1, 0.0, "standard", bn_momentum, bn_eps)
        self.shortcut = Shortcut(in_channels, filters, 1, bn_momentum, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.conv(x)) + self.shortcut(x)


class ResBlock(nn.Module):
    """Gym ``res_block``: conv_block(stride) -> conv_block(1), plus a strided 1x1 shortcut.

    ``(B, C_in, H, W)`` -> ``(B, f, ceil(H/stride), ceil(W/stride))``. Both conv_blocks get the
    same dropout, as in Gym.
    """

    def __init__(self, in_channels: int, filters: int, kernel: int, stride: int = 1,
                 dropout: float = 0.0, dropout_type: DropoutType = "standard",
                 bn_momentum: float = KERAS_BN_MOMENTUM, bn_eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        self.block1 = ConvBlock(in_channels, filters, kernel, stride, dropout, dropout_type,
                                bn_momentum, bn_eps)
        self.block2 = ConvBlock(filters, filters, kernel, 1, dropout, dropout_type,
                                bn_momentum, bn_eps)
        self.shortcut = Shortcut(in_channels, filters, stride, bn_momentum, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block2(self.block1(x))

    def forward_up(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``self(up_concat(x, skip))``, a decoder block (the shortcut needs the concatenation
        itself, so nothing moves before the upsampling)."""
        return self(up_concat(x, skip))


def _keras_init(module: nn.Module, kernel_init: Literal["glorot_uniform", "he_normal"]) -> None:
    """Keras default initialisers: kernels as named, biases zero (BN already gamma=1, beta=0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if kernel_init == "glorot_uniform":
                nn.init.xavier_uniform_(m.weight)
            else:
                # Keras he_normal: truncated normal (at 2 std), std = sqrt(2 / fan_in)
                fan_in = m.weight[0].numel()
                std = math.sqrt(2.0 / fan_in) / 0.87962566103423978  # truncation correction
                nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class _GymCustomNet(nn.Module):
    """Shared skeleton of ``custom_unet`` and ``custom_resunet``; ``residual`` picks the block.

    Layout (f0 = ``filters``; resolution in brackets):
      e1 = bottleneck_block(f0) [H]; e2..e5 = block(2f0, 4f0, 8f0, 16f0, stride) [H/2..H/16];
      bridge = conv_block(16f0) x 2 [H/16];
      decoder: 4 x (nearest up x2 -> concat [up, skip e4/e3/e2/e1] -> block) with
      16f0, 8f0, 4f0, 2f0 filters; head conv 1x1 -> K logits.
    Dropout: ``dropout`` on e2, increased by ``dropout_change_per_layer`` for e3, e4, e5 and the
    bridge; the decoder uses it (decreasing again) only if ``dropout_on_upsampling``.
    """

    levels = GYM_LEVELS  # stride-2 stages: inputs must be divisible by 2**levels
    residual = False
    encoder_modules = ("e1", "e2", "e3", "e4", "e5")  # the contracting path

    def __init__(self, in_channels: int = 3, num_classes: int = 2, filters: int = _D.filters,
                 kernel: int = _D.kernel, stride: int = _D.stride, dropout: float = _D.dropout,
                 dropout_change_per_layer: float = _D.dropout_change_per_layer,
                 dropout_type: DropoutType = _D.dropout_type,
                 dropout_on_upsampling: bool = _D.dropout_on_upsampling,
                 bn_momentum: float = KERAS_BN_MOMENTUM, bn_eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1 or filters < 1 or kernel < 1:
            raise ValueError(
                "in_channels, num_classes, filters and kernel must be >= 1, got "
                f"{in_channels}, {num_classes}, {filters}, {kernel}"
            )
        if stride != 2:
            # The decoder upsamples x2 per level; any other stride breaks the skip concatenation
            # (Gym's Keras graph fails the same way).
            raise ValueError(f"stride must be 2 (the decoder upsamples by 2), got {stride}")
        _dropout(dropout, dropout_type)  # validate early
        self.in_channels, self.num_classes = in_channels, num_classes
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}

        def block(cin: int, f: int, s: int, p: float) -> nn.Module:
            cls = ResBlock if self.residual else ConvBlock
            return cls(cin, f, kernel, s, p, dropout_type, **bn)

        f0 = filters
        drops = [dropout + i * dropout_change_per_layer for i in range(4)]  # e2, e3, e4, e5
        self.e1 = BottleneckBlock(in_channels, f0, **bn)
        self.e2 = block(f0, 2 * f0, stride, drops[0])
        self.e3 = block(2 * f0, 4 * f0, stride, drops[1])
        self.e4 = block(4 * f0, 8 * f0, stride, drops[2])
        self.e5 = block(8 * f0, 16 * f0, stride, drops[3])
        self.b1 = ConvBlock(16 * f0, 16 * f0, kernel, 1, drops[3], dropout_type, **bn)
        self.b2 = ConvBlock(16 * f0, 16 * f0, kernel, 1, drops[3], dropout_type, **bn)
        up = drops[::-1] if dropout_on_upsampling else [0.0] * 4
        self.d4 = block(16 * f0 + 8 * f0, 16 * f0, 1, up[0])
        self.d3 = block(16 * f0 + 4 * f0, 8 * f0, 1, up[1])
        self.d2 = block(8 * f0 + 2 * f0, 4 * f0, 1, up[2])
        self.d1 = block(4 * f0 + f0, 2 * f0, 1, up[3])
        self.head = SameConv2d(2 * f0, num_classes, 1)
        _keras_init(self, "glorot_uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float -> ``(B, K, H, W)`` logits; H, W divisible by 16."""
        _check_input(x, self.in_channels, 2**self.levels, type(self).__name__)
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        e4 = self.e4(e3)
        b = self.b2(self.b1(self.e5(e4)))
        d = self.d4.forward_up(b, e4)
        d = self.d3.forward_up(d, e3)
        d = self.d2.forward_up(d, e2)
        d = self.d1.forward_up(d, e1)
        return self.head(d)


class GymUNet(_GymCustomNet):
    """Gym ``custom_unet`` ("unet"): every encoder/decoder stage is one pre-activation conv_block.

    ``(B, C, H, W)`` -> ``(B, K, H, W)`` logits. 3 bands, 4 classes, filters 8, kernel 7:
    4,004,468 trainable parameters, exactly as Keras.
    """

    residual = False


class GymResUNet(_GymCustomNet):
    """Gym ``custom_resunet`` ("resunet"): encoder/decoder stages are res_blocks; the bridge
    stays two conv_blocks. ``(B, C, H, W)`` -> ``(B, K, H, W)`` logits.
    """

    residual = True


# --------------------------------------------------------------------------------------------
# simple_unet / simple_resunet (post-activation, max-pool)
# --------------------------------------------------------------------------------------------
class DoubleConv(nn.Module):
    """Gym ``conv2d_block``: Conv(k, no bias) -> ReLU -> BN -> Dropout -> Conv -> ReLU -> BN.

    ``(B, C_in, H, W)`` -> ``(B, f, H, W)``. Gym calls it with its default 2x2 kernel.
    """

    def __init__(self, in_channels: int, filters: int, kernel: int = 2, dropout: float = 0.0,
                 dropout_type: DropoutType = "standard", bn_momentum: float = KERAS_BN_MOMENTUM,
                 bn_eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        # bias=False: Keras uses use_bias=not use_batch_norm, and Gym always enables BN.
        self.conv1 = SameConv2d(in_channels, filters, kernel, bias=False)
        self.act1 = nn.ReLU(inplace=True)
        self.bn1 = _bn(filters, bn_momentum, bn_eps)
        self.drop = _dropout(dropout, dropout_type)
        self.conv2 = SameConv2d(filters, filters, kernel, bias=False)
        self.act2 = nn.ReLU(inplace=True)
        self.bn2 = _bn(filters, bn_momentum, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.bn1(self.act1(self.conv1(x))))
        return self.bn2(self.act2(self.conv2(x)))


class ResDoubleConv(nn.Module):
    """Gym ``res_conv2d_block``: two conv2d_blocks plus a Conv 1x1 (bias) -> BN -> ReLU shortcut.

    ``(B, C_in, H, W)`` -> ``(B, f, H, W)``.
    """

    def __init__(self, in_channels: int, filters: int, kernel: int = 2, dropout: float = 0.0,
                 dropout_type: DropoutType = "standard", bn_momentum: float = KERAS_BN_MOMENTUM,
                 bn_eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        self.block1 = DoubleConv(in_channels, filters, kernel, dropout, dropout_type,
                                 bn_momentum, bn_eps)
        self.block2 = DoubleConv(filters, filters, kernel, dropout, dropout_type,
                                 bn_momentum, bn_eps)
        self.shortcut = Shortcut(in_channels, filters, 1, bn_momentum, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block2(self.block1(x))


class _GymSimpleNet(nn.Module):
    """Shared skeleton of ``simple_unet`` / ``simple_resunet``.

    ``num_layers`` levels of [block(f) -> skip -> maxpool 2], filters doubling; a plain
    conv2d_block bridge; the decoder halves filters per level: nearest up x2 -> concat
    ``[up, skip]`` -> block; head conv 1x1 -> K logits. Gym uses num_layers=4 and 2x2 convs.
    """

    residual = False
    encoder_modules = ("down",)  # the contracting path

    # kernel 2: Gym's simple nets hard-code 2x2 convolutions (a config passes model.kernel)
    def __init__(self, in_channels: int = 3, num_classes: int = 2, filters: int = _D.filters,
                 kernel: int = 2, num_layers: int = GYM_LEVELS, dropout: float = _D.dropout,
                 dropout_change_per_layer: float = _D.dropout_change_per_layer,
                 dropout_type: DropoutType = _D.dropout_type,
                 dropout_on_upsampling: bool = _D.dropout_on_upsampling,
                 bn_momentum: float = KERAS_BN_MOMENTUM, bn_eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        if min(in_channels, num_classes, filters, kernel, num_layers) < 1:
            raise ValueError(
                "in_channels, num_classes, filters, kernel and num_layers must be >= 1, got "
                f"{in_channels}, {num_classes}, {filters}, {kernel}, {num_layers}"
            )
        _dropout(dropout, dropout_type)
        self.in_channels, self.num_classes, self.levels = in_channels, num_classes, num_layers
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        block_cls = ResDoubleConv if self.residual else DoubleConv

        self.down = nn.ModuleList()
        cin, f = in_channels, filters
        for level in range(num_layers):
            p = dropout + level * dropout_change_per_layer
            self.down.append(block_cls(cin, f, kernel, p, dropout_type, **bn))
            cin, f = f, f * 2
        p = dropout + num_layers * dropout_change_per_layer
        self.bridge = DoubleConv(cin, f, kernel, p, dropout_type, **bn)
        if not dropout_on_upsampling:
            dropout, dropout_change_per_layer = 0.0, 0.0
            p = 0.0
        self.up = nn.ModuleList()
        cin = f
        for _ in range(num_layers):
            f //= 2
            p -= dropout_change_per_layer
            self.up.append(block_cls(cin + f, f, kernel, p, dropout_type, **bn))
            cin = f
        self.head = SameConv2d(cin, num_classes, 1)
        _keras_init(self, "he_normal")
        # Only conv2d_block passes he_normal; the head and residual 1x1 convs keep Keras' default.
        for m in self.modules():
            if isinstance(m, Shortcut):
                nn.init.xavier_uniform_(m.conv.weight)
        nn.init.xavier_uniform_(self.head.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float -> ``(B, K, H, W)`` logits; H, W divisible by 2**num_layers."""
        _check_input(x, self.in_channels, 2**self.levels, type(self).__name__)
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bridge(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = block(up_concat(x, skip))
        return self.head(x)


class SimpleUNet(_GymSimpleNet):
    """Gym ``simple_unet``. ``(B, C, H, W)`` -> ``(B, K, H, W)`` logits."""

    residual = False


class SimpleResUNet(_GymSimpleNet):
    """Gym ``simple_resunet`` (residual encoder/decoder blocks, plain bridge).
    ``(B, C, H, W)`` -> ``(B, K, H, W)`` logits."""

    residual = True
