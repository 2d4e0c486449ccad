"""``raygym models``: the list of architectures and one model's summary."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import torch

from raygym.cli import main
from raygym.models import list_models


@pytest.fixture(autouse=True)
def _two_threads() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def test_lists_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    names = capsys.readouterr().out.split()
    assert names == list_models()
    assert {"gym_unet", "gym_resunet", "simple_unet", "simple_resunet", "segformer"} <= set(names)


def test_gym_unet_summary(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["models", "gym_unet", "--filters", "8", "--kernel", "7", "--bands", "3",
            "--classes", "4", "--size", "64"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # GYM_REFERENCE.md: Gym's UNet, 3 bands, 4 classes, filters 8, kernel 7
    assert "Trainable params: 4,004,468\n" in out
    assert "Keras' 'Total params': 4,006,196" in out  # + BN running statistics
    assert "Output shape: 4x64x64 (logits)" in out
    m = re.search(r"FLOPs per image: (\d+\.\d{3}) GFLOPs", out)
    assert m is not None and float(m.group(1)) > 0


def test_resunet_count_from_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "gym_resunet", "--filters", "2", "--size", "32"]) == 0
    assert "Trainable params: 387,840\n" in capsys.readouterr().out


def test_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "gym_unte"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.count("\n") == 1
    assert "unknown model 'gym_unte'" in err and "did you mean 'gym_unet'" in err
    for name in list_models():
        assert name in err
