"""Commands on the store and what is read from it alone: sql, queries, schema, db info,
export, import-results, compare, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from saefeatures import options as opts
from saefeatures.cli import render
from saefeatures.cli.common import (
    CorpusOption,
    DbOption,
    FormatOption,
    OutOption,
    Typer,
    options_from,
    warn_renamed,
    workspace,
)
from saefeatures.config import DEFAULT_CORPUS, DEFAULT_DB, DEFAULT_OUT, REPORT_NAME
from saefeatures.errors import SaefeaturesError

db_app = Typer(help="The DuckDB store.", no_args_is_help=True)


def sql_command(
    query: Annotated[
        str,
        typer.Argument(help="One read-only SQL statement, a .sql file, or a shipped query's name."),
    ],
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param", help="NAME=VALUE for the query's $NAME (repeat for each parameter)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows printed at most.")] = 50,
    every: Annotated[bool, typer.Option("--all", help="Print every row (no --limit).")] = False,
    fmt: FormatOption = "table",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Query the store read-only (`saefeatures queries` lists the shipped examples)."""
    from saefeatures.store import queries

    bound = queries.parse_params(params or [])
    if limit < 1:
        raise SaefeaturesError(f"--limit {limit} prints nothing; give 1 or more, or --all")
    with workspace(db).open_store(read_only=True) as store:
        queries.check_params(store, queries.resolve(query), bound)
        result = queries.run(store, query, bound or None)
    shown = result if every else result.slice(0, limit)
    render.print_arrow(shown, fmt)
    if shown.num_rows < result.num_rows:
        print(
            f"{result.num_rows - shown.num_rows} more rows not printed "
            f"(--all prints every row, --limit N the first N)",
            file=sys.stderr,
        )


def schema_command(
    table: Annotated[
        str | None, typer.Argument(help="One table or view; default: every one.")
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print Markdown, as docs/store.md holds it.")
    ] = False,
) -> None:
    """What each table, view and column of the store holds, with its type (the schema this
    saefeatures writes: a workspace store is migrated to it on its next write)."""
    from saefeatures.store import schema_doc

    with schema_doc.fresh_store() as store:
        found = schema_doc.relations(store)
        picked = schema_doc.chosen(found, table)
        metrics = schema_doc.metric_vocabulary(store)
    if markdown:
        whole = table is None
        print(
            schema_doc.markdown(found, metrics) if whole else schema_doc.section(picked[0]), end=""
        )
        return
    for relation in picked:
        render.print_rows(
            ["column", "type", "meaning"],
            ([c.name, c.type, c.comment] for c in relation.columns),
            title=f"{relation.name} ({relation.kind}): {relation.comment}",
        )


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
    out: OutOption = DEFAULT_OUT,
    output: Annotated[Path | None, typer.Option("-o", "--output", hidden=True)] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """One self-contained HTML report (tables, figures, provenance) from the store alone."""
    from saefeatures.report import build

    if output is not None:  # the former option: the file itself
        warn_renamed("--output", "--out")
    with workspace(db).open_store(read_only=True) as store:
        result = build.write(store, output or out / REPORT_NAME)
    print(f"report: {result.path} ({len(result.sections)} sections, {result.figures} figures)")
