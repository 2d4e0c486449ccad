"""Export of a search's top-k trials as self-contained model artifacts (``best/``)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raygym.atomic import replace_dir, temp_dir_beside
from raygym.config import ExperimentConfig
from raygym.inference.artifact import is_artifact_dir
from raygym.search.space import runs_key
from raygym.search.space_config import apply_params

if TYPE_CHECKING:
    from raygym.search.leaderboard import Leaderboard


def trial_checkpoint(row: dict[str, Any], storage: str, scratch: Path) -> Path | None:
    """A local copy of the checkpoint holding a leaderboard row's best weights, or None.

    Tune's checkpoints live wherever ``storage`` is (a local folder, NFS, ``s3://``...): each
    is fetched with ``ray.train.Checkpoint.to_directory`` into ``scratch``, the one path for
    every storage. Single-worker trials report theirs through Tune (``row["checkpoint"]``);
    multi-worker trials' Train runs wrote ``checkpoint_<timestamp>`` folders under
    ``<storage>/train_runs/<trial_id>`` (the latest epoch's holds the best weights so far),
    found by listing when the storage is local.
    """
    from ray.train import Checkpoint

    from raygym.compat import storage_filesystem
    from raygym.train.loop import newest_whole_checkpoint

    refs = [str(row["checkpoint"])] if row.get("checkpoint") else []
    trial_path = Path(str(row.get("trial_path", "")))
    run = trial_path.parent.parent / "train_runs" / str(row["trial_id"])
    newest = newest_whole_checkpoint(run.glob("checkpoint_*"))  # as a resume picks it
    refs += [str(newest)] if newest else []
    filesystem, _ = storage_filesystem(storage)
    for ref in refs:
        target = scratch / str(row["trial_id"])
        try:
            return Path(Checkpoint(path=ref, filesystem=filesystem).to_directory(str(target)))
        except (FileNotFoundError, OSError):  # removed since (num_to_keep), or unreachable
            shutil.rmtree(target, ignore_errors=True)
    return None


def is_best_dir(path: Path) -> bool:
    """A ``best/`` folder raygym made: nothing in it but ``rank<N>_<trial>`` model artifacts
    (and hidden leftovers), so replacing it can delete nothing of the user's."""
    if not path.is_dir():
        return False
    return all(p.name.startswith(".") or (re.fullmatch(r"rank\d+_.+", p.name) and p.is_dir()
                                          and is_artifact_dir(p)) for p in path.iterdir())


def export_top_models(board: Leaderboard, config: ExperimentConfig, out: Path) -> list[Path]:
    """``out/best/rank<N>_<trial>/`` artifacts of the ``search.top_k`` best configurations,
    each by its best run: the runs of one configuration (its repeats, a recording's seeds)
    are one model to compare or ensemble, not several.

    The new ``best/`` is built beside the old one and swapped in whole
    (:func:`raygym.atomic.replace_dir`); when no trial has weights to export (every trial
    failed, e.g. on a resume) an existing ``best/`` is kept, never replaced by an empty one.
    """
    from safetensors.torch import load_file

    from raygym.data.dataset import read_card
    from raygym.inference.artifact import export_artifact
    from raygym.search.tune import tune_storage
    from raygym.train.loop import build_model_for

    card = read_card(config.data.prepared)
    storage = tune_storage(config, out)
    tmp = temp_dir_beside(out / "best")
    exported: list[str] = []
    done: set[str] = set()  # configurations exported (runs_key)
    try:
        for row in board.rows:
            if len(exported) == config.search.top_k:
                break
            if row["status"] == "failed" or runs_key(row["params"]) in done:
                continue
            ckpt = trial_checkpoint(row, storage, tmp / ".checkpoints")
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
                dataset=card.model_dataset(config.data.prepared),
                training={"trial_id": row["trial_id"], "status": row["status"],
                          "epochs_run": row["epochs"], "best_epoch": state.get("best_epoch"),
                          "params": row["params"], "search": config.name})
            exported.append(name)
            done.add(runs_key(row["params"]))
        shutil.rmtree(tmp / ".checkpoints", ignore_errors=True)
        if exported or not (out / "best").exists():
            replace_dir(tmp, out / "best", owned=is_best_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return [out / "best" / n for n in exported]
