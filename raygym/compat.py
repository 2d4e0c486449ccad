"""Every private Ray or Optuna attribute raygym uses, in one place.

Written against ray 2.60 and optuna 5.1. Each function names what it reaches into;
``tests/test_compat.py`` calls each one on real objects (a real ``OptunaSearch``, a real
study, a real Tune experiment, a real local Ray), so an upgrade that moves any of them fails
there, by name, instead of somewhere inside a search or a cluster start.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    import pyarrow.fs
    from ray.tune import RunConfig, Tuner
    from ray.tune.search.optuna import OptunaSearch


# ------------------------------------------------------------------- OptunaSearch internals
def optuna_study(searcher: OptunaSearch) -> optuna.Study:
    """The study ``OptunaSearch`` asks and tells (``_ot_study``)."""
    return searcher._ot_study


def live_optuna_trials(searcher: OptunaSearch) -> dict[str, optuna.Trial]:
    """Tune trial id -> the Optuna trial asked for it and not told yet (``_ot_trials``); the
    searcher asks again for an id that is removed from it."""
    return searcher._ot_trials


def completed_trial_ids(searcher: OptunaSearch) -> set[str]:
    """Tune trial ids whose outcome the searcher has told the study (``_completed_trials``)."""
    return searcher._completed_trials


def searcher_space(searcher: OptunaSearch) -> Any:
    """The ``space`` the searcher was built with, e.g. a define-by-run callable (``_space``)."""
    return searcher._space


# -------------------------------------------------------------------- Optuna study storage
def set_trial_user_attr(study: optuna.Study, trial: optuna.trial.FrozenTrial, key: str,
                        value: Any) -> None:
    """Set a user attribute of a trial known only as a ``FrozenTrial`` (a trial this process
    did not ask: Optuna's public API sets them on live trials only); ``study._storage`` and
    ``FrozenTrial._trial_id``."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def rdb_storage(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    """The ``RDBStorage`` under a study (Optuna wraps it in ``_CachedStorage``: ``_storage``,
    ``_backend``), or None for another kind of storage."""
    from optuna.storages import RDBStorage

    storage = getattr(study._storage, "_backend", study._storage)
    return storage if isinstance(storage, RDBStorage) else None


def intermediate_values(trial: optuna.Trial) -> dict[int, float]:
    """{step: value} reported so far for a live trial, read from storage (``Trial._trial_id``)."""
    return trial.storage.get_trial(trial._trial_id).intermediate_values


class SamplerStudyView:
    """What a sampler sees of a study: its trial queries (``Study._get_trials``, the private
    method Optuna's samplers read, TPE three times per ask) come from the study's per-ask
    trial cache and pass through ``select``; everything else is the study itself.

    The cache is equivalent to a fresh read here: the search driver is the study's only
    writer, and Optuna clears the cache at every ``ask`` and ``tell``. A fresh read re-reads
    every RUNNING trial from SQLite (~15 ms at 32 running), which TPE with ``constant_liar``
    does on each ask. ``select``: trials (sorted by number) -> the trials the sampler models.
    """

    def __init__(self, study: optuna.Study,
                 select: Callable[[list[optuna.trial.FrozenTrial]],
                                  list[optuna.trial.FrozenTrial]]) -> None:
        self._view_of = study
        self._select = select

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view_of, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None,
                    use_cache: bool = False) -> list[optuna.trial.FrozenTrial]:
        trials = self._select(self._view_of._get_trials(
            deepcopy=False, states=states, use_cache=True))
        return copy.deepcopy(trials) if deepcopy else trials


# ------------------------------------------------------------------------- Tune internals
def storage_filesystem(path: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """(filesystem, path on it) for a local path or URI, as Tune resolves storage
    (``ray.train._internal.storage.get_fs_and_path``)."""
    from ray.train._internal.storage import get_fs_and_path

    return get_fs_and_path(path)


@dataclass(frozen=True)
class SnapshotTrial:
    """One trial as Tune's newest experiment snapshot names it.

    ``status``: Tune's (``RUNNING``, ``TERMINATED``, ...); ``trial_dir_name``: its folder
    inside the experiment folder; ``checkpoint``: the path of the checkpoint Tune registered
    last (as written when the snapshot was saved; the experiment may have moved since), or
    None.
    """

    trial_id: str
    status: str
    trial_dir_name: str
    checkpoint: str | None


def snapshot_trials(exp_path: str) -> list[SnapshotTrial]:
    """The trials of the newest ``experiment_state-*.json`` in ``exp_path`` (empty: none yet).

    Reads the snapshot as ``Tuner.restore`` does: ``_find_newest_experiment_checkpoint``,
    ``_loads_with_cloudpickle`` (the snapshot is Tune's own trusted state),
    ``Trial.from_json_state`` and the trial's pickled checkpoint manager.
    """
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
    from ray.tune.experiment import Trial
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    fs, fs_path = storage_filesystem(exp_path)
    newest = _find_newest_experiment_checkpoint(fs_path, fs=fs)
    if newest is None:
        return []
    with fs.open_input_stream(newest) as stream:
        state = _loads_with_cloudpickle(stream.readall())
    out = []
    for trial_json, runtime_json in state["trial_data"]:
        trial = Trial.from_json_state(trial_json, stub=True)
        trial.restore_run_metadata(runtime_json)
        latest = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
        out.append(SnapshotTrial(trial_id=trial.trial_id, status=trial.status,
                                 trial_dir_name=trial.storage.trial_dir_name,
                                 checkpoint=None if latest is None else latest.checkpoint.path))
    return out


def tuner_run_config(tuner: Tuner) -> RunConfig | None:
    """The ``RunConfig`` a Tuner will run with (``Tuner._local_tuner``; None through Ray
    Client, where the Tuner runs remotely). ``Tuner.restore`` brings back unpickled copies of
    the callbacks: set this driver's own on it."""
    local = getattr(tuner, "_local_tuner", None)
    return None if local is None else local.get_run_config()


def grow_restored_search(tuner: Tuner, total: int) -> bool:
    """Let a restored Tuner's search hand out trials until ``total`` have started in all.

    Tune restores a search algorithm with the trial count it was started with, and
    ``Tuner.restore`` takes no new ``TuneConfig``. So the restored ``TuneConfig.search_alg``
    (``Tuner._local_tuner._tune_config``) is replaced by one that, as soon as Tune's restore
    has set the saved state on it (``set_state``), raises that count to ``total`` and clears
    "finished": a ``SearchGenerator`` around the restored searcher (raygym's Optuna one; its
    ``_total_samples``, ``_finished``), or a ``BasicVariantGenerator`` (Tune's random search)
    whose last trial iterator gets the extra samples (``_iterators[-1].num_samples_left``).
    Returns False where there is no local Tuner to change (Ray Client).
    """
    from ray.tune.search import BasicVariantGenerator, Searcher, SearchGenerator

    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        return False
    tune_config = local._tune_config
    restored = tune_config.search_alg
    if isinstance(restored, Searcher):
        tune_config.search_alg = _growing_classes()[0](restored, total)
    elif isinstance(restored, BasicVariantGenerator):
        grown = _growing_classes()[1](max_concurrent=restored.max_concurrent)
        grown.grow_to = total
        tune_config.search_alg = grown
    elif isinstance(restored, SearchGenerator):
        tune_config.search_alg = _growing_classes()[0](restored.searcher, total)
    else:
        return False
    return True


@functools.cache
def _growing_classes() -> tuple[type, type]:
    """The search algorithms of :func:`grow_restored_search` (made on first use: Ray Tune is
    imported only then)."""
    from ray.tune.search import BasicVariantGenerator, SearchGenerator

    class GrowingSearchGenerator(SearchGenerator):
        def __init__(self, searcher: Any, total: int) -> None:
            super().__init__(searcher)
            self.grow_to = total

        def set_state(self, state: dict[str, Any]) -> None:
            super().set_state(state)
            if self.grow_to > self._total_samples:
                self._total_samples, self._finished = self.grow_to, False

    class GrowingVariantGenerator(BasicVariantGenerator):
        grow_to = 0

        def set_state(self, state: dict[str, Any]) -> None:
            grow_to = self.grow_to
            super().set_state(state)  # (the saved __dict__ may hold an older grow_to)
            self.grow_to = grow_to
            extra = grow_to - self._total_samples
            if extra > 0 and self._iterators:
                self._iterators[-1].num_samples_left += extra
                self._total_samples, self._finished = grow_to, False

    return GrowingSearchGenerator, GrowingVariantGenerator


def tbx_callback_with_writer(writer_cls: type) -> Any:
    """Tune's ``TBXLoggerCallback`` creating each trial's writer from ``writer_cls`` (its
    ``_summary_writer_cls``, tensorboardX's ``SummaryWriter`` by default): everything else it
    writes (tags, steps, HParams at a trial's end) stays Tune's."""
    from ray.tune.logger import TBXLoggerCallback

    callback = TBXLoggerCallback()
    callback._summary_writer_cls = writer_cls
    return callback


@contextlib.contextmanager
def tune_reuses_actors_fully(limit: int) -> Iterator[None]:
    """While inside, a Tune controller (with ``reuse_actors``) wastes no trial actor:

    - it keeps up to ``limit`` idle actors per resource shape for the next trials
      (``tune_controller._ObjectCache``: its ``_cached_objects``, ``_num_cached_objects``,
      ``_max_num_objects``). Tune itself keeps one, or as many as trials already wait for,
      and stops the rest: when several trials end between two of its steps, the trials
      suggested next each start a fresh Python process;
    - a trial whose own actor already has its resources (a process being started) waits for
      it instead of taking an idle actor and stopping its own
      (``TuneController._maybe_reuse_cached_actor``, ``_trial_to_actor``,
      ``_resetting_trials``). Tune takes the idle one, so the next trial finds none, asks for
      yet another actor, and every trial's end costs a process that never runs a trial.

    A trial whose actor still waits for resources takes an idle one as before. Tune still
    empties the cache when the search has no more trials to run.
    """
    from ray.tune.execution import tune_controller

    base_cache = tune_controller._ObjectCache
    controller = tune_controller.TuneController
    base_reuse = controller._maybe_reuse_cached_actor

    class KeepIdle(base_cache):  # type: ignore[misc, valid-type]
        def cache_object(self, key: Any, obj: Any) -> bool:
            if len(self._cached_objects[key]) < limit:
                self._cached_objects[key].append(obj)
                self._num_cached_objects += 1
                return True
            return bool(super().cache_object(key, obj))

        def flush_cached_objects(self, force_all: bool = False) -> Iterator[Any]:
            if force_all:
                yield from super().flush_cached_objects(force_all=True)
                return
            for key, objs in self._cached_objects.items():
                while len(objs) > max(limit, self._max_num_objects[key]):
                    self._num_cached_objects -= 1
                    yield objs.pop(0)

    def reuse_unless_own_actor_starts(self: Any, trial: Any) -> bool:
        own = self._trial_to_actor.get(trial)
        if (own is not None and trial not in self._resetting_trials
                and self._actor_manager.is_actor_started(own)):
            return False
        return bool(base_reuse(self, trial))

    tune_controller._ObjectCache = KeepIdle
    controller._maybe_reuse_cached_actor = reuse_unless_own_actor_starts
    try:
        yield
    finally:
        tune_controller._ObjectCache = base_cache
        controller._maybe_reuse_cached_actor = base_reuse


@contextlib.contextmanager
def tune_snapshots_paused_stops() -> Iterator[None]:
    """While inside, a trial that a scheduler stops while it is PAUSED is written to Tune's
    next experiment snapshot as TERMINATED.

    HyperBand's brackets (BOHB's ``HyperBandForBOHB``) pause trials at a rung and later stop
    the losers while they are paused. Tune's ``TuneController._schedule_trial_stop`` sets such
    a trial TERMINATED but returns ("not live") before marking it for the snapshot
    (``_mark_trial_to_checkpoint``), so the snapshot keeps it PAUSED: raygym then called the
    finished search interrupted, and a resume ran the trial again, which BOHB's searcher no
    longer knew (a KeyError from inside Tune).
    """
    from ray.tune.execution.tune_controller import TuneController

    base_stop = TuneController._schedule_trial_stop

    def stop_and_snapshot(self: Any, trial: Any, exception: Exception | None = None) -> None:
        base_stop(self, trial, exception)
        self._mark_trial_to_checkpoint(trial)

    TuneController._schedule_trial_stop = stop_and_snapshot
    try:
        yield
    finally:
        TuneController._schedule_trial_stop = base_stop


# ---------------------------------------------------------------------- Ray core internals
@dataclass
class SigintWatch:
    """Whether Tune caught a Ctrl-C during :func:`watch_tune_sigint` (``caught``)."""

    caught: bool = False


@contextlib.contextmanager
def watch_tune_sigint() -> Iterator[SigintWatch]:
    """Tell whether ``Tuner.fit`` inside returned because of a Ctrl-C.

    Tune (``ray.tune.tune._setup_signal_catching``) installs its own SIGINT handler, and on the
    first signal stops the run and puts back the handler it found, without calling it; on a
    normal end it leaves its own in place. So a marker handler installed here is the one in
    place afterwards exactly when Tune caught a Ctrl-C, also between trials, when no trial is
    left unfinished to show it. A second Ctrl-C meets the marker, which raises
    ``KeyboardInterrupt`` as Python's default handler does. Outside the main thread (no
    signals) ``caught`` stays False.
    """
    import os
    import signal
    import threading

    watch = SigintWatch()

    def marker(signum: int, frame: Any) -> None:
        watch.caught = True
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield watch
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, marker)
    try:
        yield watch
    finally:
        tune_handles = not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0"))
        watch.caught = watch.caught or (tune_handles and signal.getsignal(signal.SIGINT)
                                        is marker)
        signal.signal(signal.SIGINT, previous)


def stop_tune_run() -> bool:
    """Stop the ``Tuner.fit`` running on this thread as a Ctrl-C stops it: Tune saves its
    state, leaves the trials under way unfinished (``--resume`` goes on with them) and
    returns. Call it from the driver loop (a Tune ``Callback``). False where it cannot.

    Tune (``ray.tune.tune._setup_signal_catching``) gives SIGUSR1 the handler it gives SIGINT,
    also with ``TUNE_DISABLE_SIGINT_HANDLER``, but only on the main thread: so the signal is
    raised only where that handler is the one in place (else it would end the process).
    Like a Ctrl-C it puts back the SIGINT handler it found (see :func:`watch_tune_sigint`).
    """
    import signal
    import threading

    signum = getattr(signal, "SIGUSR1", None)
    if signum is None or threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signum)
    if getattr(handler, "__qualname__", "") != ("_setup_signal_catching.<locals>."
                                                "signal_interrupt_tune_run"):
        return False
    signal.raise_signal(signum)  # Python runs the handler before this returns
    return True


def refresh_ray_auth_config() -> None:
    """Make an already imported Ray re-read ``RAY_AUTH_MODE`` / ``RAY_AUTH_TOKEN`` from the
    environment (``ray._raylet.Config.initialize``, ``AuthenticationTokenLoader``'s cache), as
    Ray does itself when it turns token auth on. No-op when Ray is not imported yet."""
    import sys

    raylet = sys.modules.get("ray._raylet")
    if raylet is not None:
        raylet.Config.initialize("")
        raylet.AuthenticationTokenLoader.instance().reset_cache()


def disable_multi_node_address_rewrite() -> None:
    """Ray read ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` into ``ray._private.ray_constants.
    ENABLE_RAY_CLUSTER`` when it was imported; set it as the variable now says (0: this
    process is a 127.0.0.1 host, as on macOS)."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def session_dir() -> str:
    """The running local Ray's session folder (``ray._private.worker._global_node``)."""
    import ray

    return str(ray._private.worker._global_node.get_session_dir_path())


def keep_loopback_host_names() -> None:
    """Stop ``ray start`` rewriting 127.0.0.1 to the machine's outside address: replace
    ``ray._private.services.resolve_ip_for_localhost(host)`` in this process.

    Raises:
        RuntimeError: the function is gone or its signature changed in this Ray version.
    """
    import inspect

    from ray._private import services

    original = getattr(services, "resolve_ip_for_localhost", None)
    if original is None or list(inspect.signature(original).parameters) != ["host"]:
        raise RuntimeError(
            "ray._private.services.resolve_ip_for_localhost(host) is gone or changed in this "
            "Ray version, so a worker node cannot join a 127.0.0.1-only head; update "
            "raygym/compat.py for it")
    services.resolve_ip_for_localhost = _keep_host


def _keep_host(host: str) -> str:
    """Ray's ``resolve_ip_for_localhost`` without the rewrite of loopback names."""
    if not host:
        raise ValueError(f"Malformed host: {host}")
    return host
