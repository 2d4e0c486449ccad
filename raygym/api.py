"""raygym from Python: thin wrappers over the one code path of each job, exported by
``raygym/__init__.py`` (imported on first use, so ``import raygym`` stays free of torch and
Ray).

- :func:`load_model`: a model artifact, checksums verified, ready to run
  (:func:`raygym.inference.scoring.load_model`).
- :func:`predict_array`: one ``(H, W, C)`` array -> class ids and probabilities
  (:class:`raygym.predict.predictor.Predictor`: sliding window, blending, TTA).
- :func:`predict_file`: image files / folders -> rasters, overlays and ``summary.csv``
  (:func:`raygym.predict.predict_files`, what ``raygym predict`` runs).
- :func:`prepare_dataset`, :func:`train_model`, :func:`evaluate_model`: what ``raygym
  prepare``, ``train`` and ``evaluate`` run, returning the dataset folder, the run folder and
  the scores (``train_model``, not ``train``: ``raygym.train`` is the package).
- :func:`run_search`: a search from an experiment file or mapping
  (:func:`raygym.search.run.search_experiment`, what ``raygym search`` runs). Not named
  ``search``: ``raygym.search`` is the package, which would shadow the function.
- :func:`rehearse_search`: many simulated searches of an experiment's settings on a recorded
  curve table, beside the defaults, random search and the grid
  (:func:`raygym.search.rehearse.rehearse`, what ``raygym search --replay --searches`` runs).
- :func:`read_leaderboard`: a search's ``leaderboard.csv`` as typed rows
  (:func:`raygym.report.results.load_results`, what ``raygym report`` reads).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raygym.errors import RaygymError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from rich.console import Console

    from raygym.config import ExperimentConfig
    from raygym.evaluate import EvaluationResult
    from raygym.inference.scoring import LoadedModel
    from raygym.predict import PredictResult
    from raygym.predict.predictor import Predictor
    from raygym.search.space_config import SearchSpace

PathLike = str | Path


def load_model(path: PathLike, *, device: str | torch.device = "auto",
               precision: str = "fp32") -> LoadedModel:
    """The model artifact at ``path`` (``runs/<name>/best``, ``results/<x>/best/rank1_*``),
    checksums verified, in eval mode on ``device`` (``auto``: CUDA when present).

    ``precision``: ``fp32`` | ``bf16-mixed`` | ``fp16-mixed`` | ``auto``.
    """
    from raygym.inference.scoring import load_model as load

    return load(Path(path), device=device, precision=precision)


def _folder(model: LoadedModel) -> Path:
    """The artifact folder a loaded model came from (predict loads its models itself)."""
    if model.path is None:
        raise RaygymError("this LoadedModel has no artifact folder to predict with",
                          fix="load it with raygym.load_model(path)")
    return model.path


def _predictor(model: LoadedModel | Predictor | PathLike) -> Predictor:
    from raygym.inference.scoring import LoadedModel
    from raygym.predict.predictor import Predictor, resolve_models

    if isinstance(model, Predictor):
        return model
    if isinstance(model, LoadedModel):
        return Predictor([_folder(model)], device=model.device, precision=model.precision)
    return Predictor(resolve_models(Path(model), 1))


def predict_array(model: LoadedModel | Predictor | PathLike, image: np.ndarray, *,
                  tile: int | None = None, overlap: float = 0.25, tta: bool = False,
                  scale: float | str = "auto", batch_size: int = 8
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Predict one whole image, as ``raygym predict`` does (rules in :mod:`raygym.predict`).

    Args:
        model: a :class:`Predictor` (used as is: build one to predict many arrays), a
            :func:`load_model` result or an artifact / results folder (loaded for this call).
        image: ``(H, W, C)`` raw digital numbers (uint8 / uint16 / float), ``C`` the model's
            bands in training order, any size; standardised here like in training. A pixel
            with a NaN band is nodata: label 255, left out of the statistics.
        tile, overlap, tta, scale, batch_size: see :meth:`Predictor.predict` (``tile`` in
            pixels, default the model's input size; ``scale`` ``"auto"``: resampled as
            training resized its scenes).

    Returns:
        ``(labels (H, W) uint8 class ids, probs (K, H, W) float32 softmax)`` on the input grid.
    """
    return _predictor(model).predict(image, tile=tile, overlap=overlap, tta=tta, scale=scale,
                                     batch_size=batch_size)


def predict_file(model: LoadedModel | PathLike, images: PathLike | Sequence[PathLike],
                 out: PathLike, **options: Any) -> PredictResult:
    """Predict image files / folders into ``out``, as ``raygym predict`` does.

    Args:
        model: a :func:`load_model` result, an artifact folder or a search's results folder.
        images: files and / or folders (PNG, JPEG, TIFF, GeoTIFF).
        out: output folder (label rasters, overlays, ``summary.csv``).
        options: any other :class:`raygym.predict.PredictOptions` field (``top_k``,
            ``ensemble_margin``, ``ensemble_weights``, ``extra_bands``, ``tile``,
            ``overlap``, ``tta``, ``scale``, ``probabilities`` ...). ``top_k`` models are
            kept and weighted by :mod:`raygym.predict.ensemble`'s rule, as in the command.

    Returns:
        :class:`raygym.predict.PredictResult` (``rows``: one summary dict per image;
        ``ensemble``: the models used and their weights).
    """
    from raygym.inference.scoring import LoadedModel
    from raygym.predict import PredictOptions, predict_files

    if isinstance(model, LoadedModel):
        model = [_folder(model)]
    given = [images] if isinstance(images, str | Path) else list(images)
    source = model if isinstance(model, list) else Path(model)
    return predict_files(source, [Path(p) for p in given], PredictOptions(out=Path(out),
                                                                          **options))


_MAPPING = "<python: mapping>"  # how a mapping given for an experiment is named


def _experiment(experiment: PathLike | Mapping[str, Any]
                | tuple[ExperimentConfig, SearchSpace],
                overrides: Mapping[str, Any] | None
                ) -> tuple[ExperimentConfig, SearchSpace, Path]:
    """(config, space, file named in ``search.json``) through :func:`load_experiment`, the
    one validation path; a mapping goes through it as a temporary YAML file."""
    from raygym.config.base import dump_yaml_text
    from raygym.search.space_config import load_experiment

    if isinstance(experiment, tuple):
        if overrides:
            raise RaygymError("overrides apply to an experiment file or mapping, not to a "
                              "loaded (config, space)", fix="set the values in the config")
        config, space = experiment
        return config, space, Path("<python: ExperimentConfig>")
    if isinstance(experiment, Mapping):
        with tempfile.TemporaryDirectory(prefix="raygym-api-") as tmp:
            file = Path(tmp) / "experiment.yaml"
            file.write_text(dump_yaml_text(dict(experiment)))
            try:
                # relative paths resolve against the working directory, as for a file
                config, space = load_experiment(file, overrides=overrides, base_dir=Path.cwd())
            except RaygymError as err:
                if err.file != str(file):
                    raise
                err.file = None  # the temporary file is not the user's: name the mapping
                raise err.in_file(_MAPPING) from None
        return config, space, Path(_MAPPING)
    return (*load_experiment(Path(experiment), overrides=overrides), Path(experiment))


def _default_console() -> Console:
    from raygym.cli import make_console  # the commands' console: paths never wrapped

    return make_console()  # type: ignore[no-any-return]


def prepare_dataset(experiment: PathLike | Mapping[str, Any], *,
                    overrides: Mapping[str, Any] | None = None, overwrite: bool = False,
                    console: Console | None = None) -> Path:
    """Build the experiment's dataset (``data.prepared``), as ``raygym prepare`` does; returns
    its folder. One already prepared from the same ``data`` settings is kept as it is.

    Args:
        experiment: an experiment or search-space YAML file, or its content as a mapping
            (only ``data`` is read, so a search's file prepares that search's dataset).
        overrides: dotted keys to set first (``--set``); overwrite: as ``--overwrite``.

    Raises:
        RaygymError: a bad file, data that cannot be paired or read, or a dataset folder
            prepared from other settings (without ``overwrite``).
    """
    from raygym.data.prepare import prepare_dataset as prepare
    from raygym.data.summary import print_prepare_summary

    config, _, _ = _experiment(experiment, overrides)
    console = console or _default_console()
    result = prepare(config, overwrite=overwrite, log=console.print)
    print_prepare_summary(result, console)
    return result.path


def train_model(experiment: PathLike | Mapping[str, Any], *,
                overrides: Mapping[str, Any] | None = None, name: str | None = None,
                resume: PathLike | None = None, console: Console | None = None) -> Path:
    """Train one model on Ray Train, as ``raygym train`` does (preparing the dataset on first
    use); returns the run folder, whose ``best/`` is the exported model (:func:`load_model`,
    :func:`evaluate_model`) and ``metrics.csv`` the per-epoch scores.

    Args:
        experiment: an experiment YAML file or its content as a mapping; every value fixed
            (a distribution is refused, naming its key: search it with :func:`run_search`).
        overrides: dotted keys to set first (``--set``); name: the run folder's name under
            ``train.output_dir`` (``--name``; default ``<name>-<time>``); resume: a stopped
            run's folder to continue (``--resume``).

    Raises:
        RaygymError: bad input; a run that diverged or crashed.
        KeyboardInterrupt: interrupted; the run's last checkpoint is kept for ``resume``.
    """
    from raygym.search.space_config import require_fixed
    from raygym.train.run import train_experiment

    config, space, file = _experiment(experiment, overrides)
    require_fixed(space, "train", str(file))
    return train_experiment(config, resume=Path(resume) if resume is not None else None,
                            console=console or _default_console(), run_name=name)


def evaluate_model(model: PathLike, *, split: str = "test", dataset: PathLike | None = None,
                   data: PathLike | None = None, out: PathLike | None = None,
                   use_ray: bool = False, top_k: int = 1, ensemble_margin: float = 0.05,
                   ensemble_weights: str = "score", **scene_options: Any) -> EvaluationResult:
    """Score a model as ``raygym evaluate`` does, and write the same report files.

    Args:
        model: an artifact folder (``runs/<name>/best``) or a search's results folder (its
            rank 1; a loop over ``best/rank*`` scores the others).
        top_k: more than 1 (a search's results folder): the ensemble of its best ``top_k``,
            as ``predict_file(top_k=...)`` maps with it (``ensemble_margin``,
            ``ensemble_weights``: ``raygym evaluate --top-k K --ensemble``).
        split: ``train`` | ``val`` | ``test`` of the prepared dataset (``dataset``, default
            the one the model was trained on).
        data: instead of a prepared split, an experiment YAML whose ``data:`` names labelled
            scenes, scored at full size as ``raygym predict`` maps them (``--data``;
            ``scene_options``: ``scale``, ``tile``, ``overlap``, ``tta``).
        out: the folder the report files go to (default ``evaluation_<split>``, or
            ``evaluation_scenes_<file stem>``, inside the model folder).
        use_ray: score the split as Ray Data batch inference (``--ray``).

    Returns:
        :class:`raygym.evaluate.EvaluationResult`: ``metrics`` (``mean_iou``, per-class IoU,
        F1, ...), ``confusion`` (K, K), ``per_image`` rows, ``intervals`` (95 % bootstrap
        intervals of the mean and per-class IoU over the independent units: images, a chipped
        scene, a data.split.group; ``unit_confusions`` for paired comparisons with
        :func:`raygym.evaluate_intervals.difference_interval`) and ``files`` written.
    """
    from raygym.evaluate import evaluate_model_on_split
    from raygym.predict import resolve_models
    from raygym.predict.ensemble import check_rule

    check_rule(ensemble_margin, ensemble_weights)
    model_dirs = resolve_models(Path(model), top_k)
    rule: dict[str, Any] = {"ensemble_margin": ensemble_margin,
                            "ensemble_weights": ensemble_weights}
    dataset_dir = Path(dataset) if dataset is not None else None
    out_dir = Path(out) if out is not None else None
    if data is not None:
        if dataset is not None or use_ray or split != "test":
            raise RaygymError("dataset, split and use_ray apply to a prepared dataset; data "
                              "scores every scene its file pairs, at full size",
                              key="data", fix="give data or a prepared split, not both")
        from raygym.evaluate_scenes import evaluate_model_on_scenes

        return evaluate_model_on_scenes(model_dirs, Path(data), out_dir=out_dir,
                                        **scene_options, **rule)
    if scene_options:
        raise RaygymError(f"{sorted(scene_options)[0]} applies to full-size scenes (data=...)",
                          key=sorted(scene_options)[0], fix="add data=SITE.yaml, or drop it")
    return evaluate_model_on_split(model_dirs, dataset_dir, split, use_ray=use_ray,
                                   out_dir=out_dir, **rule)


def run_search(experiment: PathLike | Mapping[str, Any] | tuple[ExperimentConfig, SearchSpace],
               *, overrides: Mapping[str, Any] | None = None, resume: bool = False,
               retry_errored: bool = False, smoke_test: bool = False,
               replay: PathLike | None = None, console: Console | None = None) -> Path:
    """Run (or resume) a hyperparameter search, as ``raygym search`` does; returns its
    results folder (``leaderboard.csv``, ``best/rank<N>_*`` artifacts, ``search.json``).

    Args:
        experiment: an experiment YAML file, the same content as a mapping (relative paths
            resolve against the working directory), or ``load_experiment``'s (config, space).
        overrides: dotted keys to set first, e.g. ``{"train.max_epochs": 3}`` (``--set``).
        resume, retry_errored, smoke_test, replay: as the command's ``--resume``,
            ``--retry-errored``, ``--smoke-test`` and ``--replay TABLE``. ``resume`` with a
            larger ``search.num_samples`` in ``overrides`` grows a finished search.

    Raises:
        RaygymError: a bad experiment, or every trial failed.
        KeyboardInterrupt: the search was interrupted (Ctrl-C); what it ran is written, and
            ``resume=True`` goes on with it. A search stopped by ``search.time_budget``
            returns (its ``search.json`` says ``"status": "stopped"``); ``resume=True`` goes
            on with it too.
    """
    from raygym.errors import EXIT_INTERRUPTED
    from raygym.search.run import results_dir, search_config, search_experiment

    config, space, file = _experiment(experiment, overrides)
    code = search_experiment(config, space, space_file=file, resume=resume,
                             retry_errored=retry_errored, smoke_test=smoke_test,
                             replay=Path(replay) if replay is not None else None,
                             console=console)
    if code == EXIT_INTERRUPTED:  # Tune caught the Ctrl-C and returned as if done
        raise KeyboardInterrupt
    return results_dir(search_config(config, smoke_test=smoke_test, replay=replay is not None))


def rehearse_search(experiment: PathLike | Mapping[str, Any]
                    | tuple[ExperimentConfig, SearchSpace], table: PathLike, *,
                    searches: int = 30, overrides: Mapping[str, Any] | None = None,
                    workers: int | None = 1) -> dict[str, Any]:
    """``searches`` simulated searches of the experiment's settings on the curve ``table``
    (``raygym record``'s ``curves.csv``), beside raygym's defaults, random search and the
    grid, as ``raygym search --replay TABLE --searches N`` prints them; nothing is written.

    Returns the table's figures and ``rows``: per row ``name``, ``settings`` and
    :func:`raygym.search.simulate.summarize`'s figures (``to_best`` quartiles as shares of
    the grid's epochs, ``reached``, ``top1`` / ``top3`` at 0.25 and 0.5 of them,
    ``anytime``; ``unseen_at_50``: the hand-back at 0.5 scored on a recorded training seed the
    search never replayed, None below 3 seeds; the table's own best so judged:
    ``best_unseen``). ``workers``: processes, at most one per row (default 1: this process;
    None: one per CPU, spawned, so a script that calls this needs an
    ``if __name__ == "__main__":`` guard).

    Raises:
        RaygymError: a bad experiment, or a table that cannot replay its space.
    """
    from raygym.search.rehearse import rehearse
    from raygym.search.run import check_space, replay_table

    config, space, file = _experiment(experiment, overrides)
    check_space(config, space, str(file))
    return rehearse(config, space, replay_table(config, space, Path(table)),
                    searches=searches, workers=workers)


def read_leaderboard(results: PathLike) -> list[dict[str, Any]]:
    """A search's ``leaderboard.csv``, best first, one dict per trial; numbers and JSON
    values parsed (ids, status and errors stay text, empty cells ""); ``[]`` while a search
    has written none yet.

    ``results``: the results folder (``results/<name>``) or its ``leaderboard.csv``.
    """
    from raygym.report.results import TEXT_COLUMNS, load_results, parse_cell

    folder = Path(results)
    folder = folder.parent if folder.name == "leaderboard.csv" else folder
    return [{k: v if k in TEXT_COLUMNS else parse_cell(v) for k, v in row.items()}
            for row in load_results(folder).rows]
