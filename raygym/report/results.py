"""What a search left in its results folder, read leniently: any piece may be missing.

``search.json`` (name, config, searched space, summary, an optional ``replay``),
``leaderboard.csv`` (one row per trial, best first) and Tune's trial folders
(``result.json`` / ``progress.csv`` per epoch, ``params.json``). Starts no Ray.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raygym.errors import DataError
from raygym.train.contract import FINISHED_REASONS

FINISHED = tuple(sorted(FINISHED_REASONS))
"""Statuses of trials that ran until their own end (not stopped by the scheduler)."""
NOT_PRUNED = (*FINISHED, "failed", "running", "interrupted", "unknown")
"""Statuses that are not a scheduler's stop; any other status (``asha-pruned``, ...) is one."""
CATEGORICAL_KINDS = ("choice", "grid")
"""Space kinds whose values are categories (plotted as bars, ordered as declared)."""
TEXT_COLUMNS = ("trial_id", "status", "node_id", "error")
"""Leaderboard / progress columns kept as text: trial ids like ``123e4567`` are not numbers."""


@dataclass
class SearchResults:
    """What a search left behind, read leniently (any piece may be missing).

    ``info``: ``search.json``; ``columns`` / ``rows``: ``leaderboard.csv`` as text, best
    first; ``histories``: trial id -> per-epoch results (see :func:`read_history`);
    ``trial_params``: trial id -> its ``params.json``; ``trials_note``: why the trial folders
    could not be read ("" when they could).
    """

    path: Path
    info: dict[str, Any]
    columns: list[str]
    rows: list[dict[str, str]]
    histories: dict[str, list[dict[str, Any]]]
    trial_params: dict[str, dict[str, Any]]
    trials_note: str = ""

    @property
    def config(self) -> dict[str, Any]:
        """The experiment config the search ran with (``search.json`` key ``config``)."""
        return dict(self.info.get("config") or {})

    @property
    def search_cfg(self) -> dict[str, Any]:
        """Its ``search`` section (algorithm, scheduler, metric, mode, ...)."""
        return dict(self.config.get("search") or {})

    @property
    def name(self) -> str:
        """The experiment name, else the folder's."""
        return str(self.info.get("name") or self.config.get("name") or self.path.name)

    @property
    def metric(self) -> str:
        """The searched metric: the config's, else the leaderboard's ``best_*`` column."""
        if self.search_cfg.get("metric"):
            return str(self.search_cfg["metric"])
        best = [c for c in self.columns if c.startswith("best_")]
        return best[0][len("best_"):] if best else "val_mean_iou"

    @property
    def mode(self) -> str:
        """``"max"`` or ``"min"``: the config's, else ``min`` for a loss."""
        return str(self.search_cfg.get("mode") or ("min" if "loss" in self.metric else "max"))

    @property
    def space(self) -> list[dict[str, Any]]:
        """The searched keys (``path``, ``kind``, ``values``/``low``/``high``)."""
        if self.info.get("space"):
            return list(self.info["space"])
        out = []
        for k in self.param_keys:
            values = [parse_cell(r.get(k, "")) for r in self.rows if r.get(k, "") != ""]
            numeric = all(isinstance(v, int | float) for v in values)
            distinct = list(dict.fromkeys(values))
            kind = "choice" if not numeric or len(distinct) <= 6 else "uniform"
            out.append({"path": k, "kind": kind, "values": distinct if kind == "choice" else []})
        return out

    @property
    def param_keys(self) -> list[str]:
        """Dotted paths of the searched keys (``model.filters``, ...)."""
        if self.info.get("space"):
            return [d["path"] for d in self.info["space"]]
        # the leaderboard writes the searched keys between node_id and error
        if "node_id" in self.columns and "error" in self.columns:
            return self.columns[self.columns.index("node_id") + 1: self.columns.index("error")]
        return []

    def status(self, trial_id: str) -> str:
        """The leaderboard's status, else the last epoch's ``stop_reason``, else ``running``
        (the search is) or ``unknown``."""
        for r in self.rows:
            if r.get("trial_id") == trial_id:
                return r.get("status") or "unknown"
        hist = self.histories.get(trial_id) or []
        if hist and hist[-1].get("stop_reason"):
            return str(hist[-1]["stop_reason"])
        return "running" if self.info.get("status") == "running" else "unknown"

    def trial_ids(self) -> list[str]:
        """Leaderboard order first, then trials only found on disk."""
        ids = [r["trial_id"] for r in self.rows if r.get("trial_id")]
        return ids + [t for t in self.histories if t not in ids]

    def value(self, row: dict[str, str]) -> float:
        """A leaderboard row's ``best_<metric>`` (NaN when empty)."""
        return as_float(row.get(f"best_{self.metric}"))

    def scored_rows(self) -> list[dict[str, str]]:
        """Leaderboard rows of trials that did not fail and have a score, best first."""
        return [r for r in self.rows
                if r.get("status") != "failed" and not math.isnan(self.value(r))]


def as_float(value: Any) -> float:
    """``float(value)``, NaN when it is not a number (an empty CSV cell, None)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def parse_cell(text: Any) -> Any:
    """A CSV cell back to int / float / JSON value / string."""
    if not isinstance(text, str):
        return text
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def category_text(value: Any) -> str:
    """One spelling per categorical value (dict / list choices as sorted JSON)."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def category_order(spec: dict[str, Any], seen: list[Any]) -> list[str]:
    """A categorical key's values as :func:`category_text`: the declared ones (``values`` of
    its space entry ``spec``) in order, then values ``seen`` in trials but not declared."""
    order = [category_text(v) for v in spec.get("values") or []]
    return order + [s for s in dict.fromkeys(category_text(v) for v in seen) if s not in order]


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def trial_root(results: Path, info: dict[str, Any]) -> Path | None:
    """Tune's experiment folder (``search.storage_path`` or ``RESULTS/ray``, then the name);
    ``None`` when it lives in remote storage."""
    config = info.get("config") or {}
    storage = (config.get("search") or {}).get("storage_path") or str(results / "ray")
    if _is_remote(storage):
        return None
    storage = storage.removeprefix("file://")
    name = info.get("name") or config.get("name")
    base = Path(storage)
    if name and (base / name).is_dir():
        return base / name
    candidates = [p for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
    return candidates[0] if len(candidates) == 1 else (base / name if name else base)


def read_history(trial_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch results of one Tune trial: ``result.json`` lines, else ``progress.csv``.

    Every key of a line is kept, Tune's ``timestamp`` (Unix seconds of the report) included.
    Unreadable lines (a trial killed mid-write) are skipped; a restored trial that repeated an
    epoch keeps its last report of that epoch. Sorted by epoch.
    """
    rows: list[dict[str, Any]] = []
    rj = trial_dir / "result.json"
    if rj.is_file():
        for line in rj.read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict):
                rows.append(item)
    if not rows and (trial_dir / "progress.csv").is_file():
        with (trial_dir / "progress.csv").open(newline="") as fh:
            rows = [{k: v if k in TEXT_COLUMNS else parse_cell(v) for k, v in r.items()}
                    for r in csv.DictReader(fh)]
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in rows:
        epoch = r.get("epoch", r.get("training_iteration"))
        try:
            by_epoch[int(epoch)] = r
        except (TypeError, ValueError):
            continue
    return [by_epoch[e] for e in sorted(by_epoch)]


def load_results(results: Path) -> SearchResults:
    """Read ``search.json``, ``leaderboard.csv`` and the Tune trial folders of a search.

    Raises :class:`~raygym.errors.DataError` when ``results`` is missing, or has neither
    ``search.json`` nor ``leaderboard.csv``, or its ``search.json`` is not JSON.
    """
    results = Path(results)
    if not results.is_dir():
        raise DataError("results folder not found", file=results,
                        fix="give the folder `raygym search` printed (results/<name>)")
    info: dict[str, Any] = {}
    if (results / "search.json").is_file():
        try:
            info = json.loads((results / "search.json").read_text())
        except json.JSONDecodeError:
            raise DataError("search.json is damaged", file=results / "search.json") from None
    columns: list[str] = []
    rows: list[dict[str, str]] = []
    if (results / "leaderboard.csv").is_file():
        with (results / "leaderboard.csv").open(newline="") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    if not info and not rows and (results / "metrics.csv").is_file():
        raise DataError("a train run, not a search: the report compares a search's trials",
                        file=results, fix=f"its curves are {results / 'curves.png'} and "
                        f"metrics.csv; `raygym evaluate {results / 'best'}` scores its model")
    if not info and not rows:
        raise DataError("not a raygym search results folder (no search.json or leaderboard.csv)",
                        file=results, fix="give the folder `raygym search` printed")
    histories: dict[str, list[dict[str, Any]]] = {}
    params: dict[str, dict[str, Any]] = {}
    note = ""
    root = trial_root(results, info)
    if root is None:
        note = "Tune's trial folders are in remote storage; per-epoch curves are not shown."
    elif root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if not ((d / "result.json").is_file() or (d / "progress.csv").is_file()):
                continue
            hist = read_history(d)
            tid = str(hist[-1].get("trial_id") or d.name) if hist else d.name
            histories[tid] = hist
            if (d / "params.json").is_file():
                try:
                    params[tid] = json.loads((d / "params.json").read_text())
                except json.JSONDecodeError:
                    pass
    else:
        note = f"no Tune trial folders at {root}; per-epoch curves are not shown."
    return SearchResults(results, info, columns, rows, histories, params, note)
