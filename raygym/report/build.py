"""``raygym report RESULTS``: build every section, then write the HTML page and, beside it, the
Markdown + PNGs, each atomically."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from raygym.atomic import replace_dir, write_text_atomic
from raygym.report.anytime import anytime_section
from raygym.report.best_model import best_model_section
from raygym.report.curves import curves_section, pruning_section
from raygym.report.document import ReportDocument, one_line
from raygym.report.effects import effects_section
from raygym.report.environment import environment_section
from raygym.report.figures import close_all_figures
from raygym.report.overview import leaderboard_section, summary_section
from raygym.report.results import SearchResults, load_results
from raygym.report.study import optuna_section

SECTION_BUILDERS: tuple[tuple[str, Callable[[ReportDocument, SearchResults], None]], ...] = (
    ("summary", summary_section), ("leaderboard", leaderboard_section),
    ("effects", effects_section), ("curves", curves_section), ("pruning", pruning_section),
    ("anytime", anytime_section), ("optuna", optuna_section), ("best", best_model_section),
    ("environment", environment_section))
"""Section id -> the function that writes it, in report order (ids as in SECTION_TITLES)."""


def build_report(results: Path, out: Path | None = None) -> Path:
    """Write the HTML report of a search (default ``RESULTS/report.html``) and, beside it, the
    same content as ``<stem>/report.md`` + PNGs (``RESULTS/report/``). Returns the HTML path.

    Raises :class:`~raygym.errors.DataError` when ``results`` is not a search results folder.
    """
    results = Path(results).resolve()
    res = load_results(results)
    html_path = Path(out).resolve() if out is not None else results / "report.html"
    if html_path.suffix.lower() not in (".html", ".htm"):
        html_path = html_path / "report.html" if html_path.is_dir() else \
            html_path.with_suffix(".html")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    md_dir = html_path.with_suffix("")
    # the figures go to a temp folder that replaces md_dir whole: never half an old report
    tmp_dir = md_dir.with_name(f".{md_dir.name}.tmp-{time.time_ns()}")
    tmp_dir.mkdir(parents=True)
    try:
        doc = ReportDocument(tmp_dir)
        for sid, build in SECTION_BUILDERS:
            n_before = len(doc.sections)
            try:
                build(doc, res)
            except Exception as err:  # one broken section must not lose the others
                del doc.sections[n_before:]
                doc.section(sid)
                doc.note(f"this section could not be built: {one_line(err)}")
            finally:
                close_all_figures()
        title = f"raygym search report: {res.name}"
        subtitle = (f"{results}  |  metric {res.metric} ({res.mode})  |  "
                    f"{len(res.trial_ids())} trials")
        (tmp_dir / "report.md").write_text(doc.to_markdown(title, subtitle), encoding="utf-8")
        page = doc.to_html(title, subtitle)
        replace_dir(tmp_dir, md_dir)
        write_text_atomic(html_path, page)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return html_path
