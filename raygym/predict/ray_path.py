"""``raygym predict --ray``: the same per-image work (:func:`predict_one`) as a Ray Data batch
job, one CPU actor per core, each loading the models once. Ray is imported only here, and
only when the job runs: the plain path never imports it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raygym.errors import DataError
from raygym.predict.inputs import InputItem
from raygym.predict.options import PredictOptions
from raygym.predict.outputs import predict_one
from raygym.predict.predictor import Predictor


class PredictActor:
    """Ray Data actor: loads the models once, then predicts and writes one file per row.

    Rows in: ``i`` (int), ``item`` (JSON of an :class:`InputItem`). Rows out: ``i``, ``row``
    (JSON summary row, "" on failure), ``error`` ("" on success). Outputs are written by the
    actor, so ``options.out`` must be visible to every node (one machine, or shared storage).
    """

    def __init__(self, model_dirs: list[str], options: PredictOptions, threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        self.predictor = Predictor([Path(p) for p in model_dirs], device="cpu",
                                   precision=options.precision,
                                   ensemble_margin=options.ensemble_margin,
                                   ensemble_weights=options.ensemble_weights)
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, errors = [], []
        for raw in batch["item"]:
            item = InputItem.from_json(str(raw))
            try:
                rows.append(json.dumps(predict_one(self.predictor, item, self.options)))
                errors.append("")
            except DataError as err:
                rows.append("")
                errors.append(err.message)
        return {"i": np.asarray(batch["i"]), "row": np.asarray(rows, dtype=object),
                "error": np.asarray(errors, dtype=object)}


def predict_with_ray(model_dirs: Sequence[Path], items: Sequence[InputItem],
                     options: PredictOptions
                     ) -> list[tuple[int, dict[str, Any] | None, str]]:
    """Predict ``items`` on Ray actors (``options.ray_actors``, default one per cluster CPU).

    Returns:
        ``(index into items, summary row or None, error message or "")`` per item, in order.
    """
    import ray

    from raygym.config import ResourcesConfig
    from raygym.ray_runtime import cluster_cpus, ensure_ray

    ensure_ray(ResourcesConfig(address=options.ray_address), progress_bars=True,
               address_key="--address")
    n = options.ray_actors or max(1, int(cluster_cpus()))
    n = max(1, min(n, len(items)))
    records = [{"i": i, "item": it.to_json()} for i, it in enumerate(items)]
    # small blocks spread the files over the actors; capped so thousands of files do not
    # become thousands of scheduling units
    ds = ray.data.from_items(records, override_num_blocks=min(len(records), n * 16))
    out = ds.map_batches(PredictActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=n),
                         num_cpus=1, batch_format="numpy",
                         fn_constructor_kwargs={"model_dirs": [str(p) for p in model_dirs],
                                                "options": options, "threads": 1})
    results = []
    for r in out.take_all():
        row = json.loads(r["row"]) if r["row"] else None
        results.append((int(r["i"]), row, str(r["error"])))
    return sorted(results, key=lambda t: t[0])
