"""The builders' keywords declared without torch: they are the Gym constructors' signatures,
the config schema's ``model`` keys and defaults, and what the registry passes on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from raygym.config import ModelConfig
from raygym.models import GymUNet, build_model, list_models, model_params, requires_multiple_of
from raygym.models.spec import (
    DEFAULT_ENCODER,
    GYM_ARCHS,
    GYM_DEFAULTS,
    GYM_INPUT_MULTIPLE,
    GymParams,
)

BN = ("bn_momentum", "bn_eps")  # Keras constants of the constructors, never configured


def _signature(name: str) -> dict[str, object]:
    return {k: v for k, v in model_params(name).items() if k not in BN}


def test_gym_archs_are_the_registrys_gym_models_in_order() -> None:
    assert tuple(list_models()[: len(GYM_ARCHS)]) == GYM_ARCHS
    for name in GYM_ARCHS:
        assert requires_multiple_of(name) == GYM_INPUT_MULTIPLE, name


@pytest.mark.parametrize("name", ["gym_unet", "gym_resunet"])
def test_custom_net_signature_is_gym_params(name: str) -> None:
    assert _signature(name) == GYM_DEFAULTS.model_dump()


@pytest.mark.parametrize("name", ["simple_unet", "simple_resunet"])
def test_simple_net_signature_differs_only_where_gym_did(name: str) -> None:
    """Gym's simple nets: 2x2 kernels by default, max pooling (no stride), num_layers levels."""
    expected = {**GYM_DEFAULTS.model_dump(exclude={"stride"}), "kernel": 2, "num_layers": 4}
    assert _signature(name) == expected


def test_smp_default_encoder_is_the_registrys() -> None:
    assert ModelConfig(arch="unet").encoder == DEFAULT_ENCODER
    assert model_params("unet")["encoder"] == DEFAULT_ENCODER


def test_stride_is_validated_as_the_network_accepts_it() -> None:
    with pytest.raises(ValueError, match="stride must be 2"):
        GymUNet(in_channels=3, num_classes=2, stride=1)
    for stride in (1, 3, 4):
        with pytest.raises(ValidationError) as info:
            ModelConfig(arch="gym_unet", stride=stride)
        assert info.value.errors()[0]["loc"] == ("stride",)
    assert ModelConfig(arch="gym_unet", stride=2).stride == 2


@pytest.mark.parametrize("name", GYM_ARCHS)
def test_builder_kwargs_are_the_keywords_the_constructor_names(name: str) -> None:
    kwargs = ModelConfig(arch=name, filters=3).builder_kwargs()
    assert set(kwargs) == set(_signature(name)) & set(GymParams.model_fields)
    assert ("stride" in kwargs) == name.startswith("gym_")
    build_model(name, in_channels=2, num_classes=2, **kwargs)


def test_model_filters_reach_the_first_convolution() -> None:
    """YAML ``model.filters`` -> ModelConfig -> builder_kwargs -> build_model -> the conv."""
    config = ModelConfig(arch="gym_resunet", filters=6, kernel=3)
    model = build_model(config.arch, in_channels=4, num_classes=2, **config.builder_kwargs())
    assert model.e1.conv.out_channels == 6 and model.e2.block1.conv.out_channels == 12


def test_a_config_error_does_not_import_torch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {images: a, labels: b, classes: [p, q]}\n"
                   "model: {arch: gym_unet, filtrs: 3}\n")
    code = ("import sys; from raygym.cli import main; rc = main(['train', sys.argv[1]]); "
            "print('torch' in sys.modules); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "model.filtrs: unknown key" in out.stderr
    assert out.stdout.strip() == "False"
