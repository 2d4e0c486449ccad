"""``raygym``'s argument parser: every verb, its options and their checks.

A bad argument is one line on stderr naming it and the fix (exit 2), as every other error;
:mod:`raygym.cli` gives each verb the function that runs it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

from raygym import __version__

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (fix: see {self.prog} --help)\n")


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(_number(text, int))
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _port(text: str) -> int:
    value = _int_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1..65535, got {value}")
    return value


def _fraction(text: str) -> float:
    """A float in [0, 1)."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text, float)
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _scale(text: str) -> float | str:
    """``auto``, or a resample factor in (0, 8]: beyond 8x the resampled image only costs
    memory."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = _number(text, float)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None
    if not 0 < value <= 8:
        raise argparse.ArgumentTypeError(f"must be in (0, 8], got {value}")
    return value


class _Help(argparse.HelpFormatter):
    """argparse's wrapping, except for the closing example, kept as written (one command a
    reader can copy)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser(handlers: Mapping[str, Handler]) -> argparse.ArgumentParser:
    """Every verb, its options (each help text states its default) and one example;
    ``handlers`` maps each verb to the function that runs it (set as ``args.handler``)."""
    p = _Parser(
        prog="raygym", formatter_class=_Help,
        description="Ray-distributed hyperparameter search for geoscientific image segmentation "
        "(Segmentation Gym's models and workflow on PyTorch + Ray).",
        epilog="example:\n  raygym demo-data demo_data && raygym search "
        "search_spaces/demo.yaml",
    )
    p.add_argument("--version", action="version", version=f"raygym {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Help,
                            epilog=f"example:\n  {example}")
        sp.set_defaults(handler=handlers[name])
        return sp

    def with_space(sp: argparse.ArgumentParser, what: str) -> None:
        """SPACE and the options that run it (``search`` and ``record``)."""
        sp.add_argument("space", type=Path, help="experiment YAML with search distributions")
        sp.add_argument("--dry-run", action="store_true",
                        help="print the parsed space and budget, run nothing (default: run)")
        grows = (" or, with a larger search.num_samples, grow a finished one" if what == "search"
                 else "")
        sp.add_argument("--resume", action="store_true", help=f"continue a stopped {what}"
                        f"{grows} (default: a new {what}; refused where one exists)")
        sp.add_argument("--retry-errored", action="store_true", help="with --resume: run "
                        "failed trials again (default: keep them failed)")

    def with_set(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.max_epochs=3 "
                        "(repeatable; default: none)")
        sp.add_argument("--address", default=None, metavar="ADDR",
                        help="run on an existing Ray cluster: 'auto', 'HOST:6379' or "
                        "'ray://HOST:10001' (default: resources.address, else a local Ray)")

    sp = add("prepare", "Pair, validate, remap, resize/pad, split, augment and "
             "shard imagery + labels into a model-ready dataset (Ray Data).",
             "raygym prepare examples/demo_train.yaml")
    sp.add_argument("config", type=Path, help="experiment YAML")
    sp.add_argument("--overwrite", action="store_true", help="replace a dataset made from "
                    "different settings (default: refuse)")
    with_set(sp)

    sp = add("train", "Train one model from an experiment YAML on Ray Train "
             "(DDP across resources.workers_per_trial workers).",
             "raygym train examples/demo_train.yaml --set train.max_epochs=5")
    sp.add_argument("config", type=Path, help="experiment YAML (no search distributions)")
    sp.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                    help="continue a stopped run from its last checkpoint (default: a new run)")
    sp.add_argument("--name", default=None, help="run name (default: experiment name + time)")
    with_set(sp)

    sp = add("search", "Hyperparameter search (Ray Tune + Optuna TPE + ASHA) over "
             "the distributions in SPACE; exports the best models.",
             "raygym search search_spaces/landsat.yaml --smoke-test")
    with_space(sp, "search")
    sp.add_argument("--smoke-test", action="store_true", help="same code path, tiny sizes: "
                    "4 trials, 3 epochs, ~64 px (default: the sizes in SPACE)")
    sp.add_argument("--replay", type=Path, default=None, metavar="TABLE",
                    help="rehearse the search on a recorded curve table (bench/curves/*.csv, "
                    "gzipped or not): trials replay recorded learning curves instead of "
                    "training, results in results/<name>-replay, replaced when run again "
                    "(default: train)")
    sp.add_argument("--searches", type=_int_at_least(2), default=None, metavar="N",
                    help="with --replay: N searches in simulated time (seconds, no Ray), "
                    "at search seeds search.seed.., beside raygym's defaults, random search "
                    "and the grid; prints how often and how soon each finds the grid's best "
                    "(default: one search through Ray Tune)")
    sp.add_argument("--time-budget", default=None, metavar="DURATION",
                    help="stop this run after so much wall time (e.g. 45m, 8h, 1h30m; as "
                    "--set search.time_budget=...): what finished is written, part-way "
                    "trials keep their checkpoints, --resume goes on (default: "
                    "search.time_budget, else none)")
    with_set(sp)

    sp = add("record", "Record a learning-curve table of your own data: every "
             "configuration of SPACE's grid trained at each seed to train.max_epochs, no "
             "early stopping, every epoch's scores in one CSV, for `search --replay`.",
             "raygym record search_spaces/demo.yaml --seeds 0 1 2 --points 3")
    with_space(sp, "recording")
    sp.add_argument("--seeds", type=_int_at_least(0), nargs="+", default=[0, 1, 2],
                    metavar="SEED",
                    help="training seeds, each a run of every configuration (default: 0 1 2: "
                    "with fewer, a rehearsal cannot tell a better configuration from a luckier "
                    "run)")
    sp.add_argument("--add", action="store_true",
                    help="add runs at the --seeds an existing table lacks (same space and "
                    "settings; recorded in results/<name>-record-add-<seeds>/), e.g. when its "
                    "noise line asks for more seeds")
    sp.add_argument("--points", type=_int_at_least(2), default=3, metavar="N",
                    help="values recorded across each numeric range, log-spaced for "
                    "loguniform (default: %(default)s; choices keep their values)")
    sp.add_argument("--out", type=Path, default=None, metavar="TABLE",
                    help="where the CSV goes (default: results/<name>-record/curves.csv)")
    with_set(sp)

    sp = add("evaluate", "Score an exported model (or a search's top-k) on a "
             "prepared split, or on labelled scenes at full size (--data): metrics, confusion "
             "matrix, per-image IoU, overlays.",
             "raygym evaluate results/demo --top-k 3 --split test")
    sp.add_argument("model", type=Path, nargs="+", help="model artifact folder or search "
                    "results folder; several model folders are scored on the same split and "
                    "compared (each against the first by a paired interval)")
    sp.add_argument("--split", default=None, choices=["train", "val", "test"],
                    help="prepared split to score (default: test)")
    sp.add_argument("--top-k", type=_int_at_least(1), default=1, metavar="K",
                    help="score each of a search's best K models and compare them "
                    "(default: %(default)s)")
    sp.add_argument("--ensemble", action="store_true",
                    help="with --top-k: also score the top-k's ensemble, as `raygym predict "
                    "--top-k` maps with it, against the best model (default: each model alone)")
    sp.add_argument("--ensemble-margin", type=_non_negative, default=0.05, metavar="M",
                    help="with --ensemble: as raygym predict's (default: %(default)s)")
    sp.add_argument("--ensemble-weights", choices=["score", "equal"], default="score",
                    help="with --ensemble: as raygym predict's (default: %(default)s)")
    sp.add_argument("--dataset", type=Path, default=None, help="prepared dataset (default: the "
                    "one the model was trained on)")
    sp.add_argument("--ray", action="store_true",
                    help="batch inference with Ray Data (default: in this process)")
    sp.add_argument("--address", default=None, metavar="ADDR",
                    help="with --ray: join this Ray cluster ('auto', 'HOST:6379', "
                    "'ray://HOST:10001'; its nodes must see the files) (default: RAY_ADDRESS, "
                    "else a local Ray)")
    sp.add_argument("--out", type=Path, default=None, help="write the reports here "
                    "(default: inside each model folder, which must then be writable)")
    sp.add_argument("--data", type=Path, default=None, metavar="YAML",
                    help="score every scene this experiment file's data: section pairs (e.g. "
                    "a site the model never saw): labels read by prepare's rules, images "
                    "read and predicted at full size as `raygym predict` does; instead of "
                    "--split / --dataset")
    sp.add_argument("--scale", type=_scale, default="auto",
                    help="with --data: as raygym predict --scale (default: %(default)s)")
    sp.add_argument("--tile", type=_int_at_least(1), default=None, metavar="PX",
                    help="with --data: sliding-window tile (default: the model's input size)")
    sp.add_argument("--overlap", type=_fraction, default=0.25,
                    help="with --data: window overlap, in [0, 1) (default: %(default)s)")
    sp.add_argument("--tta", action="store_true", help="with --data: also average flips")

    sp = add("predict", "Map new imagery with an exported model: label rasters "
             "(GeoTIFF keeps CRS/transform), overlays, class areas.",
             "raygym predict results/demo --top-k 3 --tta demo_data/images --band "
             "demo_data/nir --out maps")
    sp.add_argument("model", type=Path, help="model artifact folder or search results folder")
    sp.add_argument("images", type=Path, nargs="+", help="image files or folders")
    sp.add_argument("--out", type=Path, required=True, help="output folder (required)")
    sp.add_argument("--band", type=Path, action="append", default=[],
                    help="folder with one extra band per image, repeated in training order "
                    "(default: none)")
    sp.add_argument("--image-bands", type=int, nargs="+", metavar="N",
                    help="the image files' bands to read, numbered from 1, in the model's "
                    "order, for stacks ordered otherwise than its training imagery (default: "
                    "the model's data.image_bands, else every band)")
    sp.add_argument("--top-k", type=_int_at_least(1), default=1, metavar="K",
                    help="ensemble a search's best K models (default: %(default)s)")
    sp.add_argument("--ensemble-margin", type=_non_negative, default=0.05, metavar="M",
                    help="with --top-k: leave out models whose validation mean IoU is more "
                    "than M below the best one's (default: %(default)s)")
    sp.add_argument("--ensemble-weights", choices=["score", "equal"], default="score",
                    help="with --top-k: weight the kept models' softmax in proportion to "
                    "their validation mean IoU, or equally (default: %(default)s)")
    sp.add_argument("--tta", action="store_true",
                    help="also average horizontal/vertical flips (default: off)")
    sp.add_argument("--tile", type=_int_at_least(1), default=None, metavar="PX",
                    help="sliding-window tile in pixels, cut to the image where it reaches "
                    "past it (default: the model's input size)")
    sp.add_argument("--overlap", type=_fraction, default=0.25, help="fraction of a tile "
                    "shared with its neighbour, in [0, 1) (default: %(default)s)")
    sp.add_argument("--scale", type=_scale, default="auto",
                    help="resample factor before prediction (labels come back at the input "
                    "size); auto: the factor by which training resized its scenes, so the "
                    "model sees the ground at the sample distance it learnt; 1: native "
                    "resolution (default: %(default)s)")
    sp.add_argument("--probabilities", action="store_true",
                    help="also write class probability rasters (default: off)")
    sp.add_argument("--ray", action="store_true",
                    help="run as a Ray Data batch job (default: in this process)")
    sp.add_argument("--address", default=None, metavar="ADDR",
                    help="with --ray: join this Ray cluster ('auto', 'HOST:6379', "
                    "'ray://HOST:10001'; its nodes must see the files) (default: RAY_ADDRESS, "
                    "else a local Ray)")
    sp.add_argument("--overwrite", action="store_true", help="replace output files that "
                    "already exist in --out (default: refuse)")
    sp.add_argument("--polygons", action="store_true", help="also write the class map as "
                    "polygons (<stem>_polygons.gpkg: class id, name, area in m2); needs the "
                    "vector extra: pip install 'raygym[vector]' (default: off)")
    sp.add_argument("--min-area", type=float, default=0.0, metavar="AREA",
                    help="with --polygons: drop polygons smaller than this (m2 in a projected "
                    "CRS, else pixels) (default: %(default)s, keep all)")

    sp = add("export", "Export a model artifact for other runtimes: an ONNX file "
             "(needs the onnx extra: pip install 'raygym[onnx]').",
             "raygym export results/demo --onnx --out demo.onnx")
    sp.add_argument("model", type=Path, help="model artifact folder, or a search results "
                    "folder (its best model)")
    sp.add_argument("--onnx", action="store_true", help="write an ONNX file: dynamic batch, "
                    "H and W (multiples of the model's size multiple), checked with ONNX Runtime "
                    "(required: the one format so far)")
    sp.add_argument("--out", type=Path, default=None, metavar="FILE",
                    help="the .onnx file to write (default: model.onnx in the artifact folder)")
    sp.add_argument("--opset", type=_int_at_least(18), default=None, metavar="N",
                    help="ONNX opset version, at least 18 (default: 20)")

    sp = add("report", "One self-contained HTML report (+ Markdown) of a search.",
             "raygym report results/demo --out demo_report.html")
    sp.add_argument("results", type=Path, help="a search's results folder (results/<name>)")
    sp.add_argument("--out", type=Path, default=None, metavar="HTML",
                    help="the .html file to write, its figures in a folder beside it "
                    "(default: RESULTS/report.html)")

    sp = add("dashboard", "Serve optuna-dashboard and TensorBoard for a results "
             "folder on 127.0.0.1 (live during a search); needs the dashboard extra: pip install "
             "'raygym[dashboard]'.", "raygym dashboard results/demo")
    sp.add_argument("results", type=Path, help="a search's results folder (results/<name>)")
    sp.add_argument("--host", default="127.0.0.1", help="address to serve on; another than "
                    "loopback needs --allow-remote (default: %(default)s)")
    sp.add_argument("--optuna-port", type=_port, default=8080, help="optuna-dashboard's port, "
                    "or the next free one (default: %(default)s)")
    sp.add_argument("--tensorboard-port", type=_port, default=6006, help="TensorBoard's port, "
                    "or the next free one (default: %(default)s)")
    sp.add_argument("--allow-remote", action="store_true",
                    help="allow a --host other than loopback (the dashboards have no "
                    "authentication; optuna-dashboard can delete studies) (default: refuse)")

    sp = add("models", "List models, or print one model's layers, trainable "
             "parameters and FLOPs per image.",
             "raygym models gym_resunet --filters 8 --bands 4 --size 256")
    sp.add_argument("name", nargs="?", help="architecture (default: list them all)")
    # None: the config schema's default (raygym.models.spec), as in an experiment file;
    # tests/test_cli.py checks these numbers against it (importing it here costs 0.2 s a call)
    sp.add_argument("--filters", type=_int_at_least(1), metavar="N", help="Gym networks: "
                    "channels of the first level (default: model.filters' default, 8)")
    sp.add_argument("--kernel", type=_int_at_least(1), metavar="N", help="Gym networks: "
                    "convolution kernel (default: model.kernel's default, 7)")
    sp.add_argument("--encoder", help="smp architectures: encoder (default: model.encoder's "
                    "default, resnet18)")
    sp.add_argument("--bands", type=_int_at_least(1), default=3,
                    help="input bands (default: %(default)s)")
    sp.add_argument("--classes", type=_int_at_least(2), default=4,
                    help="output classes (default: %(default)s)")
    sp.add_argument("--size", type=_int_at_least(1), default=256, metavar="PX",
                    help="square input size for the FLOPs count (default: %(default)s)")

    sp = add("convert-config", "Turn a Segmentation Gym JSON config into a raygym "
             "experiment YAML.", "raygym convert-config gym_config.json --images data/images "
             "--labels data/labels --out experiment.yaml")
    sp.add_argument("gym_json", type=Path, help="Segmentation Gym config (.json)")
    sp.add_argument("--out", type=Path, default=None, help="YAML to write, never over an "
                    "existing file (default: GYM_JSON with a .yaml suffix)")
    sp.add_argument("--images", type=Path, default=None, help="image folder to put in data "
                    "(default: images/, a placeholder to edit)")
    sp.add_argument("--labels", type=Path, default=None, help="label folder to put in data "
                    "(default: labels/, a placeholder to edit)")

    sp = add("demo-data", "Write the built-in synthetic coastal demo dataset "
             "(RGB + NIR, 4 classes; seeded, no download).", "raygym demo-data demo_data")
    sp.add_argument("out", type=Path, help="folder to write (images/, nir/, labels/, pairs.csv, "
                    "README.md; an earlier demo's are replaced, a file of yours is refused)")
    sp.add_argument("--scenes", type=_int_at_least(1), default=48,
                    help="number of scenes (default: %(default)s)")
    sp.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")

    sp = add("cluster", "Start/stop a local multi-node Ray cluster on 127.0.0.1 "
             "for trying the distributed path.", "raygym cluster up --workers 2 --cpus 1")
    sp.add_argument("action", choices=["up", "down", "status"], help="start, stop or describe "
                    "the cluster")
    sp.add_argument("--workers", type=_int_at_least(0), default=1,
                    help="worker nodes besides the head (default: %(default)s)")
    sp.add_argument("--cpus", type=_int_at_least(1), default=1,
                    help="logical CPUs per node (default: %(default)s)")
    sp.add_argument("--port", type=_port, default=6390,
                    help="the head's GCS port (default: %(default)s)")
    sp.add_argument("--dashboard-port", type=_port, default=8265,
                    help="Ray dashboard and job server port (default: %(default)s)")
    sp.add_argument("--state-dir", type=Path, default=Path(".raygym-cluster"),
                    help="where cluster.json and node logs go (default: %(default)s)")
    return p
