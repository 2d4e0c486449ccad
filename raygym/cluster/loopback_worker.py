"""``ray start`` for a worker node that joins a head listening on 127.0.0.1 only.

Run as ``python -m raygym.cluster.loopback_worker start --address 127.0.0.1:PORT
--node-ip-address 127.0.0.1 ...`` (the arguments of ``ray start``). Plain ``ray start`` cannot
do this on Linux: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` it refuses to join any cluster
("Multi-node Ray clusters are not supported on Windows and OSX"); without it, it rewrites
127.0.0.1 to the machine's outside address, where the loopback-only head does not answer.

PRIVATE RAY API (Ray 2.60): this process replaces ``ray._private.services.
resolve_ip_for_localhost(host)`` so that 127.0.0.1 stays 127.0.0.1, then sets
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` after Ray read it, so that ``ray start``'s multi-node
check passes while the raylet and workers it starts inherit the variable and bind to
127.0.0.1. ``tests/cluster/test_loopback_worker.py`` fails when Ray moves the function or
changes its signature (:func:`raygym.compat.keep_loopback_host_names`, where the private
attribute is touched); :func:`install` refuses to start a node in that case.
"""

from __future__ import annotations

import os
import sys

from raygym.compat import keep_loopback_host_names
from raygym.ray_runtime import LOOPBACK_ENV


def install() -> None:
    """Patch this process's Ray (see the module docstring); raise if Ray's function changed."""
    # importing ray._private.services imports ray_constants, which reads LOOPBACK_ENV: set
    # the variable only after, so that `ray start`'s multi-node check passes
    keep_loopback_host_names()
    os.environ[LOOPBACK_ENV] = "0"


def main() -> None:
    install()
    from ray.scripts.scripts import main as ray_main

    sys.argv = ["ray", *sys.argv[1:]]
    ray_main()


if __name__ == "__main__":
    main()
