"""raygym.models.fused: the NHWC up-concat gives PyTorch's numbers (forward, gradients, running
stats, whole networks in both precisions) and is used only where :func:`use_fast_path` says."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from raygym.models import build_model
from raygym.models.fused import (
    BatchNorm2d,
    Dropout,
    fast_paths,
    up_concat,
    up_concat_bn_relu,
    use_fast_path,
)

CL = torch.channels_last


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: two OpenMP threads only wait on each other, and on a busy machine every
    op's barrier waits for a time slice (this module: ~17 s with 2 threads, ~2.5 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def nhwc(*shape: int, dtype: torch.dtype = torch.float32, grad: bool = True) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype).contiguous(memory_format=CL).requires_grad_(grad)


def stock_up_concat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_up_concat_equals_interpolate_and_cat(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x, skip = nhwc(2, 5, 4, 6, dtype=dtype), nhwc(2, 3, 8, 12, dtype=dtype)
    grad = torch.randn(2, 8, 8, 12, dtype=dtype)
    out = up_concat(x, skip)
    assert type(out.grad_fn).__name__ == "_UpConcatNHWCBackward"  # the fast path ran
    assert out.is_contiguous(memory_format=CL)
    out.backward(grad)
    gx, gs = x.grad, skip.grad
    assert gx is not None and gs is not None
    assert gx.is_contiguous(memory_format=CL) and gs.is_contiguous(memory_format=CL)
    x.grad = skip.grad = None
    ref = stock_up_concat(x, skip)
    ref.backward(grad)
    # the same additions in the same (float32) precision: bit-identical
    assert torch.equal(out, ref)
    assert torch.equal(gx, x.grad) and torch.equal(gs, skip.grad)


def test_up_concat_gradcheck_float64() -> None:
    torch.manual_seed(0)
    x, skip = nhwc(1, 2, 2, 3, dtype=torch.float64), nhwc(1, 3, 4, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(up_concat, (x, skip))


def test_fast_path_only_where_it_pays() -> None:
    x, skip = nhwc(1, 2, 4, 4), nhwc(1, 3, 8, 8)
    assert use_fast_path(x, skip)
    with fast_paths(False):
        assert not use_fast_path(x, skip)
    assert use_fast_path(x, skip)  # restored on leaving
    with torch.no_grad():  # inference and export keep PyTorch's ops
        assert not use_fast_path(x, skip)
    assert not use_fast_path(x.detach(), skip.detach())
    assert not use_fast_path(x.contiguous(), skip.contiguous())  # NCHW
    assert not use_fast_path(x, skip.to(torch.bfloat16))  # mixed dtypes: cat promotes
    nchw = up_concat(x.detach().contiguous().requires_grad_(), skip.contiguous())
    assert type(nchw.grad_fn).__name__ == "CatBackward0"


def autograd_nodes(out: torch.Tensor) -> list[str]:
    """Type names of every node in ``out``'s backward graph."""
    seen, todo, names = set(), [out.grad_fn], []
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        todo.extend(fn for fn, _ in node.next_functions)
    return names


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("arch", "precision", "layout", "threads"), [
    ("gym_unet", "fp32", "cl", 1), ("gym_unet", "bf16", "cl", 1), ("gym_resunet", "fp32", "cl", 1),
    ("simple_unet", "fp32", "cl", 1), ("gym_unet", "fp32", "nchw", 1),
    ("gym_unet", "fp32", "cl", 2), ("gym_resunet", "fp32", "cl", 2), ("gym_unet", "bf16", "cl", 2),
])
def test_network_with_fast_paths_matches_stock(arch: str, precision: str, layout: str,
                                               threads: int) -> None:
    """The unfused model's state_dict loads into the fused run unchanged; outputs, gradients
    and BN running stats agree in train and eval mode."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    stock = build_model(arch, in_channels=3, num_classes=3, filters=2, kernel=3, dropout=0.0)
    fused = build_model(arch, in_channels=3, num_classes=3, filters=2, kernel=3, dropout=0.0)
    assert fused.state_dict().keys() == stock.state_dict().keys()
    fused.load_state_dict(stock.state_dict())
    fmt = CL if layout == "cl" else torch.contiguous_format
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=fmt)
    tol = {"rtol": 1e-5, "atol": 1e-5} if precision == "fp32" else {"rtol": 2e-2, "atol": 2e-2}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    outs = {}
    for name, model, on in (("stock", stock, False), ("fused", fused, True)):
        model.to(memory_format=fmt).train()
        with fast_paths(on), autocast:
            out = model(x)
        # the decoder's up-concats ran on the fast path exactly where they should
        nodes = autograd_nodes(out)
        assert nodes.count("_UpConcatNHWCBackward") == (4 if on and layout == "cl" else 0)
        # and the batch norms' backward only for NHWC at more than one thread
        widened = on and layout == "cl" and threads > 1
        assert (nodes.count("_BatchNormNHWCBackward") > 0) == widened
        out.float().square().mean().backward()
        model.eval()
        with fast_paths(on), autocast, torch.no_grad():
            pred = model(x)
        outs[name] = (out.float(), pred.float(), grads(model),
                      {k: v for k, v in model.state_dict().items() if "running" in k})
    (o1, p1, g1, s1), (o2, p2, g2, s2) = outs["stock"], outs["fused"]
    torch.testing.assert_close(o2, o1, **tol)
    torch.testing.assert_close(p2, p1, **tol)
    assert g1.keys() == g2.keys() and len(g1) > 0
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], **tol, msg=lambda m, k=k: f"{k}: {m}")
    assert len(s1) > 0
    for k in s1:
        torch.testing.assert_close(s2[k], s1[k], **tol)


@pytest.mark.parametrize(("channels", "dtype"), [
    (2, torch.float32), (8, torch.float32), (12, torch.float32), (40, torch.float32),
    (8, torch.bfloat16),
])
def test_batch_norm_backward_over_widened_rows_equals_pytorch(channels: int,
                                                              dtype: torch.dtype) -> None:
    """At 2 threads, NHWC, C not a multiple of 16: raygym's backward runs, and output,
    input / weight / bias gradients, running statistics and the batch count equal
    ``nn.BatchNorm2d``'s, over two training steps (bf16 input, fp32 parameters as under
    autocast: to bf16's rounding)."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    stock = torch.nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)
    ours = BatchNorm2d(channels, eps=1e-3, momentum=0.01)
    with torch.no_grad():
        stock.weight.uniform_(0.5, 1.5)
        stock.bias.uniform_(-0.5, 0.5)
    ours.load_state_dict(stock.state_dict())
    for _ in range(2):
        x = (3 * torch.randn(2, channels, 6, 10) + 1).to(dtype).contiguous(memory_format=CL)
        grad = torch.randn(2, channels, 6, 10).to(dtype)
        results = []
        for bn in (stock, ours):
            xi = x.detach().clone().requires_grad_(True)
            out = bn(xi)
            names = autograd_nodes(out)
            out.backward(grad)
            results.append((out, xi.grad, bn.weight.grad.clone(), bn.bias.grad.clone(), names))
        (o1, dx1, dw1, db1, n1), (o2, dx2, dw2, db2, n2) = results
        assert "_BatchNormNHWCBackward" in n2 and "_BatchNormNHWCBackward" not in n1
        assert o2.is_contiguous(memory_format=CL) and dx2.is_contiguous(memory_format=CL)
        assert dx2.dtype == dtype
        torch.testing.assert_close(o2, o1)
        # bf16: PyTorch rounds even the weight and bias gradients to bf16 (raygym's are the
        # float32 sums): agreement to bf16's unit in the last place
        tol = ({"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else
               {"rtol": 1.6e-2, "atol": 2e-3})
        torch.testing.assert_close(dx2, dx1, **tol)
        torch.testing.assert_close(dw2, dw1, **tol)
        torch.testing.assert_close(db2, db1, **tol)
    for key, value in stock.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, msg=key)


@pytest.mark.parametrize(("case", "threads", "channels", "dtype", "layout", "training"), [
    ("one thread: no false sharing", 1, 8, torch.float32, CL, True),
    ("C a multiple of 16", 2, 32, torch.float32, CL, True),
    ("bf16 with 16 channels or more", 2, 40, torch.bfloat16, CL, True),
    ("NCHW", 2, 8, torch.float32, torch.contiguous_format, True),
    ("eval", 2, 8, torch.float32, CL, False),
])
def test_batch_norm_keeps_pytorchs_backward_elsewhere(case: str, threads: int, channels: int,
                                                      dtype: torch.dtype,
                                                      layout: torch.memory_format,
                                                      training: bool) -> None:
    torch.set_num_threads(threads)
    bn = BatchNorm2d(channels).to(dtype).train(training)
    x = torch.randn(2, channels, 4, 4, dtype=dtype).contiguous(memory_format=layout)
    out = bn(x.requires_grad_(True))
    assert "_BatchNormNHWCBackward" not in autograd_nodes(out), case


@pytest.mark.parametrize(("threads", "c1", "c2", "dtype"), [
    (1, 12, 4, torch.float32), (2, 12, 4, torch.float32), (2, 32, 8, torch.float32),
    (2, 16, 16, torch.float32), (2, 12, 4, torch.bfloat16),
])
def test_up_concat_bn_relu_before_the_upsampling_equals_after(threads: int, c1: int, c2: int,
                                                              dtype: torch.dtype) -> None:
    """BN + ReLU of the decoder's input on ``x`` and ``skip`` before the nearest x2 equal
    ``relu(bn(cat(up(x), skip)))``: output, gradients of x, skip, weight and bias, running
    statistics (each value of x counted four times) and the batch count, over two steps, at 1
    and 2 threads (the widened backward) and in bf16 (to its rounding)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    stock = torch.nn.BatchNorm2d(c1 + c2, eps=1e-3, momentum=0.01)
    with torch.no_grad():
        stock.weight.uniform_(0.5, 1.5)
        stock.bias.uniform_(-0.5, 0.5)
    ours = BatchNorm2d(c1 + c2, eps=1e-3, momentum=0.01)
    ours.load_state_dict(stock.state_dict())
    tol = ({"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else
           {"rtol": 1.6e-2, "atol": 2e-2})
    for _ in range(2):
        x = (2 * torch.randn(2, c1, 4, 6) + 1).to(dtype).contiguous(memory_format=CL)
        skip = torch.randn(2, c2, 8, 12).to(dtype).contiguous(memory_format=CL)
        grad = torch.randn(2, c1 + c2, 8, 12).to(dtype)
        results = []
        for bn, fn in ((stock, lambda a, b, m: F.relu(m(stock_up_concat(a, b)))),
                       (ours, up_concat_bn_relu)):  # type: ignore[assignment]
            xi, si = x.clone().requires_grad_(True), skip.clone().requires_grad_(True)
            out = fn(xi, si, bn)
            top = type(out.grad_fn).__name__
            out.backward(grad)
            results.append((out, xi.grad, si.grad, bn.weight.grad.clone(),
                            bn.bias.grad.clone(), top))
            bn.weight.grad = bn.bias.grad = None
        (o1, dx1, ds1, dw1, db1, top1), (o2, dx2, ds2, dw2, db2, top2) = results
        # ours upsamples last: BN and ReLU ran on x and skip, before the up-concat
        assert top2 == "_UpConcatNHWCBackward" and top1 != top2
        assert o2.is_contiguous(memory_format=CL) and o2.dtype == dtype
        for got, want in ((o2, o1), (dx2, dx1), (ds2, ds1), (dw2, dw1), (db2, db1)):
            torch.testing.assert_close(got, want, **tol)
    for key, value in stock.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, msg=key)


@pytest.mark.parametrize("grad", [True, False])
def test_up_concat_bn_relu_in_eval_mode_equals_after(grad: bool) -> None:
    """Eval mode (running statistics), with and without autograd: BN + ReLU before the
    upsampling give the same numbers; NCHW is left to the caller (None)."""
    torch.manual_seed(0)
    bn = BatchNorm2d(12)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
    bn.eval()
    x, skip = nhwc(2, 8, 4, 4, grad=grad), nhwc(2, 4, 8, 8, grad=grad)
    with torch.set_grad_enabled(grad):
        out = up_concat_bn_relu(x, skip, bn)
        ref = F.relu(bn(stock_up_concat(x, skip)))
        assert up_concat_bn_relu(x.contiguous(), skip.contiguous(), bn) is None
    assert out is not None and out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref)
    if grad:
        assert type(out.grad_fn).__name__ == "_UpConcatNHWCBackward"
        out.backward(torch.ones_like(out))
        dx = x.grad.clone()
        x.grad = None
        ref.backward(torch.ones_like(ref))
        torch.testing.assert_close(dx, x.grad)


@pytest.mark.parametrize("threads", [1, 2])
def test_dropout_mask_keeps_1_minus_p_scaled_repeatably(threads: int) -> None:
    """Fast path (float32 NHWC, training): every value is dropped or scaled by 1 / (1 - p), the
    kept share is 1 - p (binomial, 5 SD), the gradient is grad * mask, the same seed gives the
    same mask (at 2 threads: drawn in two parts) and the next call another one."""
    torch.set_num_threads(threads)
    p = 0.25
    drop = Dropout(p).train()
    x = (torch.rand(2, 8, 128, 128) + 0.5).contiguous(memory_format=CL).requires_grad_(True)
    torch.manual_seed(7)
    out = drop(x)
    again = drop(x)
    torch.manual_seed(7)
    same = drop(x)
    assert out.is_contiguous(memory_format=CL)
    mask = out.detach() / x.detach()
    kept = mask != 0
    torch.testing.assert_close(mask[kept], torch.full_like(mask[kept], 1 / (1 - p)))
    n = x.numel()
    assert abs(kept.sum().item() - (1 - p) * n) < 5 * (n * p * (1 - p)) ** 0.5
    torch.testing.assert_close(same, out, rtol=0, atol=0)
    assert not torch.equal(again, out)
    grad = torch.randn_like(x)
    out.backward(grad)
    torch.testing.assert_close(x.grad, grad * mask)


@pytest.mark.parametrize(("case", "dtype", "layout", "training"), [
    ("bf16", torch.bfloat16, CL, True), ("NCHW", torch.float32, torch.contiguous_format, True),
    ("eval", torch.float32, CL, False),
])
def test_dropout_is_pytorchs_elsewhere(case: str, dtype: torch.dtype,
                                       layout: torch.memory_format, training: bool) -> None:
    """Off the fast path the same seed gives PyTorch's own mask."""
    x = torch.rand(2, 8, 16, 16, dtype=dtype).contiguous(memory_format=layout)
    x.requires_grad_(True)
    outs = []
    for drop in (Dropout(0.25), torch.nn.Dropout(0.25)):
        torch.manual_seed(3)
        outs.append(drop.train(training)(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0, msg=case)
