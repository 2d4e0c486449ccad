"""ray_train.worker_device honours resources.device like search trials do; check_device
refuses, before any worker starts, the combinations a worker could not honour."""

from __future__ import annotations

import pytest
import torch

from raygym.config import ResourcesConfig
from raygym.errors import ResourceError
from raygym.inference.runtime import mps_available
from raygym.train.ray_train import check_device, worker_device


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_cpu_worker_runs_on_the_cpu(device: str) -> None:
    resources = ResourcesConfig(device=device)
    check_device(resources)
    assert worker_device(resources) == torch.device("cpu")


@pytest.mark.skipif(mps_available(), reason="this machine has Apple's MPS backend")
def test_mps_asked_for_where_absent_says_so() -> None:
    with pytest.raises(RuntimeError, match="MPS"):
        worker_device(ResourcesConfig(device="mps"))


@pytest.mark.skipif(not mps_available(), reason="needs Apple's MPS backend (macOS, Apple GPU)")
def test_mps_worker_runs_on_apple_gpu() -> None:  # pragma: no cover - macOS only
    assert worker_device(ResourcesConfig(device="mps")).type == "mps"


@pytest.mark.parametrize(("fields", "key", "fix"), [
    ({"device": "cuda"}, "resources.device", "gpus_per_worker"),
    ({"device": "cuda:1"}, "resources.device", "gpus_per_worker"),
    ({"device": "cpu", "gpus_per_worker": 1}, "resources.device", "gpus_per_worker: 0"),
    ({"device": "mps", "gpus_per_worker": 0.5}, "resources.device", "gpus_per_worker: 0"),
    ({"device": "mps", "workers_per_trial": 2}, "resources.workers_per_trial", "set it to 1"),
])
def test_impossible_device_requests_are_refused(fields: dict, key: str, fix: str) -> None:
    with pytest.raises(ResourceError) as err:
        check_device(ResourcesConfig(**fields))
    assert err.value.key == key and fix in (err.value.fix or "")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fields", [{"device": "auto", "gpus_per_worker": 1},
                                    {"device": "cuda", "gpus_per_worker": 0.25},
                                    {"device": "auto", "workers_per_trial": 4}])
def test_possible_device_requests_pass(fields: dict) -> None:
    check_device(ResourcesConfig(**fields))
