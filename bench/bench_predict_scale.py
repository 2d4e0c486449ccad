"""Does ``raygym predict``'s default scale pay? Scores a model on its dataset's test scenes at
full size, predicted at native resolution (``--scale 1``) and at the training scale
(``--scale auto``: resampled as prepare resized the training scenes), against the scenes'
labels read with prepare's own rules (remap, unknown labels, nodata).

    python bench/bench_predict_scale.py runs/<name>/best [MORE_MODELS ...] [--split test]

Each model needs its dataset (the model card's ``dataset.path``) still in place. Printed per
model: the training scale, and mean IoU (confusion matrix over all the split's scenes) at each
scale; ``raygym evaluate MODEL --split test`` gives the prepared (resized) split's figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from raygym.config import DataConfig
from raygym.data.dataset import read_card
from raygym.data.scenes import read_scene
from raygym.inference.artifact import read_model_card
from raygym.predict import Predictor
from raygym.train.metrics import confusion_matrix, metrics_from_confusion


def score(model: Path, split: str) -> dict[str, float]:
    """``{"auto": mean IoU, "1": mean IoU, "factor": training scale, "scenes": n}``."""
    card = read_model_card(model)
    dataset = read_card(Path(card.dataset["path"]))
    data = DataConfig.model_validate(dataset.data_config)
    predictor = Predictor([model], device="cpu")
    k = card.num_classes
    cms = {"1": torch.zeros(k, k, dtype=torch.int64), "auto": torch.zeros(k, k, dtype=torch.int64)}
    scenes = [s for s in dataset.sources if s["split"] == split]
    for source in scenes:
        files = [f["path"] for f in source["files"]]
        row = {"images": files[:-1], "label": files[-1], "bands": dataset.bands}
        image, label, _ = read_scene(row, data, dataset.dtype)
        target = torch.from_numpy(label.astype(np.int64))[None]
        for scale in cms:
            labels, _ = predictor.predict(image, scale=scale if scale == "auto" else 1.0)
            pred = torch.from_numpy(labels.astype(np.int64))[None]
            pred[target == dataset.ignore_index] = 0  # nodata: skipped by the target anyway
            cms[scale] += confusion_matrix(pred, target, k, dataset.ignore_index)
    out = {s: float(metrics_from_confusion(cm)["mean_iou"]) for s, cm in cms.items()}
    return {**out, "factor": predictor.resolve_scale("auto"), "scenes": len(scenes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="model artifact folders")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    args = parser.parse_args()
    print(f"{'model':<40} {'scenes':>6} {'train scale':>11} {'mIoU at 1':>10} "
          f"{'mIoU auto':>10}")
    for model in args.models:
        r = score(model, args.split)
        print(f"{str(model):<40} {r['scenes']:>6} {r['factor']:>11.4g} {r['1']:>10.3f} "
              f"{r['auto']:>10.3f}")


if __name__ == "__main__":
    main()
