"""``bench/bench_gpu.py`` without a GPU: its argument handling and its tiny CPU fallback
(``--cpu-smoke``), which runs every per-model code path the GPU run uses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_defaults_cover_the_issue_s_matrix(bench: ModuleType) -> None:
    args = bench.parse_args([])
    assert args.sizes == [256, 512] and args.batch == 8 and args.pack == 4
    assert args.precision == ["fp32", "bf16-mixed", "fp16-mixed"]
    assert set(args.models) == {"gym_unet f8 k7", "smp unet-resnet34"}


@pytest.mark.parametrize("bad", [["--sizes", "100"], ["--batch", "1"], ["--steps", "0"],
                                 ["--precision", "fp64"], ["--models", "vgg"]])
def test_bad_arguments_are_refused(bench: ModuleType, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(bad)
    assert exc.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the real run applies")
def test_without_a_gpu_it_says_so(bench: ModuleType) -> None:
    assert "no GPU is present" in bench.run(bench.parse_args([]))


def test_cpu_smoke_prints_a_markdown_table(bench: ModuleType,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--cpu-smoke"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| measurement | model | px |")
    body = [ln.split("|")[1:-1] for ln in lines[1:]]
    assert {(c[0].strip(), c[3].strip()) for c in body} == {
        ("train", "fp32"), ("predict", "fp32"), ("train", "bf16-mixed"),
        ("predict", "bf16-mixed")}
    assert all(float(c[4]) > 0 for c in body)
    if not torch.cuda.is_available():
        assert "no GPU is present" in out


def test_markdown_leaves_unknown_figures_empty(bench: ModuleType) -> None:
    table = bench.markdown([bench.Row("predict", "m", 64, "fp32", 12.34)], "head")
    assert table.splitlines()[-1] == "| predict | m | 64 | fp32 | 12.3 |  |  |"
