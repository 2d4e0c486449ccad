"""Which top-k ensemble rule maps best? Real tiny models on the real S2 set (64 x 128).

Trains 12 small gym_unet models of mixed quality (filters 2/4/8, max_lr 1e-3/1e-2, 2-8 epochs,
up to 4 seeds), records each one's validation mean IoU (what its model card holds) and its
softmax on the test split (originals only), then for every 5-of-12 subset (a "search" that
found those 5) takes the top 3 by validation score and scores them on test: the best single
model, and their weighted mean under every margin in {0, 0.02, 0.05, 0.1, 0.2, 1} (1: no
margin) with score-proportional or equal weights (raygym's default: margin 0.05, score).
The members are cached in ROOT/members.npz; a second run only re-scores.

    RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_ensemble.py /tmp/ens_bench
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from raygym.config import validate_experiment
from raygym.data.batch import to_batch
from raygym.data.dataset import PreparedDataset
from raygym.data.prepare import prepare_dataset
from raygym.predict.ensemble import ensemble_weights
from raygym.train.loop import NumpyBatches, build_loss_for, build_model_for, fit
from raygym.train.metrics import metrics_from_confusion

S2 = Path("../shared/data/s2_ocean_beach_4class").resolve()  # run from the repository root
_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_parser.add_argument("workdir", type=Path,
                     help="folder for the prepared set, the members' cache and summary.json")
root = _parser.parse_args().workdir
root.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(2)


def config(filters: int, lr: float, epochs: int, seed: int):
    return validate_experiment({
        "name": "ens_bench",
        "data": {"images": str(S2 / "images"),
                 "extra_bands": [{"folder": str(S2 / "nir"), "key": r"^(.*)_ir(-\d+)$"}],
                 "labels": str(S2 / "labels"),
                 "classes": ["water", "surf", "wet_sand", "dry_land"],
                 "remap": {1: 0, 2: 1, 3: 2, 4: 3}, "unknown_labels": "ignore",
                 "target_size": [64, 128], "split": {"val": 0.25, "test": 0.3, "seed": 42},
                 "augment": {"copies": 1, "hflip": True}, "prepared": str(root / "ds")},
        "model": {"arch": "gym_unet", "filters": filters, "kernel": 3},
        "train": {"batch_size": 8, "max_epochs": epochs, "patience": 20, "max_lr": lr,
                  "start_lr": lr / 10, "min_lr": lr / 10, "rampup_epochs": 1,
                  "precision": "fp32", "seed": seed, "output_dir": str(root / "runs")},
    })


SPECS = [(2, 1e-3, 2, 0), (2, 1e-2, 6, 0), (4, 1e-3, 4, 0), (4, 1e-2, 8, 0),
         (8, 1e-3, 3, 0), (8, 1e-2, 8, 0), (4, 1e-2, 8, 1), (8, 1e-2, 8, 1),
         (4, 1e-2, 8, 2), (4, 1e-2, 8, 3), (8, 1e-2, 8, 2), (8, 1e-2, 8, 3)]

started = time.perf_counter()
base = config(*SPECS[0])
if not (root / "ds" / "card.json").is_file():
    prepare_dataset(base, log=lambda *a, **k: None)
ds = PreparedDataset(base.data.prepared)
card = ds.card
train, val = ds.load_numpy("train"), ds.load_numpy("val")
test = ds.load_numpy("test", originals_only=True)
x_test, y_test = to_batch(test.images, test.labels, test.valid_hw)
print(f"train {len(train.images)} val {len(val.images)} test {len(test.images)} samples")

val_scores, test_probs = [], []
cache = root / "members.npz"  # the trained members' scores and test softmax, reused
for spec in SPECS if not cache.is_file() else []:
    cfg = config(*spec)
    torch.manual_seed(spec[3])
    model = build_model_for(cfg, card.bands, card.num_classes)
    result = fit(cfg, model, build_loss_for(cfg, card), NumpyBatches(train, val, 8, seed=spec[3]),
                 card, device=torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        test_probs.append(torch.softmax(model(x_test), 1).numpy())
    val_scores.append(float(result.state.best_metrics["val_mean_iou"]))
    print(f"model {spec}: val mIoU {val_scores[-1]:.4f}", flush=True)
if cache.is_file():
    saved = np.load(cache)
    val_scores, test_probs = list(saved["val"]), list(saved["probs"])
else:
    np.savez(cache, val=np.array(val_scores), probs=np.stack(test_probs))


K = card.num_classes
truth = y_test.numpy().reshape(-1)
valid = truth != card.ignore_index
truth = truth[valid].astype(np.int64)


def miou(probs: np.ndarray) -> float:
    """Mean IoU of the argmax of ``probs`` (N, K, H, W) on the test labels (as evaluate)."""
    pred = probs.argmax(1).reshape(-1)[valid]
    cm = np.bincount(truth * K + pred, minlength=K * K).reshape(K, K)
    return float(metrics_from_confusion(cm)["mean_iou"])


test_scores = [miou(p) for p in test_probs]
rules = {"best single": None}
for margin in (0.0, 0.02, 0.05, 0.1, 0.2, 1.0):
    for mode in ("score", "equal"):
        rules[f"margin {margin}, {mode}"] = (mode, margin)
out: dict[str, list[float]] = {name: [] for name in rules}
dropped = []
for subset in itertools.combinations(range(len(SPECS)), 5):
    top = sorted(subset, key=lambda i: -val_scores[i])[:3]
    for name, rule in rules.items():
        if rule is None:
            out[name].append(test_scores[top[0]])
            continue
        w = ensemble_weights([val_scores[i] for i in top], margin=rule[1], weights=rule[0])
        out[name].append(miou(sum(wi * test_probs[i] for wi, i in zip(w, top, strict=True))))
        if name == "margin 0.05, score":
            dropped.append(sum(wi == 0 for wi in w))
summary = {"val": val_scores, "test": test_scores,
           "subsets": len(dropped), "mean_dropped": float(np.mean(dropped)),
           "rules": {k: {"mean": float(np.mean(v)), "median": float(np.median(v)),
                         "min": float(np.min(v))} for k, v in out.items()},
           "seconds": time.perf_counter() - started}
print(json.dumps(summary, indent=1))
(root / "summary.json").write_text(json.dumps(summary, indent=1))
