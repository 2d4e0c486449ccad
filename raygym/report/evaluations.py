"""The evaluations section: the comparison tables ``raygym evaluate RESULTS --top-k K``
(``--ensemble``, ``--data SITE.yaml``) wrote into the results folder, one table each: every
model's held-out scores, its difference to the first with its 95 % interval, and the ensemble's
row beside its members. The best-model section scores rank 1 alone; this is where a user
reads whether the next models, or their ensemble, do better on data no trial was chosen on.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from raygym.report.document import ReportDocument
from raygym.report.results import SearchResults, as_float

PATTERN = "evaluation_*.csv"
COLUMNS = ["model", "mean IoU", "vs 1st (95 %)", "fw IoU", "accuracy", "MCC", "params"]


def evaluations_section(doc: ReportDocument, res: SearchResults) -> None:
    """One table per ``evaluation_*.csv`` in the results folder, newest last; a note on how to
    make one where there is none."""
    doc.section("evaluations")
    tables = sorted(res.path.glob(PATTERN), key=lambda p: p.stat().st_mtime)
    if not tables:
        doc.note("no evaluation of this search's models yet: `raygym evaluate "
                 f"{res.path} --top-k 3` scores the top 3 on the held-out split (add "
                 "`--ensemble` for their ensemble, `--data SITE.yaml` for a labelled site) "
                 "and writes its table here.")
        return
    for path in tables:
        what = path.stem.removeprefix("evaluation_")
        doc.heading(f"{what} ({path.name})")
        rows, failed = _rows(path)
        if failed:
            doc.note(f"{path.name} could not be read: {failed}")
            continue
        doc.table(COLUMNS, rows)
    doc.text("vs 1st: a model's mean IoU minus the first's, with the 95 % interval of a "
             "paired bootstrap over the same images; an interval across 0 means the "
             "evaluation cannot tell the two apart.")


def _rows(path: Path) -> tuple[list[list[str]], str]:
    """The table rows of one comparison CSV, or ("", why) when it cannot be read."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            records = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return [], str(err)
    rows = []
    for r in records:
        low, high = as_float(r.get("diff_vs_first_low")), as_float(r.get("diff_vs_first_high"))
        diff = "" if math.isnan(low) or math.isnan(high) else f"{low:+.3f} to {high:+.3f}"
        rows.append([r.get("model", ""), _score(r.get("mean_iou")), diff,
                     _score(r.get("fw_iou")), _score(r.get("accuracy")), _score(r.get("mcc")),
                     _params(r.get("params") or "")])
    return rows, ""


def _score(text: str | None) -> str:
    value = as_float(text)
    return "" if math.isnan(value) else f"{value:.4f}"


def _params(text: str) -> str:
    """A model's searched parameters (or an ensemble's weights), JSON in the CSV, as
    ``key=value, ...``."""
    try:
        params = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return text
    if not isinstance(params, dict):
        return text
    from raygym.search.leaderboard import params_text

    return params_text(params)
