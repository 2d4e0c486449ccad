"""``raygym report RESULTS``: build every section, then write the HTML page and, beside it, the
Markdown + PNGs, each atomically."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from raygym.atomic import replace_dir, sweep_temp_files, temp_dir_beside, write_text_atomic
from raygym.report.anytime import anytime_section
from raygym.report.best_model import best_model_section
from raygym.report.curves import curves_section, pruning_section
from raygym.report.document import ReportDocument, one_line
from raygym.report.effects import effects_section
from raygym.report.environment import environment_section
from raygym.report.evaluations import evaluations_section
from raygym.report.figures import close_all_figures
from raygym.report.overview import leaderboard_section, summary_section
from raygym.report.results import SearchResults, load_results
from raygym.report.study import optuna_section

SECTION_BUILDERS: tuple[tuple[str, Callable[[ReportDocument, SearchResults], None]], ...] = (
    ("summary", summary_section), ("leaderboard", leaderboard_section),
    ("effects", effects_section), ("curves", curves_section), ("pruning", pruning_section),
    ("anytime", anytime_section), ("optuna", optuna_section), ("best", best_model_section),
    ("evaluations", evaluations_section), ("environment", environment_section))
"""Section id -> the function that writes it, in report order (ids as in SECTION_TITLES)."""


REPORT_TITLE = "raygym search report"
"""Every report's title: how a report file or folder raygym wrote is recognised again."""


def _is_report_html(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return f"<title>{REPORT_TITLE}" in head


def _is_report_dir(path: Path) -> bool:
    """A report's Markdown folder raygym wrote (its report.md opens with the title)."""
    try:
        with (path / "report.md").open(encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith(f"# {REPORT_TITLE}")
    except OSError:
        return False


def _check_outputs(html_path: Path, md_dir: Path) -> None:
    """Refuse to replace an HTML file or a folder that is not a raygym report."""
    from raygym.errors import DataError

    if html_path.exists() and not (html_path.is_file() and _is_report_html(html_path)):
        raise DataError("exists and is not a raygym report: refusing to replace it",
                        file=html_path, key="--out", fix="give another --out (a new .html path "
                        "or a folder)")
    if md_dir.exists() and (not md_dir.is_dir() or (any(md_dir.iterdir())
                                                    and not _is_report_dir(md_dir))):
        raise DataError(f"the report's figures would replace {md_dir.name}/, which is not a "
                        "raygym report", file=md_dir, key="--out",
                        fix="give another --out (a new .html path or a folder)")


def build_report(results: Path, out: Path | None = None) -> Path:
    """Write the HTML report of a search (default ``RESULTS/report.html``) and, beside it, the
    same content as ``<stem>/report.md`` + PNGs (``RESULTS/report/``). Returns the HTML path.

    Only a report raygym wrote is ever replaced: an existing HTML file or ``<stem>/`` folder
    that is not one is refused (``--out .`` next to a ``report/`` folder of the user's).

    Raises :class:`~raygym.errors.DataError` when ``results`` is not a search results folder
    or an output would replace something that is not a raygym report.
    """
    results = Path(results).resolve()
    res = load_results(results)
    html_path = Path(out).resolve() if out is not None else results / "report.html"
    if html_path.suffix.lower() not in (".html", ".htm"):
        html_path = html_path / "report.html" if html_path.is_dir() else \
            html_path.with_suffix(".html")
    md_dir = html_path.with_suffix("")
    _check_outputs(html_path, md_dir)  # before anything is written
    html_path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(html_path.parent)  # a killed run's half-written report.html
    # the figures go to a temp folder that replaces md_dir whole: never half an old report
    tmp_dir = temp_dir_beside(md_dir)
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
        title = f"{REPORT_TITLE}: {res.name}"
        subtitle = (f"{results}  |  metric {res.metric} ({res.mode})  |  "
                    f"{len(res.trial_ids())} trials")
        (tmp_dir / "report.md").write_text(doc.to_markdown(title, subtitle), encoding="utf-8")
        page = doc.to_html(title, subtitle)
        replace_dir(tmp_dir, md_dir, owned=_is_report_dir)
        write_text_atomic(html_path, page)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return html_path
