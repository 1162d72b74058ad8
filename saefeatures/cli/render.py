"""Printing Arrow tables and key-value facts on the terminal (table, CSV or JSON)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import pyarrow as pa

Format = Literal["table", "csv", "json"]
# Wide when piped, so that tables stay readable in logs and files.
console = Console(width=None if sys.stdout.isatty() else 160)


def print_arrow(table: pa.Table, fmt: Format = "table", title: str | None = None) -> None:
    rows = table.to_pylist()
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(table.column_names)
        writer.writerows([row[name] for name in table.column_names] for row in rows)
    elif fmt == "json":
        print(json.dumps(rows, default=str, indent=1))
    else:
        print_rows(
            table.column_names, ([row[c] for c in table.column_names] for row in rows), title
        )


def print_facts(result: Any, title: str) -> None:
    """A result dataclass as a two-column table, one row per field."""
    print_rows(["fact", "value"], asdict(result).items(), title=title)


def print_rows(columns: list[str], rows: Iterable[Iterable[Any]], title: str | None = None) -> None:
    view = Table(title=escape(title) if title else None, title_justify="left")
    for column in columns:
        view.add_column(escape(column), overflow="fold")
    for row in rows:
        view.add_row(*(_cell(value) for value in row))
    console.print(view)


def ends(rows: list[Any], n: int) -> list[Any]:
    """The first n and the last n rows, each row once: all of them when they are 2n or fewer."""
    return rows if len(rows) <= 2 * n else rows[:n] + rows[-n:]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 6:
        return escape(f"[{len(value)} values]")
    return escape(str(value))  # data, not rich markup: "[[token]]" must print as it is


BEST_COLUMNS = [
    "corpus",
    "best layer",
    "depth",
    "PC1-valence r",
    "95% CI",
    "p",
    "held-out r",
    "pos/neg split r",
    "emotions",
]


def best_layer_row(corpus: str, best: dict[str, Any]) -> list[Any]:
    """One line of the geometry headline: r at the best layer with what its choice is worth."""
    return [
        corpus,
        best["layer"],
        f"{best['rel_depth']:.2f}",
        f"{best['pearson_r']:.3f}",
        f"[{best['ci_low']:.2f}, {best['ci_high']:.2f}]",
        f"{best['p_value']:.3g}",
        f"{best['heldout_r']:.3f} [{best['heldout_low']:.2f}, {best['heldout_high']:.2f}]",
        f"{best['split_r']:.3f}",
        best["n_emotions"],
    ]


BEST_NOTE = (
    "r: PC1 (oriented) against valence at the best layer; CI: emotions resampled with the PCA "
    "refitted and the layer chosen anew; p: against the largest r over layers of shuffled "
    "ratings; held-out r: the layer chosen on half of the emotions, r on the other half; "
    "pos/neg split r: what a split into positive and negative alone reaches on these emotions"
)
