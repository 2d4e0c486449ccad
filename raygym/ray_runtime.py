"""Starting or joining Ray quietly, with the settings that matter on small machines.

The environment variables of :data:`QUIET_ENV` must be set before Ray starts: Ray's processes
read them once, at start-up.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from raygym.config import ResourcesConfig

QUIET_ENV = {
    "RAY_AUTH_MODE": "disabled",  # else a later `ray start --head` demands tokens (401)
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "1",
    "RAY_DATA_LOG_LEVEL": "ERROR",
    "RAY_TRAIN_V2_ENABLED": "1",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}


def set_ray_env(progress_bars: bool = True) -> None:
    """Set Ray's environment defaults (the user's own values win)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if not progress_bars:
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def ensure_ray(resources: ResourcesConfig | None = None, *, progress_bars: bool = True,
               dashboard: bool = False) -> bool:
    """Start a local Ray (or join ``resources.address``) unless one is up; True if started here."""
    set_ray_env(progress_bars)
    import ray

    if ray.is_initialized():
        return False
    res = resources or ResourcesConfig()
    address = res.address or os.environ.get("RAY_ADDRESS")  # set inside `ray job submit`
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                              "configure_logging": True}
    if address:
        ray.init(address=address, **kwargs)
        return True
    ray.init(
        address="local",  # never join a stale cluster from /tmp/ray/ray_current_cluster
        num_cpus=res.num_cpus,
        object_store_memory=res.object_store_memory,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        **kwargs,
    )
    return True


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))
