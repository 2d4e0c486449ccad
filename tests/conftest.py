"""Shared fixtures: one local Ray per test session, the real S2 data set, the synthetic demo set
and experiment configs for both. See ``../shared/RAY_NOTES.md`` ("Tests") for the settings."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# Must be set before Ray starts (and before anything imports ray.data).
for _key, _value in {
    "RAY_AUTH_MODE": "disabled",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_DATA_LOG_LEVEL": "WARNING",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "120",
    # The GCS marks a killed node DEAD after failed health checks: every 3 s, 5 in a row by
    # default (17 s on this machine); every 1 s, 3 in a row: 7 s. Each check still waits
    # Ray's 10 s for an answer, so a busy node is not declared dead any sooner.
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "OMP_WAIT_POLICY": "PASSIVE",  # as raygym/__init__.py; here before any test imports torch
}.items():
    os.environ.setdefault(_key, _value)

REPO = Path(__file__).resolve().parents[1]
S2_DIR = REPO / ".." / "shared" / "data" / "s2_ocean_beach_4class"
S2_NIR_KEY = r"^(.*)_ir(-\d+)$"
TEST_CPUS = 2
TEST_OBJECT_STORE = 512 * 2**20


def write_experiment(path: Path, **sections: Any) -> Path:
    """Write an experiment YAML from keyword sections (``data={...}, model={...}``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_plain(sections), sort_keys=False))
    return path


def read_tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files in ``folder``: {tag: [(step, value)]}.

    Read with the Event protobuf that tensorboardX ships; records are TFRecord frames
    (u64 length, u32 crc, data, u32 crc)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


@pytest.fixture
def tensorboard_scalars() -> Callable[[Path], dict[str, list[tuple[int, float]]]]:
    """:func:`read_tensorboard_scalars`, for tests in any folder."""
    return read_tensorboard_scalars


def _plain(value: Any) -> Any:
    """Paths and tuples -> YAML-safe strings and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray with 2 CPUs and a 512 MiB object store, shared by the whole session.

    Always a fresh local instance (``address="local"``), even where ``RAY_ADDRESS`` is set:
    tests never join someone's cluster. Code under test that calls ``ensure_ray`` finds it up.
    """
    import logging

    import ray

    from raygym.ray_runtime import set_ray_env

    set_ray_env(progress_bars=False)
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=TEST_CPUS, object_store_memory=TEST_OBJECT_STORE,
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def write_config() -> Any:
    """``write_config(path, **sections) -> path``: an experiment YAML from dict sections."""
    return write_experiment


@pytest.fixture(scope="session")
def s2_data() -> Path:
    """The Sentinel-2 Ocean Beach set (80 scenes, RGB + NIR JPEGs), from ../shared/data."""
    if not (S2_DIR / "pairs.csv").is_file():
        pytest.skip(f"S2 data set not found at {S2_DIR.resolve()} (needs ../shared/data beside "
                    "the repository)")
    return S2_DIR.resolve()


def copy_s2_scenes(src: Path, dst: Path, n: int) -> list[str]:
    """Copy the first ``n`` S2 scenes (image, NIR, label) into ``dst/{images,nir,labels}``;
    returns their keys (image stems)."""
    stems = sorted(p.stem for p in (src / "images").glob("*.jpg"))[:n]
    for sub in ("images", "nir", "labels"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        base, tile = stem.rsplit("-", 1)
        shutil.copy(src / "images" / f"{stem}.jpg", dst / "images")
        shutil.copy(src / "labels" / f"{stem}.jpg", dst / "labels")
        shutil.copy(src / "nir" / f"{base}_ir-{tile}.jpg", dst / "nir")
    return stems


@pytest.fixture(scope="session")
def s2_subset(s2_data: Path) -> Callable[[Path, int], list[str]]:
    """``s2_subset(dst, n) -> keys``: a small editable copy of S2 (for bad-input tests)."""
    return lambda dst, n: copy_s2_scenes(s2_data, dst, n)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic demo set (24 scenes of 64 x 96 px), written once per session."""
    from raygym.data.demo import write_demo_data

    out = tmp_path_factory.mktemp("demo") / "demo"
    write_demo_data(out, n_scenes=24, size_hw=(64, 96), seed=0)
    return out


def s2_section(root: Path, prepared: Path) -> dict[str, Any]:
    """The ``data:`` section for an S2-layout folder (``images/``, ``nir/``, ``labels/``):
    RGB + NIR, classes 1..4 remapped to 0..3, JPEG artefact values (0, 5) ignored."""
    return {
        "images": str(root / "images"),
        "extra_bands": [{"folder": str(root / "nir"), "key": S2_NIR_KEY}],
        "labels": str(root / "labels"),
        "classes": ["water", "surf", "wet_sand", "dry_land"],
        "remap": {1: 0, 2: 1, 3: 2, 4: 3},
        "unknown_labels": "ignore",
        "target_size": [64, 64],
        "split": {"val": 0.2, "test": 0.1},
        "augment": {"copies": 1, "hflip": True},
        "prepared": str(prepared),
    }


SMALL_MODEL = {"arch": "gym_unet", "filters": 2, "kernel": 3}
# precise_bn_images: the statistics pass runs in every training test, over 2 batches instead
# of the whole small set (it cost the suite ~2 minutes; tests/train/test_batchnorm.py and
# test_loop.py check the pass itself at the default)
SMALL_TRAIN = {"batch_size": 8, "max_epochs": 2, "rampup_epochs": 1, "max_lr": 1e-3,
               "precision": "fp32", "precise_bn_images": 16}


def s2_sections(root: Path, prepared: Path) -> dict[str, Any]:
    """Experiment sections (name, data, model, train) for an S2-layout folder."""
    return {
        "name": "s2_test",
        "data": s2_section(root, prepared),
        "model": dict(SMALL_MODEL),
        "train": dict(SMALL_TRAIN),
    }


@pytest.fixture(scope="session")
def make_s2_config(s2_data: Path) -> Callable[..., dict[str, Any]]:
    """``make_s2_config(prepared, root=S2) -> sections``, for module-scoped fixtures and
    copies of S2."""
    return lambda prepared, root=s2_data: s2_sections(Path(root), Path(prepared))


@pytest.fixture
def s2_config(tmp_path: Path, s2_data: Path) -> dict[str, Any]:
    """Experiment sections for S2; prepared dataset at ``tmp_path / 'ds'``."""
    return s2_sections(s2_data, tmp_path / "ds")


@pytest.fixture
def demo_config(tmp_path: Path, demo_data: Path) -> dict[str, Any]:
    """Experiment sections for the demo set (folder pairing, NIR by the ``_nir`` suffix)."""
    return {
        "name": "demo_test",
        "data": {
            "images": str(demo_data / "images"),
            "extra_bands": [{"folder": str(demo_data / "nir"), "key": r"^(.*)_nir$"}],
            "labels": str(demo_data / "labels"),
            "classes": ["water", "whitewater", "sand", "other"],
            "target_size": [64, 64],
            "split": {"val": 0.2, "test": 0.1},
            "augment": {"copies": 1, "hflip": True},
            "prepared": str(tmp_path / "demo_ds"),
        },
        "model": dict(SMALL_MODEL),
        "train": dict(SMALL_TRAIN),
    }
