"""A local multi-node Ray cluster on one machine, for trying the distributed path.

``cluster_up`` starts a head node and ``workers`` worker nodes, each a separate ``ray start
--block`` process in its own session (process group), each with its own raylet, CPU count and a
custom resource label (``head`` on the head, ``worker_node_<i>`` on worker ``i``) that pins work
to that node. What was started is written to ``<state_dir>/cluster.json``; ``cluster_down``
stops exactly those processes (never ``ray stop``, which would kill every Ray process of the
user, including other clusters and test sessions).

Processes are found again by an environment marker, ``RAYGYM_CLUSTER=<cluster id>:<node
name>``, that every node process and its children carry (see :mod:`.processes`).

Networking and auth: every node is a 127.0.0.1 node, so its servers (GCS, raylets, object
managers, workers, dashboard and its agents, the Ray client server, the job server) listen on
127.0.0.1 only. The head runs with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; worker nodes need
a launcher that patches a private Ray function (:mod:`.loopback_worker`), since plain ``ray
start`` either refuses to join or rewrites 127.0.0.1 to the machine's outside address. Every
node demands the cluster's own token (Ray's ``RAY_AUTH_MODE=token``), made by ``cluster_up``
and kept in ``<state_dir>/auth_token`` (mode 0600); clients need it too (:func:`driver_env`,
``raygym cluster status`` prints the ``export`` line), so other users of this machine cannot
use the cluster.

The object store and session files live in a short temporary directory (unix socket paths are
limited to 107 bytes), recorded in the state file and removed by ``cluster_down``.

The package: :mod:`.state` (``cluster.json``), :mod:`.network` (ports, the dashboard),
:mod:`.processes` (start, find, stop node processes), :mod:`.loopback_worker` (a worker
node's ``ray start``), :mod:`.start` (``cluster_up``), :mod:`.control` (down, status, killing a
node, a client's environment).
"""

from raygym.cluster.control import (
    auth_env,
    cluster_down,
    cluster_status,
    driver_env,
    export_line,
    kill_node,
)
from raygym.cluster.network import free_port, list_nodes
from raygym.cluster.processes import MARKER_ENV
from raygym.cluster.start import HEAD_RESOURCE, START_ATTEMPTS, cluster_up, worker_resource
from raygym.cluster.state import (
    DEFAULT_STATE_DIR,
    STATE_FILE,
    ClusterError,
    cluster_info,
    read_state,
    read_token,
)

__all__ = [
    "DEFAULT_STATE_DIR", "HEAD_RESOURCE", "MARKER_ENV", "START_ATTEMPTS", "STATE_FILE",
    "ClusterError", "auth_env", "cluster_down", "cluster_info", "cluster_status", "cluster_up",
    "driver_env", "export_line", "free_port", "kill_node", "list_nodes", "read_state",
    "read_token", "worker_resource",
]
