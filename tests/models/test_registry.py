"""Model registry (Gym + smp), local encoder weights, input-size rules and the summary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from raygym.models import (
    GYM_MODELS,
    MODEL_REGISTRY,
    SMP_MODELS,
    build_model,
    format_summary,
    list_models,
    min_input_size,
    model_params,
    model_summary,
    requires_multiple_of,
)


@pytest.fixture(autouse=True)
def _two_threads() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def tiny_params(name: str) -> dict[str, object]:
    """Small but real configurations so every architecture runs in well under a second."""
    if name in GYM_MODELS:
        return {"filters": 2}
    return {"encoder": "resnet18"}


def test_list_models() -> None:
    names = list_models()
    assert names[:4] == ["gym_unet", "gym_resunet", "simple_unet", "simple_resunet"]
    assert set(names) == set(MODEL_REGISTRY) == GYM_MODELS | SMP_MODELS
    assert {"unet", "unetplusplus", "fpn", "pspnet", "deeplabv3", "deeplabv3plus", "linknet",
            "manet", "pan", "upernet", "segformer"} <= SMP_MODELS
    assert "dpt" not in names


@pytest.mark.parametrize("name", list_models())
def test_forward_every_model_and_band_count(name: str) -> None:
    size = max(64, min_input_size(name))
    for bands in (1, 3, 4):
        torch.manual_seed(0)
        model = build_model(name, in_channels=bands, num_classes=3, **tiny_params(name)).eval()
        with torch.no_grad():
            out = model(torch.randn(2, bands, size, size))
        assert out.shape == (2, 3, size, size), (bands, out.shape)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_backward_every_model(name: str) -> None:
    size = max(64, min_input_size(name))
    model = build_model(name, in_channels=3, num_classes=2, **tiny_params(name)).train()
    model(torch.randn(2, 3, size, size)).square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_segformer_with_mit_encoder() -> None:
    model = build_model("segformer", in_channels=4, num_classes=5, encoder="mit_b0").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 4, 64, 64)).shape == (1, 5, 64, 64)


def test_gym_params_pass_through() -> None:
    model = build_model("gym_unet", in_channels=3, num_classes=4, filters=8, kernel=7)
    assert sum(p.numel() for p in model.parameters()) == 4_004_468


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'segnet'") as info:
        build_model("segnet", in_channels=3, num_classes=2)
    for name in ("gym_unet", "gym_resunet", "unet", "segformer"):
        assert name in str(info.value)


def test_unknown_params_list_valid_ones() -> None:
    with pytest.raises(ValueError, match="'filter'") as info:
        build_model("gym_unet", in_channels=3, num_classes=2, filter=8)
    assert "filters" in str(info.value) and "dropout_type" in str(info.value)
    with pytest.raises(ValueError, match="'filters'") as info:
        build_model("fpn", in_channels=3, num_classes=2, filters=8)
    assert "encoder" in str(info.value) and "decoder_dropout" in str(info.value)


def test_smp_passthrough_and_bad_encoder() -> None:
    model = build_model("unet", in_channels=3, num_classes=2, encoder="resnet18",
                        encoder_depth=4, decoder_channels=[64, 32, 16, 8])
    assert model.segmentation_head[0].in_channels == 8
    with pytest.raises(ValueError, match="unknown encoder 'resnet19'.*resnet18"):
        build_model("unet", in_channels=3, num_classes=2, encoder="resnet19")


def test_never_downloads_weights() -> None:
    with pytest.raises(ValueError, match="never downloads"):
        build_model("unet", in_channels=3, num_classes=2, encoder_weights="imagenet")


def test_local_encoder_weights_safetensors_and_band_adaptation(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = build_model("fpn", in_channels=3, num_classes=2, encoder="resnet18")
    path = tmp_path / "enc.safetensors"
    save_file({k: v.contiguous() for k, v in src.encoder.state_dict().items()}, str(path))

    four = build_model("fpn", in_channels=4, num_classes=2, encoder_weights=str(path))
    w3, w4 = src.encoder.conv1.weight, four.encoder.conv1.weight
    assert w4.shape[1] == 4
    torch.testing.assert_close(w4[:, :3], w3 * 0.75)
    torch.testing.assert_close(w4[:, 3], w3[:, 0] * 0.75)  # bands cycle through RGB kernels
    torch.testing.assert_close(four.encoder.layer4[1].conv2.weight,
                               src.encoder.layer4[1].conv2.weight)


def test_local_weights_from_full_model_torch_file(tmp_path: Path) -> None:
    src = build_model("unet", in_channels=3, num_classes=2)
    path = tmp_path / "model.pt"
    torch.save({"state_dict": src.state_dict()}, path)
    one = build_model("unet", in_channels=1, num_classes=2, encoder_weights=path)
    torch.testing.assert_close(one.encoder.conv1.weight,
                               src.encoder.conv1.weight.sum(1, keepdim=True))
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="do not fit encoder"):
        build_model("unet", in_channels=3, num_classes=2, encoder_weights=bad)


def test_requires_multiple_of() -> None:
    assert requires_multiple_of("gym_unet") == 16
    assert requires_multiple_of("simple_resunet", num_layers=3) == 8
    assert requires_multiple_of("unet") == 32
    assert requires_multiple_of("unet", encoder_depth=4) == 16
    assert requires_multiple_of("pspnet") == 8
    assert min_input_size("pan") == 128
    with pytest.raises(ValueError, match="unknown model"):
        requires_multiple_of("nope")


@pytest.mark.parametrize("name", sorted(SMP_MODELS))
def test_requires_multiple_of_matches_smp_encoder(name: str) -> None:
    model = build_model(name, in_channels=3, num_classes=2)
    assert requires_multiple_of(name) == model.encoder.output_stride


def test_model_params_lists_defaults() -> None:
    gym = model_params("gym_resunet")
    assert gym["filters"] == 8 and gym["kernel"] == 7 and gym["dropout_type"] == "standard"
    smp_params = model_params("deeplabv3plus")
    assert smp_params["encoder"] == "resnet18" and smp_params["encoder_weights"] is None
    assert "decoder_atrous_rates" in smp_params and "classes" not in smp_params


def test_summary_counts_and_flops() -> None:
    model = build_model("gym_unet", in_channels=3, num_classes=4, filters=4, kernel=7).train()
    s = model_summary(model, (3, 64, 64))
    assert model.training  # restored
    assert s.trainable_params == sum(p.numel() for p in model.parameters()) == 1_001_788
    assert sum(r.params for r in s.rows) == s.trainable_params
    assert s.output_shape == (4, 64, 64)
    assert s.flops_per_image > 0 and s.gflops == s.flops_per_image / 1e9
    assert s.buffer_elements == 216 * 4
    row = {r.name: r for r in s.rows}["e2.conv"]
    assert row.output_shape == (8, 32, 32) and row.params == 4 * 8 * 49 + 8
    text = format_summary(s)
    assert "1,001,788" in text and "e2.conv" in text and "GFLOPs" in text


def test_summary_of_a_channels_last_model_has_every_layers_shape() -> None:
    """In channels_last the decoders' fast path skips their BN / ReLU modules; the summary
    runs PyTorch's own ops, so every leaf still gets its output shape."""
    model = build_model("gym_unet", in_channels=3, num_classes=4, filters=4, kernel=3,
                        dropout=0.1).to(memory_format=torch.channels_last)
    s = model_summary(model, (3, 64, 64))
    assert [r.name for r in s.rows if r.output_shape == ()] == []
    assert {r.name: r for r in s.rows}["d1.act"].output_shape == (20, 64, 64)


def test_summary_flops_of_single_conv() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    s = model_summary(conv, (3, 16, 16))
    assert s.flops_per_image == 2 * 3 * 8 * 9 * 16 * 16  # multiply-add counts as 2
    assert "Trainable params: 224" in format_summary(s, layers=False)


def test_unused_encoder_stages_are_frozen() -> None:
    """PSPNet's default encoder_depth=3 never runs resnet18's layer3/layer4; efficientnet keeps
    an unused conv_head. They must not count as trainable (DDP would fail on them)."""
    psp = build_model("pspnet", in_channels=3, num_classes=2)
    frozen = {n.split(".")[1] for n, p in psp.named_parameters() if not p.requires_grad}
    assert frozen == {"layer3", "layer4"}
    assert "encoder.layer4.1.conv2.weight" in psp.state_dict()  # keys kept for weight loading
    eff = build_model("fpn", in_channels=3, num_classes=2, encoder="efficientnet-b0")
    assert not eff.encoder._conv_head.weight.requires_grad
    shallow = build_model("unet", in_channels=3, num_classes=2, encoder_depth=3)
    assert shallow(torch.zeros(1, 3, 32, 32)).shape == (1, 2, 32, 32)  # decoder_channels trimmed


def test_a_gym_model_is_built_and_trained_without_importing_smp() -> None:
    """smp (+ timm, torchvision) costs seconds of CPU per process: a Gym trial never pays it,
    and the registry still lists smp's architectures when asked."""
    import subprocess
    import sys

    code = ("import sys, torch; from raygym.models import build_model, model_params, "
            "requires_multiple_of; from raygym.train.loop import build_loss_for; "
            "m = build_model('gym_resunet', in_channels=4, num_classes=3, filters=4, kernel=3); "
            "m(torch.zeros(1, 4, 32, 32)).sum().backward(); "
            "model_params('gym_unet'); requires_multiple_of('simple_unet'); "
            "print('segmentation_models_pytorch' in sys.modules); "
            "from raygym.models import SMP_MODELS; print(sorted(SMP_MODELS)[:2])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["False", "['deeplabv3', 'deeplabv3plus']"]
