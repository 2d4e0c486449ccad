"""``raygym`` command line: parse arguments, call one function, print the result.

Exit codes: 0 done; 1 a run that failed (training failed, every trial of a search failed,
every image of a prediction failed); 2 bad input (a :class:`~raygym.errors.RaygymError` or a
bad argument, printed as one line on stderr naming the file / key / value and the fix, never a
traceback from inside Ray); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raygym import cli_parser
from raygym.cli_parser import Handler
from raygym.errors import EXIT_INTERRUPTED, EXIT_USAGE, RaygymError


def make_console(stderr: bool = False) -> Any:
    from rich.console import Console

    # soft_wrap: a line is never broken by raygym (the terminal wraps it, if it must), so a
    # path in a message or a log stays whole for the user to copy
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _load(path: Path, command: str, overrides: Sequence[str] = (), allow_space: bool = False,
          address: str | None = None, time_budget: str | None = None) -> Any:
    from raygym.search.space_config import load_experiment, require_fixed

    parsed = _parse_overrides(overrides)
    if address:
        parsed["resources.address"] = address
    if time_budget:
        parsed["search.time_budget"] = time_budget
    config, space = load_experiment(path, overrides=parsed)
    if not allow_space:
        require_fixed(space, command, str(path))
    return (config, space) if allow_space else config


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    from raygym.config.base import load_yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise RaygymError(f"--set expects key.path=value, got {item!r}",
                              fix="e.g. --set train.max_epochs=3")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = load_yaml(value)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise RaygymError(f"--set {key.strip()}: the value {value!r} is not YAML "
                              f"({problem})", fix="write the value as YAML, the item quoted "
                              "for the shell, e.g. --set 'model.filters={choice: [2, 4]}'"
                              ) from None
    return out


# ------------------------------------------------------------------------------ commands
def cmd_prepare(args: argparse.Namespace) -> int:
    # prepare reads only `data`, where nothing is searched: a search's space file prepares
    # that search's dataset ahead of it
    config, _ = _load(args.config, "prepare", args.set, allow_space=True, address=args.address)
    # heavy imports only after the config is known good: a typo is reported at once
    from raygym.data.prepare import prepare_dataset
    from raygym.data.summary import print_prepare_summary

    console = make_console()
    result = prepare_dataset(config, overwrite=args.overwrite, log=console.print)
    print_prepare_summary(result, console)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    config = _load(args.config, "train", args.set, address=args.address)
    from raygym.train.run import train_experiment

    train_experiment(config, resume=args.resume, console=make_console(), run_name=args.name)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    config, space = _load(args.space, "search", args.set, allow_space=True,
                          address=args.address, time_budget=args.time_budget)
    from raygym.search.run import search_experiment

    return search_experiment(config, space, space_file=args.space, dry_run=args.dry_run,
                             resume=args.resume, retry_errored=args.retry_errored,
                             smoke_test=args.smoke_test, replay=args.replay,
                             searches=args.searches, console=make_console(),
                             command=args.command_line)


def cmd_record(args: argparse.Namespace) -> int:
    config, space = _load(args.space, "record", args.set, allow_space=True,
                          address=args.address)
    from raygym.search.record import record_experiment

    return record_experiment(config, space, space_file=args.space, seeds=args.seeds,
                             points=args.points, out=args.out, resume=args.resume,
                             retry_errored=args.retry_errored, dry_run=args.dry_run,
                             add=args.add, console=make_console(), command=args.command_line)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from raygym.evaluate_command import evaluate_command

    _address_needs_ray(args)
    if args.data is not None:
        given = [f for f, on in (("--dataset", args.dataset is not None), ("--ray", args.ray),
                                 ("--split", args.split is not None)) if on]
        if given:
            raise RaygymError(f"{given[0]} applies to a prepared dataset; --data scores every "
                              "scene its file pairs, at full size", key=given[0],
                              fix=f"drop {given[0]} or --data")
    else:
        given = [f for f, on in (("--scale", args.scale != "auto"), ("--tile", args.tile),
                                 ("--tta", args.tta), ("--overlap", args.overlap != 0.25)) if on]
        if given:
            raise RaygymError(f"{given[0]} applies to full-size scenes (--data); a prepared "
                              "split is scored at its prepared size", key=given[0],
                              fix="add --data SITE.yaml, or drop " + given[0])
    rule = [f for f, on in (("--ensemble-margin", args.ensemble_margin != 0.05),
                            ("--ensemble-weights", args.ensemble_weights != "score")) if on]
    if rule and not args.ensemble:
        raise RaygymError(f"{rule[0]} sets how --ensemble combines the top-k", key=rule[0],
                          fix=f"add --ensemble, or drop {rule[0]}")
    return evaluate_command(args.model, split=args.split or "test", top_k=args.top_k,
                            dataset=args.dataset, use_ray=args.ray, console=make_console(),
                            out=args.out, data_file=args.data, ray_address=args.address,
                            scenes={"scale": args.scale, "tile": args.tile,
                                    "overlap": args.overlap, "tta": args.tta},
                            ensemble=args.ensemble, ensemble_margin=args.ensemble_margin,
                            ensemble_weights=args.ensemble_weights)


def _address_needs_ray(args: argparse.Namespace) -> None:
    """``--address`` says where ``--ray`` runs: alone it would be silently ignored."""
    if args.address is not None and not args.ray:
        raise RaygymError("--address names the Ray cluster that --ray runs on", key="--address",
                          fix="add --ray, or drop --address")


def cmd_predict(args: argparse.Namespace) -> int:
    from raygym.predict import PredictOptions, predict_and_print

    _address_needs_ray(args)
    options = PredictOptions(out=args.out, top_k=args.top_k, extra_bands=args.band,
                             image_bands=args.image_bands,
                             ensemble_margin=args.ensemble_margin,
                             ensemble_weights=args.ensemble_weights,
                             tile=args.tile, overlap=args.overlap, tta=args.tta,
                             scale=args.scale, probabilities=args.probabilities,
                             use_ray=args.ray, ray_address=args.address, overwrite=args.overwrite,
                             polygons=args.polygons, min_area=args.min_area)
    return predict_and_print(args.model, args.images, options, console=make_console())


def cmd_report(args: argparse.Namespace) -> int:
    from raygym.report import build_report

    html = build_report(args.results, out=args.out)
    # an --out that is not .html is written as .html: both paths say where things went
    make_console().print(f"report written: [bold]{html}[/]   Markdown + figures: "
                     f"{html.with_suffix('')}/report.md")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from raygym.inference.onnx_export import export_command

    return export_command(args.model, onnx=args.onnx, out=args.out, opset=args.opset,
                          console=make_console())


def cmd_dashboard(args: argparse.Namespace) -> int:
    from raygym.dashboard import serve_dashboards

    return serve_dashboards(args.results, host=args.host, optuna_port=args.optuna_port,
                            tensorboard_port=args.tensorboard_port, console=make_console(),
                            allow_remote=args.allow_remote)


def cmd_models(args: argparse.Namespace) -> int:
    from raygym.models import list_models
    from raygym.models.summary import describe_arch

    if not args.name:
        console = make_console()
        for name in list_models():
            console.print(name)
        return 0
    given = {k: getattr(args, k) for k in ("filters", "kernel", "encoder")
             if getattr(args, k) is not None}
    print(describe_arch(args.name, bands=args.bands, classes=args.classes, size=args.size,
                        **given))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from raygym.convert import convert_gym_config

    out, unknown = convert_gym_config(args.gym_json, args.out, images=args.images,
                                      labels=args.labels)
    console = make_console()
    console.print(f"wrote [bold]{out}[/]")
    if unknown:
        console.print(f"[yellow]Gym keys not carried over:[/] {', '.join(unknown)}")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from raygym.data.demo import write_demo_data

    info = write_demo_data(args.out, n_scenes=args.scenes, seed=args.seed)
    make_console().print(f"wrote {info.n_scenes} synthetic scenes ({info.bands} bands, classes "
                     f"{', '.join(info.class_names)}) to [bold]{info.out_dir}[/]")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from raygym.cluster import cluster_down, cluster_status, cluster_up, export_line

    console = make_console()
    if args.action == "up":
        info = cluster_up(workers=args.workers, cpus_per_node=args.cpus,
                          head_port=args.port, dashboard_port=args.dashboard_port,
                          state_dir=args.state_dir)
        console.print(f"cluster up: head {info['address']}, dashboard {info['dashboard']}, "
                      f"{len(info['nodes'])} nodes (127.0.0.1 only, token required); a "
                      f"client joins after:\n{export_line(args.state_dir)}")
    elif args.action == "down":
        stopped = cluster_down(state_dir=args.state_dir)
        console.print(f"stopped {stopped} Ray processes")
    else:
        console.print(cluster_status(state_dir=args.state_dir))
    return 0


# ------------------------------------------------------------------------------- parser
HANDLERS: dict[str, Handler] = {
    "prepare": cmd_prepare, "train": cmd_train, "search": cmd_search, "record": cmd_record,
    "evaluate": cmd_evaluate, "predict": cmd_predict, "export": cmd_export,
    "report": cmd_report, "dashboard": cmd_dashboard, "models": cmd_models,
    "convert-config": cmd_convert, "demo-data": cmd_demo_data, "cluster": cmd_cluster,
}


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (:func:`raygym.cli_parser.build_parser`) with every verb's
    handler."""
    return cli_parser.build_parser(HANDLERS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    # the user's own command line, --set and all, for the hints that say how to go on
    args.command_line = shlex.join(["raygym", *argv])
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from raygym.ray_runtime import set_ray_env

    # before any command imports Ray: Ray Data reads its log level when first imported
    # (`ray.tune` imports it), and would log every dataset's progress at INFO level
    set_ray_env()
    try:
        return int(args.handler(args) or 0)
    except RaygymError as err:
        from rich.markup import escape

        make_console(stderr=True).print(f"[bold red]error:[/] {escape(str(_in_config(err, args)))}")
        return err.exit_code
    except KeyboardInterrupt:
        make_console(stderr=True).print("interrupted")
        return EXIT_INTERRUPTED
    except OSError as err:
        # a path the user gave that cannot be read or written (an --out in a read-only or
        # missing place): one line, like any other bad input; other OS errors stay loud
        line = path_error_line(err)
        if line is None:
            raise
        from rich.markup import escape

        make_console(stderr=True).print(f"[bold red]error:[/] {escape(line)}")
        return EXIT_USAGE


def _in_config(err: RaygymError, args: argparse.Namespace) -> RaygymError:
    """``err``, naming the command's experiment file where it refuses one of that file's keys
    but names no file (a check that runs after the file was parsed: ``resources`` against
    the cluster, ``search.scheduler`` against the trial's workers)."""
    path = next((getattr(args, a) for a in ("config", "space", "data")
                 if isinstance(getattr(args, a, None), Path)), None)
    if path is None or not err.key:
        return err
    from raygym.config import ExperimentConfig

    head = err.key.split(".", 1)[0].split("[", 1)[0]
    return err.in_file(path) if head in ExperimentConfig.model_fields else err


_PATH_ERRORS = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                errno.EROFS: "read-only file system", errno.ENOENT: "no such file or folder",
                errno.ENOTDIR: "a part of the path is a file, not a folder",
                errno.EISDIR: "is a folder, not a file"}


def path_error_line(err: OSError) -> str | None:
    """One line for an OS error about a path (``err.filename``; a raygym temp name is shown
    as the path it stands for), or None when it is not one."""
    from raygym.atomic import intended_path

    if err.filename is None or err.errno not in _PATH_ERRORS:
        return None
    path = intended_path(Path(os.fsdecode(err.filename)))
    return (f"{path}: {_PATH_ERRORS[err.errno]} (fix: give a path whose folder exists and "
            "that you can write to, or an input you can read)")


if __name__ == "__main__":
    sys.exit(main())
