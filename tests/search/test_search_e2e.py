"""``raygym search`` end to end on real data (S2 Ocean Beach, 64 x 64): TPE + ASHA with 6 trials,
then everything the search leaves behind is checked against everything else it left."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from raygym.search.study_storage import STUDY_FILE, open_study_storage

from . import (
    FINISHED,
    read_leaderboard,
    run_cli,
    search_sections,
    shared_prepared,
    write_space,
)

pytestmark = pytest.mark.slow
NAME = "s2_e2e"
MAX_EPOCHS = 4
NUM_SAMPLES = 6


@pytest.fixture(scope="module")
def search_out(tmp_path_factory: pytest.TempPathFactory, ray_session: None,
               make_s2_config: Callable[..., dict[str, Any]]) -> Path:
    """Run the search once for this module (in this process, on the session's Ray)."""
    tmp = tmp_path_factory.mktemp("e2e")
    sections = search_sections(make_s2_config, shared_prepared(tmp_path_factory),
                               tmp / "results", NAME, num_samples=NUM_SAMPLES,
                               max_concurrent=2, grace_period=1, reduction_factor=2)
    sections["train"]["max_epochs"] = MAX_EPOCHS
    code, _ = run_cli(["search", str(write_space(tmp / "space.yaml", sections))])
    assert code == 0
    return tmp / "results" / NAME


@pytest.fixture(scope="module")
def board(search_out: Path) -> list[dict[str, str]]:
    return read_leaderboard(search_out)


def _optuna_trial(trials: list[Any], row: dict[str, str]) -> Any:
    """The study's trial with this leaderboard row's sampled values (the CSV rounds floats
    to 6 significant digits)."""
    lr = float(row["train.max_lr"])
    found = [t for t in trials
             if (t.params["model.arch"], t.params["model.filters"], t.params["loss.name"])
             == (row["model.arch"], int(row["model.filters"]), row["loss.name"])
             and abs(t.params["train.max_lr"] - lr) <= 1e-5 * lr]
    assert len(found) == 1, (row, [t.params for t in trials])
    return found[0]


def test_leaderboard_lists_every_trial_with_its_stop_reason(board: list[dict[str, str]]
                                                            ) -> None:
    assert len(board) == NUM_SAMPLES
    assert len({r["trial_id"] for r in board}) == NUM_SAMPLES
    assert [int(r["rank"]) for r in board] == list(range(1, NUM_SAMPLES + 1))
    for r in board:
        assert r["status"] in (*FINISHED, "asha-pruned"), r
        assert not r["error"]
        assert 1 <= int(r["epochs"]) <= MAX_EPOCHS
        assert 0.0 <= float(r["best_val_mean_iou"]) <= 1.0
        assert 1 <= int(r["best_epoch"]) <= int(r["epochs"])
        for c in ("water", "surf", "wet_sand", "dry_land"):
            assert 0.0 <= float(r[f"iou/{c}"]) <= 1.0
        if r["status"] == "completed":
            assert int(r["epochs"]) == MAX_EPOCHS
    values = [float(r["best_val_mean_iou"]) for r in board]
    assert values == sorted(values, reverse=True), "best first"


def test_asha_pruned_trials(board: list[dict[str, str]]) -> None:
    pruned = [r for r in board if r["status"] == "asha-pruned"]
    assert pruned, "ASHA stopped no trial: grace 1 / rf 2 over 6 trials should prune some"
    # pruned at a rung (1 or 2 epochs for grace 1, rf 2), before max_epochs
    assert all(int(r["epochs"]) in (1, 2) for r in pruned)
    assert any(r["status"] in FINISHED for r in board), "some trial ran to the end"


def test_best_model_reproduces_its_score_in_a_fresh_process(search_out: Path,
                                                            board: list[dict[str, str]]
                                                            ) -> None:
    best = sorted((search_out / "best").iterdir())
    assert [p.name for p in best] == [f"rank{i + 1}_{board[i]['trial_id']}" for i in range(2)]
    artifact = best[0]
    card = json.loads((artifact / "model_card.json").read_text())
    reported = card["metrics"]["val_mean_iou"]
    assert card["training"]["trial_id"] == board[0]["trial_id"]
    assert reported == pytest.approx(float(board[0]["best_val_mean_iou"]), abs=1e-5)
    summary = json.loads((search_out / "search.json").read_text())["summary"]
    assert summary["best_val_mean_iou"] == pytest.approx(reported, abs=1e-12)
    # A new interpreter: nothing from this process (no Ray, no Tune) is reused.
    code = f"""
import json, torch
from pathlib import Path
from raygym.data.dataset import PreparedDataset
from raygym.inference.artifact import load_artifact
from raygym.inference.runtime import resolve_precision
from raygym.train.loop import NumpyBatches, evaluate_model
torch.set_num_threads(1)
model, card, config = load_artifact(Path({str(artifact)!r}))
device = torch.device("cpu")
channels_last = config.train.channels_last and config.model.is_gym
if channels_last:
    model = model.to(memory_format=torch.channels_last)
val = PreparedDataset(config.data.prepared).load_numpy("val")
batches = NumpyBatches(train=None, val=val, batch_size=config.train.batch_size).val_batches()
m = evaluate_model(model, batches, None, card.num_classes, device,
                   resolve_precision(config.train.precision, device), channels_last,
                   card.classes)
print(json.dumps({{"val_mean_iou": m["mean_iou"]}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(proc.stdout.strip().splitlines()[-1])["val_mean_iou"]
    assert again == pytest.approx(reported, abs=1e-6)


def test_optuna_study_tells_the_truth(search_out: Path, board: list[dict[str, str]]) -> None:
    study = optuna.load_study(study_name=NAME, storage=open_study_storage(search_out / STUDY_FILE))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == NUM_SAMPLES
    TS = optuna.trial.TrialState
    for row in board:
        t = _optuna_trial(trials, row)
        epochs = int(row["epochs"])
        steps = sorted(t.intermediate_values)
        # one intermediate value per epoch, including the one ASHA stopped the trial on
        assert steps == list(range(1, epochs + 1)), (row["trial_id"], steps)
        if row["status"] == "asha-pruned":
            assert t.state == TS.PRUNED, row["trial_id"]
        else:
            assert t.state == TS.COMPLETE, row["trial_id"]
            # the value of the epoch whose weights were kept, not the last epoch's
            assert t.value == pytest.approx(float(row["best_val_mean_iou"]), abs=1e-5)
    assert study.best_value == pytest.approx(
        max(float(r["best_val_mean_iou"]) for r in board if r["status"] in FINISHED), abs=1e-5)


def test_tensorboard_events_and_summary(
        search_out: Path, board: list[dict[str, str]],
        tensorboard_scalars: Callable[[Path], dict[str, list[tuple[int, float]]]]) -> None:
    trial_root = search_out / "ray" / NAME
    for r in board:
        # one event file per trial, holding every epoch
        events = list((trial_root / r["trial_id"]).glob("events.out.tfevents*"))
        assert len(events) == 1, (r["trial_id"], events)
        scores = tensorboard_scalars(trial_root / r["trial_id"])["ray/tune/val_mean_iou"]
        assert len(scores) == int(r["epochs"]), r["trial_id"]
        lines = (trial_root / r["trial_id"] / "result.json").read_text().splitlines()
        assert len(lines) == int(r["epochs"])
    saved = json.loads((search_out / "search.json").read_text())
    assert saved["status"] == "finished"
    s = saved["summary"]
    assert s["trials"] == NUM_SAMPLES and s["best_trial"] == board[0]["trial_id"]
    assert s["total_epochs"] == sum(int(r["epochs"]) for r in board)
    assert sum(s["status"].values()) == NUM_SAMPLES
    assert s["wall_s"] > 0 and s["sum_trial_s"] > 0
    assert {d["path"] for d in saved["space"]} == {"model.arch", "model.filters", "loss.name",
                                                    "train.max_lr"}
    assert (search_out / "leaderboard.md").read_text().count("\n|") >= NUM_SAMPLES


def test_rerun_without_resume_is_refused(search_out: Path, capsys: pytest.CaptureFixture
                                         ) -> None:
    space = search_out.parent.parent / "space.yaml"
    code, err = run_cli(["search", str(space)], capsys)
    assert code == 2
    assert "already exists" in err and "--resume" in err
