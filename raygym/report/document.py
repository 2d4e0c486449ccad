"""The report's document model, rendered twice: one self-contained HTML page (figures inlined
as ``data:`` URIs, CSS inline) and Markdown that links the PNGs beside it."""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECTION_TITLES: dict[str, str] = {
    "summary": "Summary",
    "leaderboard": "Leaderboard",
    "effects": "Hyperparameter effects",
    "curves": "Learning curves of the top trials",
    "pruning": "Pruning: every trial per epoch",
    "anytime": "Anytime curve of the search",
    "optuna": "Optuna study",
    "best": "Best model",
    "evaluations": "Evaluations of the top models",
    "environment": "Environment",
}
"""Section id -> heading, in report order (tests and links rely on these)."""


@dataclass
class Block:
    """One piece of a section: ``kind`` is ``p``, ``note``, ``h3``, ``table``, ``kv`` or
    ``figure``; ``data`` what that kind renders (see :class:`ReportDocument`'s adders)."""

    kind: str
    data: Any


@dataclass
class Section:
    """One ``<section>`` / ``##`` of the report: its id (a key of SECTION_TITLES), heading
    and blocks in order."""

    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


class ReportDocument:
    """Sections of paragraphs, notes, tables and figures; every adder appends to the last
    section opened with :meth:`section`. Figures are PNG files in ``fig_dir``."""

    def __init__(self, fig_dir: Path) -> None:
        self.fig_dir = fig_dir
        self.sections: list[Section] = []

    def section(self, sid: str) -> Section:
        """Open the section ``sid`` (a key of :data:`SECTION_TITLES`)."""
        sec = Section(sid, SECTION_TITLES[sid])
        self.sections.append(sec)
        return sec

    def _add(self, kind: str, data: Any) -> None:
        self.sections[-1].blocks.append(Block(kind, data))

    def text(self, text: str) -> None:
        self._add("p", text)

    def note(self, text: str) -> None:
        """A highlighted remark: why a section or part of it is missing, a caveat."""
        self._add("note", text)

    def heading(self, text: str) -> None:
        self._add("h3", text)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              classes: Sequence[str] | None = None) -> None:
        """``classes``: an optional CSS class per row (``failed``, ``pruned``, ``best``)."""
        self._add("table", (list(columns), [[cell_text(v) for v in r] for r in rows],
                            list(classes) if classes else [""] * len(rows)))

    def kv(self, rows: Sequence[tuple[str, Any]]) -> None:
        """A two-column key / value table without a header."""
        self._add("kv", [(str(k), cell_text(v)) for k, v in rows])

    def figure(self, fig: Any, name: str, caption: str) -> Path:
        """Save a matplotlib figure as ``fig_dir/<name>.png`` (90 dpi, closes it) and add it."""
        from raygym.plots import save_atomic

        path = save_atomic(fig, self.fig_dir / f"{name}.png", dpi=90)
        return self.figure_file(path, caption)

    def figure_file(self, path: Path, caption: str) -> Path:
        """Add a PNG already written into ``fig_dir``."""
        self._add("figure", (path, caption))
        return path

    # ------------------------------------------------------------------ renderers
    def to_html(self, title: str, subtitle: str) -> str:
        """One self-contained page: CSS inline, every figure a ``data:`` URI, a section nav."""
        esc = html.escape
        nav = " ".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in self.sections)
        parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                 '<meta name="viewport" content="width=device-width, initial-scale=1">',
                 f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
                 f"<header><h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>"
                 f"<nav>{nav}</nav></header><main>"]
        for sec in self.sections:
            parts.append(f'<section id="{sec.id}"><h2>{esc(sec.title)}</h2>')
            parts += [_block_html(b) for b in sec.blocks]
            parts.append("</section>")
        parts.append(f"</main><footer>raygym report, built {esc(time.strftime('%Y-%m-%d %H:%M'))}"
                     "</footer></body></html>")
        return "\n".join(parts) + "\n"

    def to_markdown(self, title: str, subtitle: str) -> str:
        """The same content as Markdown; figures linked by file name (PNGs in ``fig_dir``)."""
        lines = [f"# {title}", "", subtitle, ""]
        for sec in self.sections:
            lines += [f"## {sec.title}", ""]
            for b in sec.blocks:
                lines += _block_markdown(b)
        return "\n".join(lines) + "\n"


def _block_html(b: Block) -> str:
    """One block as HTML, every text escaped."""
    esc = html.escape
    if b.kind == "p":
        return f"<p>{esc(b.data)}</p>"
    if b.kind == "note":
        return f'<p class="note">{esc(b.data)}</p>'
    if b.kind == "h3":
        return f"<h3>{esc(b.data)}</h3>"
    if b.kind == "table":
        cols, rows, classes = b.data
        parts = ['<div class="scroll"><table><thead><tr>'
                 + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr></thead><tbody>"]
        for row, cls in zip(rows, classes, strict=True):
            attr = f' class="{esc(cls)}"' if cls else ""
            parts.append(f"<tr{attr}>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>")
        parts.append("</tbody></table></div>")
        return "\n".join(parts)
    if b.kind == "kv":
        return ('<table class="kv"><tbody>' + "".join(
            f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in b.data)
            + "</tbody></table>")
    if b.kind == "figure":
        path, caption = b.data
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>")
    raise ValueError(f"unknown block kind {b.kind!r}")


def _block_markdown(b: Block) -> list[str]:
    """The Markdown lines of one block, a blank line after it."""
    if b.kind == "p":
        return [b.data, ""]
    if b.kind == "note":
        return [f"> {b.data}", ""]
    if b.kind == "h3":
        return [f"### {b.data}", ""]
    if b.kind == "table":
        cols, rows, _ = b.data
        return (["| " + " | ".join(_md(c) for c in cols) + " |", "|" + "---|" * len(cols)]
                + ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows] + [""])
    if b.kind == "kv":
        return (["| | |", "|---|---|"] + [f"| **{_md(k)}** | {_md(v)} |" for k, v in b.data]
                + [""])
    if b.kind == "figure":
        path, caption = b.data
        return [f"![{Path(path).stem}]({Path(path).name})", "", f"*{_md(caption)}*", ""]
    raise ValueError(f"unknown block kind {b.kind!r}")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0;color:#1d2733;background:#f4f6f8;line-height:1.45}
header{background:#17324d;color:#fff;padding:18px 32px 10px}
header h1{margin:0 0 4px;font-size:1.6em}
header .sub{margin:0 0 10px;color:#c9d6e3}
nav a{color:#9fd0ff;margin-right:14px;text-decoration:none;font-size:.92em;white-space:nowrap}
nav a:hover{text-decoration:underline}
main{max-width:1180px;margin:0 auto;padding:8px 24px 32px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);
padding:6px 22px 16px;margin:18px 0}
h2{border-bottom:2px solid #e3e8ee;padding-bottom:6px;color:#17324d}
h3{color:#2c4a66;margin-bottom:6px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.86em;margin:8px 0}
th,td{border:1px solid #dde3ea;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#eef2f6;text-align:center}
td:first-child,th:first-child{text-align:left}
table.kv th{background:#eef2f6;text-align:left;font-weight:600}
table.kv td{text-align:left;white-space:normal}
tbody tr:nth-child(even){background:#f8fafc}
tr.best{background:#e5f5e0 !important;font-weight:600}
tr.pruned{color:#6b7785}
tr.failed{background:#fdecea !important;color:#8a1c12}
figure{margin:12px 0;text-align:center}
figure img{max-width:100%;height:auto;border:1px solid #e3e8ee;border-radius:4px}
figcaption{font-size:.85em;color:#5b6875;margin-top:4px}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;font-size:.92em}
footer{text-align:center;color:#7a8794;font-size:.8em;padding:12px}
"""


def cell_text(value: Any) -> str:
    """A table cell's text: floats to 4 significant digits, None and NaN empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    return str(value)


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def one_line(err: BaseException) -> str:
    """An exception as one line of at most 300 characters, for a note in the report."""
    text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())[:300]
