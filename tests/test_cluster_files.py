"""The cluster files in cluster/: they parse, validate against Ray's own launcher schema, and the
KubeRay manifests carry the fields the operator needs (fast: nothing is started)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
LAUNCHER = ["aws-gpu.yaml", "onprem.yaml"]
KUBERAY = ["kuberay-raycluster.yaml", "kuberay-rayjob.yaml"]


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CLUSTER / name).read_text())
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    return data


def cluster_spec(name: str) -> dict[str, Any]:
    doc = load(name)
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def test_every_yaml_parses() -> None:
    names = sorted(p.name for p in CLUSTER.glob("*.yaml"))
    assert set(LAUNCHER + KUBERAY) <= set(names)
    for name in names:
        load(name)


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_matches_rays_schema(name: str) -> None:
    """The raw file against ray-schema.json, then as `ray up` does: prepare_config + validate."""
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = load(name)
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(raw, schema)
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_schema_check_is_not_vacuous() -> None:
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    bad = load("aws-gpu.yaml")
    bad["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5  # must be an integer
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = load("aws-gpu.yaml")
    bad["not_a_launcher_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_dashboard_binds_loopback(name: str) -> None:
    cfg = load(name)
    head = " ".join(cfg["head_start_ray_commands"])
    assert "ray start --head" in head
    hosts = re.findall(r"--dashboard-host[= ](\S+)", head)
    assert hosts == ["127.0.0.1"], hosts
    assert "0.0.0.0" not in head
    workers = " ".join(cfg["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in workers
    assert "0.0.0.0" not in workers


def test_launcher_installs_raygym_from_the_mounted_repo() -> None:
    for name in LAUNCHER:
        cfg = load(name)
        assert cfg["file_mounts"].get("~/raygym") == "."
        assert any("-e ~/raygym" in cmd for cmd in cfg["setup_commands"]), name
        for heavy in (".venv", "datasets", "results"):
            assert heavy in cfg["rsync_exclude"], (name, heavy)


def test_aws_has_cpu_head_and_gpu_workers() -> None:
    cfg = load("aws-gpu.yaml")
    assert cfg["provider"]["type"] == "aws" and cfg["provider"]["region"]
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert gpu and all(t["resources"]["GPU"] >= 1 for t in gpu)
    assert all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in gpu)
    assert sum(t["max_workers"] for t in gpu) <= cfg["max_workers"]


def test_onprem_lists_hosts() -> None:
    provider = load("onprem.yaml")["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] and provider["worker_ips"]
    assert provider["head_ip"] not in provider["worker_ips"]


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_required_fields(name: str) -> None:
    doc = load(name)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == {"kuberay-raycluster.yaml": "RayCluster",
                           "kuberay-rayjob.yaml": "RayJob"}[name]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    spec = cluster_spec(name)
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())  # CRD: strings
    assert head["template"]["spec"]["containers"][0]["image"]
    # The dashboard/job API is reachable inside the pod network only.
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    groups = spec["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert isinstance(group["rayStartParams"], dict)
        container = group["template"]["spec"]["containers"][0]
        assert container["image"]
        limits = container["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
        assert container["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]


def test_rayjob_runs_a_search_and_cleans_up() -> None:
    spec = load("kuberay-rayjob.yaml")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    entry = spec["entrypoint"]
    assert entry.startswith("raygym search search_spaces/landsat.yaml")
    assert "--address auto" in entry  # join the RayJob's cluster, not a private Ray
    assert (Path(__file__).resolve().parents[1] / "search_spaces" / "landsat.yaml").exists()
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict)


def test_rayjob_entrypoint_parses_with_raygym() -> None:
    """The entrypoint parses with raygym's own CLI and its overrides are valid (no Ray)."""
    import shlex

    from raygym.cli import _parse_overrides, build_parser
    from raygym.search.space_config import load_experiment

    words = shlex.split(load("kuberay-rayjob.yaml")["spec"]["entrypoint"])
    assert words[:2] == ["raygym", "search"]
    args = build_parser().parse_args(words[1:])
    overrides = _parse_overrides(args.set)
    overrides["resources.address"] = args.address
    root = Path(__file__).resolve().parents[1]
    config, space = load_experiment(root / args.space, overrides=overrides, base_dir=root)
    assert config.resources.address == "auto"
    assert config.search.storage_path and config.search.storage_path.startswith("/mnt/")
    assert list(space)
