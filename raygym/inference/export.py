"""Export of a search's top-k trials as self-contained model artifacts (``best/``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raygym.atomic import replace_dir
from raygym.config import ExperimentConfig
from raygym.search.space_config import apply_params

if TYPE_CHECKING:
    from raygym.search.leaderboard import Leaderboard


def trial_checkpoint(row: dict[str, Any]) -> Path | None:
    """The checkpoint folder holding a leaderboard row's best weights, or None.

    Single-worker trials report theirs through Tune (``row["checkpoint"]``); multi-worker
    trials' Train runs wrote ``checkpoint_<timestamp>`` folders under
    ``<storage>/train_runs/<trial_id>``, where the latest epoch's holds the best weights so far.
    """
    if row.get("checkpoint") and Path(row["checkpoint"]).is_dir():
        return Path(row["checkpoint"])
    trial_path = Path(str(row.get("trial_path", "")))
    run = trial_path.parent.parent / "train_runs" / str(row["trial_id"])
    candidates = [(int(json.loads(p.read_text()).get("epoch", 0)), p.parent)
                  for p in run.glob("checkpoint_*/state.json")]
    return max(candidates)[1] if candidates else None


def export_top_models(board: Leaderboard, config: ExperimentConfig, out: Path) -> list[Path]:
    """``out/best/rank<N>_<trial>/`` artifacts for the top-k successful trials.

    The new ``best/`` is built beside the old one and swapped in whole
    (:func:`raygym.atomic.replace_dir`); when no trial has weights to export (every trial
    failed, e.g. on a resume) an existing ``best/`` is kept, never replaced by an empty one.
    """
    from safetensors.torch import load_file

    from raygym.data.dataset import read_card
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import build_model_for

    card = read_card(config.data.prepared)
    tmp = out / f".best.tmp-{time.time_ns()}"
    tmp.mkdir(parents=True)
    exported: list[str] = []
    try:
        for row in [r for r in board.rows if r["status"] != "failed"][: config.search.top_k]:
            ckpt = trial_checkpoint(row)
            if ckpt is None or not (ckpt / "best.safetensors").exists():
                continue
            trial_config = apply_params(config, row["params"])
            model = build_model_for(trial_config, card.bands, card.num_classes)
            model.load_state_dict(load_file(str(ckpt / "best.safetensors")))
            state = json.loads((ckpt / "state.json").read_text())
            name = f"rank{len(exported) + 1}_{row['trial_id']}"
            export_artifact(
                tmp / name, model, trial_config, in_channels=card.bands, classes=card.classes,
                metrics=dict(state.get("best_metrics") or {}),
                dataset={"path": str(config.data.prepared), "config_hash": card.config_hash,
                         "splits": {k: v.get("rows") for k, v in card.splits.items()}},
                training={"trial_id": row["trial_id"], "status": row["status"],
                          "epochs_run": row["epochs"], "best_epoch": state.get("best_epoch"),
                          "params": row["params"], "search": config.name})
            exported.append(name)
        if exported or not (out / "best").exists():
            replace_dir(tmp, out / "best")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return [out / "best" / n for n in exported]
