"""``raygym report RESULTS``: one self-contained HTML report of a search (plus Markdown + PNGs).

The report reads only what a search left in its results folder (``search.json``,
``leaderboard.csv``, Tune's trial folders, ``optuna.journal``, ``best/rank1_*``) and the prepared
dataset the best model was trained on; it starts no Ray. Sections:

1. summary (trials by status, best trial, wall time);
2. the leaderboard;
3. hyperparameter effects, Segmentation Gym's paper view: the metric by each searched
   categorical key (filters, loss, residual/plain architecture, ...) and by each numeric key;
4. learning curves of the top trials (val mean IoU and val loss per epoch);
5. the scheduler's pruning picture (the metric of every trial per epoch, pruned ones dashed);
6. the anytime curve of the search: the best score reported so far against the epochs all
   trials have spent, in the order Tune reported them (its ``timestamp``), with where trials
   were pruned or finished; a replayed search (``search.json`` key ``replay``) adds the
   recorded grid's best score and cost and the rank of the search's best configuration;
7. the Optuna study: parameter importances and parallel coordinates;
8. the best model: its card, per-class scores, a confusion matrix and sample predictions,
   recomputed on the dataset's test split (or val);
9. the environment the report was built in, and the search's wall time.

One module per part: ``results`` (reading the folder), ``document`` (the document model and
its HTML / Markdown), ``figures`` (shared matplotlib pieces), the sections (``overview``,
``effects``, ``curves``, ``anytime``, ``study``, ``best_model``, ``environment``) and
``build`` (:func:`build_report`, which ``raygym report`` calls).

Output: ``RESULTS/report.html`` (every figure a ``data:`` URI, CSS inline: one file to mail or
archive, no external requests) and ``RESULTS/report/`` (``report.md`` + the PNGs it links,
relative). Every file is written atomically. A section whose inputs are missing (no
no study file for a random/grid search, a deleted dataset, failed trials, a search that is still
running) becomes a short note instead of failing the report.
"""

from raygym.report.anytime import AnytimeRecord, AnytimeSeries, anytime_records, anytime_series
from raygym.report.best_model import SplitEvaluation, evaluate_best
from raygym.report.build import build_report
from raygym.report.document import SECTION_TITLES, ReportDocument
from raygym.report.environment import environment_rows
from raygym.report.results import SearchResults, load_results, read_history, trial_root

__all__ = [
    "SECTION_TITLES",
    "AnytimeRecord",
    "AnytimeSeries",
    "ReportDocument",
    "SearchResults",
    "SplitEvaluation",
    "anytime_records",
    "anytime_series",
    "build_report",
    "environment_rows",
    "evaluate_best",
    "load_results",
    "read_history",
    "trial_root",
]
