"""Commands on the store and what is read from it alone: sql, queries, db info, export,
import-results, compare, report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from saefeatures import options as opts
from saefeatures.cli import render
from saefeatures.cli.common import CorpusOption, DbOption, OutOption, options_from, workspace
from saefeatures.config import DEFAULT_CORPUS, DEFAULT_DB, DEFAULT_OUT

db_app = typer.Typer(help="The DuckDB store.", no_args_is_help=True)


def sql_command(
    query: Annotated[
        str,
        typer.Argument(help="One read-only SQL statement, a .sql file, or a shipped query's name."),
    ],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Query the store read-only (`saefeatures queries` lists the shipped examples)."""
    from saefeatures.store import queries

    render.check_format(fmt)
    with workspace(db).open_store(read_only=True) as store:
        render.print_arrow(queries.run(store, query), fmt)


def queries_command() -> None:
    """The example queries shipped with saefeatures; run one with `saefeatures sql NAME`."""
    from saefeatures.store import queries

    render.print_rows(
        ["name", "what it answers"],
        ([name, queries.description(path)] for name, path in queries.shipped().items()),
        title="example queries",
    )


@db_app.command("info")
def db_info(db: DbOption = DEFAULT_DB) -> None:
    """Print the schema version, the tables and their row counts."""
    from saefeatures import __version__

    with workspace(db).open_store(read_only=True) as store:
        print(f"{db}: schema version {store.schema_version} (saefeatures {__version__})")
        render.print_rows(["table", "rows"], store.table_counts())


def export_command(
    to: Annotated[Path, typer.Option("--to", help="A new folder for the Parquet files.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Every table as Parquet, partitioned by model and layer, for other engines and machines."""
    from saefeatures.store import exchange

    with workspace(db).open_store() as store:
        written = exchange.export(store, to)
    render.print_rows(["table", "rows"], written.items(), title=f"exported to {to}")


def import_results_command(
    folder: Annotated[Path, typer.Argument(help="A folder written by `saefeatures export`.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Merge exported results (e.g. from other machines) into this store, without duplicates."""
    from saefeatures.store import exchange

    with workspace(db).open_store() as store:
        added = exchange.import_results(store, folder)
    render.print_rows(["table", "rows added"], added.items(), title=f"merged {folder}")


def compare_command(
    models: Annotated[
        str | None, typer.Option("--models", help="e.g. a,b; default: every model in the store.")
    ] = None,
    corpus: CorpusOption = DEFAULT_CORPUS,
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Direction vs features and model vs model, from the store only."""
    options = options_from(opts.CompareOptions, locals())

    from saefeatures import compare

    with workspace(db, out).open_store() as store:
        result = compare.compare(store, out, options)
    columns = list(compare.COLUMNS)
    render.print_rows(
        columns, ([row[c] for c in columns] for row in result.rows), title="comparisons"
    )
    if result.figures:
        print("figures: " + ", ".join(result.figures))


def report_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    db: DbOption = DEFAULT_DB,
) -> None:
    """One self-contained HTML report (tables, figures, provenance) from the store alone."""
    from saefeatures.report import build

    with workspace(db).open_store(read_only=True) as store:
        result = build.write(store, output)
    print(f"report: {result.path} ({len(result.sections)} sections, {result.figures} figures)")
