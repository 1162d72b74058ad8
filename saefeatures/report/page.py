"""The report's HTML: sections of tables and plotly figures in one self-contained page.

plotly.js is inlined once, so the file opens offline and from anywhere. The page counts
its own script errors and console errors into attributes of <html> (`data-errors`) and
marks each figure once plotly has drawn it (`data-rendered`) and each feature example
shown shaded (`data-shaded`), so a headless browser's DOM dump shows whether everything
rendered.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from saefeatures.store.database import Store

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.empty { color: #777; font-style: italic; } .figure { margin: 1rem 0; }
nav a { margin-right: .8rem; } code { background: #f3f3f3; padding: 0 .2rem; }
.dashboard { border-top: 1px solid #eee; margin: 1rem 0; } .panels { display: flex; gap: 1.5rem; }
.examples { flex: 1; min-width: 0; } .side { flex: 1; min-width: 0; overflow-x: auto; }
.side table { font-size: .75rem; } .side th, .side td { padding: .15rem .3rem; }
.example { font-family: ui-monospace, monospace; font-size: .8rem; margin: .3rem 0;
  white-space: pre-wrap; word-break: break-word; }
.example .where { color: #777; margin-right: .6rem; } .tok.peak { outline: 1px solid #c60; }
.histogram { display: flex; align-items: flex-end; height: 70px; gap: 1px; }
.histogram .bar { flex: 1; background: #d98a2b; min-height: 1px; }
.axis { display: flex; justify-content: space-between; font-size: .75rem; color: #777; }
input.index-filter { width: 20rem; padding: .25rem; }
"""
# Runs before anything else: counts uncaught errors and console.error/warn calls.
GUARD = """
(function () {
  var root = document.documentElement;
  function count() { root.dataset.errors = String(Number(root.dataset.errors || 0) + 1); }
  window.addEventListener('error', count);
  window.addEventListener('unhandledrejection', count);
  ['error', 'warn'].forEach(function (level) {
    var original = console[level];
    console[level] = function () { count(); original.apply(console, arguments); };
  });
})();
"""
# After load: marks every figure div that plotly has drawn into, and every feature example
# shown with at least one token on a visible, non-transparent background.
MARK_RENDERED = """
window.addEventListener('load', function () {
  setTimeout(function () {
    document.querySelectorAll('.figure .plotly-graph-div').forEach(function (div) {
      if (div.querySelector('svg.main-svg')) { div.dataset.rendered = 'yes'; }
    });
    document.querySelectorAll('.example').forEach(function (example) {
      var shaded = Array.prototype.some.call(example.querySelectorAll('.tok'), function (tok) {
        var colour = getComputedStyle(tok).backgroundColor;
        return tok.getClientRects().length > 0 && colour !== 'transparent' &&
          colour !== 'rgba(0, 0, 0, 0)';
      });
      if (shaded) { example.dataset.shaded = 'yes'; }
    });
  }, 200);
});
"""

# The feature index's search box: a row stays when every word matches (a number: the
# feature id; other words: its tokens or emotions).
FILTER_INDEX = """
document.querySelectorAll('input.index-filter').forEach(function (input) {
  var rows = document.getElementById(input.dataset.table).tBodies[0].rows;
  input.addEventListener('input', function () {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    Array.prototype.forEach.call(rows, function (row) {
      row.hidden = !words.every(function (word) {
        return /^\\d+$/.test(word) ? row.dataset.feature === word
          : row.dataset.search.indexOf(word) >= 0;
      });
    });
  });
});
"""


@dataclass
class Section:
    """One titled part of the report: HTML blocks in order."""

    anchor: str
    title: str
    blocks: list[str] = field(default_factory=list)

    def text(self, text: str) -> None:
        self.blocks.append(f"<p>{text}</p>")

    def html(self, block: str) -> None:
        """A block of HTML the report writes itself, with every value in it escaped."""
        self.blocks.append(block)

    def empty(self, why: str) -> None:
        """Say what is missing and which command makes it."""
        self.blocks.append(f'<p class="empty">{html.escape(why)}</p>')

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any] | dict[str, Any]]) -> None:
        """Rows as lists in column order, or as dicts (their `columns` are shown)."""
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(_cell(value) for value in _values(row, columns)) + "</tr>"
            for row in rows
        )
        self.blocks.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, figure: go.Figure) -> None:
        figure.update_layout(template="plotly_white", height=figure.layout.height or 450)
        div = figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            config={"responsive": True, "displaylogo": False},
        )
        self.blocks.append(f'<div class="figure">{div}</div>')


def _values(row: Sequence[Any] | dict[str, Any], columns: Sequence[str]) -> Sequence[Any]:
    return [row[c] for c in columns] if isinstance(row, dict) else row


def _cell(value: Any) -> str:
    if isinstance(value, float):
        shown = "" if math.isnan(value) else f"{value:.3g}"
        return f'<td class="num">{shown}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def document(title: str, intro: str, sections: list[Section]) -> str:
    """The whole page; `intro` is trusted HTML written by the report itself."""
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{"".join(s.blocks)}</section>'
        for s in sections
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script>{GUARD}</script><script>{get_plotlyjs()}</script></head>"
        f"<body><h1>{html.escape(title)}</h1>{intro}<nav>{nav}</nav>{body}"
        f"<script>{FILTER_INDEX}</script><script>{MARK_RENDERED}</script></body></html>"
    )


def fetch(store: Store, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """A query's rows as dicts."""
    return store.query(sql, params).to_pylist()


def grouped(items: list[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    """Rows grouped by the values of `keys`, groups and rows in their first-seen order."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(tuple(item[k] for k in keys), []).append(item)
    return groups
