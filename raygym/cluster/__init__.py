"""A local multi-node Ray cluster on one machine, for trying the distributed path.

``cluster_up`` starts a head node and ``workers`` worker nodes, each a separate ``ray start
--block`` process in its own session (process group), each with its own raylet, CPU count and a
custom resource label (``head`` on the head, ``worker_node_<i>`` on worker ``i``) that pins work
to that node. What was started is written to ``<state_dir>/cluster.json``; ``cluster_down``
stops exactly those processes (never ``ray stop``, which would kill every Ray process of the
user, including other clusters and test sessions).

Processes are found again by an environment marker, ``RAYGYM_CLUSTER=<cluster id>:<node
name>``, that every node process and its children carry (see :mod:`.processes`).

Networking: the dashboard and the job server listen on 127.0.0.1 only. Ray itself advertises
the machine's own IP for every node (on Linux it maps 127.0.0.1 to it), and its gRPC servers
(GCS, raylets, object managers), the Ray client server and the per-node dashboard agents listen
on all interfaces or on that IP. A Ray cluster assumes a trusted network: whoever reaches those
ports can run code in it. Keep such machines behind a firewall.

The object store and session files live in a short temporary directory (unix socket paths are
limited to 107 bytes), recorded in the state file and removed by ``cluster_down``.

The package: :mod:`.state` (``cluster.json``), :mod:`.network` (ports, the dashboard),
:mod:`.processes` (start, find, stop node processes), :mod:`.start` (``cluster_up``),
:mod:`.control` (down, status, killing a node, a driver's environment).
"""

from raygym.cluster.control import cluster_down, cluster_status, driver_env, kill_node
from raygym.cluster.network import free_port, list_nodes
from raygym.cluster.processes import MARKER_ENV
from raygym.cluster.start import HEAD_RESOURCE, START_ATTEMPTS, cluster_up, worker_resource
from raygym.cluster.state import (
    DEFAULT_STATE_DIR,
    STATE_FILE,
    ClusterError,
    cluster_info,
    read_state,
)

__all__ = [
    "DEFAULT_STATE_DIR", "HEAD_RESOURCE", "MARKER_ENV", "START_ATTEMPTS", "STATE_FILE",
    "ClusterError", "cluster_down", "cluster_info", "cluster_status", "cluster_up",
    "driver_env", "free_port", "kill_node", "list_nodes", "read_state", "worker_resource",
]
