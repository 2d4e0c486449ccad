"""CPU that an idle ``raygym cluster`` costs, by process kind (issue 10).

Starts a loopback cluster (a head with 0 CPUs + ``--nodes`` worker nodes of 1 CPU, as
``bench_scale.py --where cluster`` does), waits ``--settle`` seconds, then reads the CPU time
of every process of the cluster (``cluster_processes``) over ``--window`` seconds of doing
nothing, and stops the cluster. On a small machine the daemons of N loopback nodes compete with the
trials: this prints how many cores they take while no trial runs.

    python bench/bench_cluster_idle.py --nodes 8 --window 60
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

import psutil

from raygym.cluster import cluster_down, cluster_up, free_port, read_state
from raygym.cluster.processes import cluster_processes

KINDS = ("DashboardAgent", "RuntimeEnvAgent", "raylet/raylet", "gcs_server", "log_monitor",
         "loopback_worker", "dashboard.py", "monitor.py", "client.server")


def cluster_cpu(state_dir: Path) -> dict[int, tuple[str, float]]:
    """pid -> (process kind, CPU seconds so far) of every process of the cluster."""
    out: dict[int, tuple[str, float]] = {}
    for proc in cluster_processes(read_state(state_dir) or {}):
        try:
            cmd = " ".join(proc.cmdline())
            times = proc.cpu_times()
        except psutil.Error:  # a process that just ended
            continue
        kind = next((k for k in KINDS if k in cmd), "other")
        out[proc.pid] = (kind, times.user + times.system)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=8, help="worker nodes besides the head")
    ap.add_argument("--window", type=float, default=60.0, help="seconds of idle measured")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds waited after start")
    args = ap.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="bench-cluster-idle-"))
    started = time.perf_counter()
    try:
        cluster_up(workers=args.nodes, cpus_per_node=1, head_cpus=0, state_dir=state_dir,
                   head_port=free_port(), dashboard_port=free_port(),
                   timeout=max(300, 45 * args.nodes))
        up_s = time.perf_counter() - started
        time.sleep(args.settle)
        before = cluster_cpu(state_dir)
        time.sleep(args.window)
        after = cluster_cpu(state_dir)
    finally:
        cluster_down(state_dir=state_dir)
    use: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for pid, (kind, cpu) in after.items():
        if pid in before:
            use[kind][0] += 1
            use[kind][1] += cpu - before[pid][1]
    print(f"bench_cluster_idle: head + {args.nodes} nodes up in {up_s:.0f} s; idle "
          f"{args.window:.0f} s; load average {os.getloadavg()[0]:.1f}\n")
    print("| process | count | cores busy |\n|---|---:|---:|")
    for kind, (count, cpu) in sorted(use.items(), key=lambda kv: -kv[1][1]):
        print(f"| {kind} | {count:.0f} | {cpu / args.window:.2f} |")
    total = sum(cpu for _, cpu in use.values())
    print(f"| all | {sum(c for c, _ in use.values()):.0f} | {total / args.window:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
