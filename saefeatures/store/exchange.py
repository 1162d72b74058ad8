"""Results as Parquet, partitioned by model and layer, and merged back into a store.

Many machines (one process per model x layer group) each export their store; one
`import-results` per export merges them. DuckDB, Spark or any Arrow engine reads the
exported folder directly (`read_parquet('DIR/<table>/**/*.parquet', hive_partitioning=true)`).

A merge never duplicates: tables with a primary key keep one row per key (the incoming
row wins), and the other tables take only the rows of runs they do not hold yet, since
every results row carries the run that wrote it.
"""

from __future__ import annotations

import json
from pathlib import Path

from saefeatures import __version__
from saefeatures.errors import SaefeaturesError, writable_folder
from saefeatures.store import hooks
from saefeatures.store.database import Store, migrations

MANIFEST = "manifest.json"
PARTITION_COLUMNS = ("model", "layer")
SKIPPED = ("schema_version", "metrics")  # the target store keeps its own


def _tables(store: Store) -> dict[str, list[str]]:
    rows = store.query(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name IN (SELECT table_name FROM "
        "information_schema.tables WHERE table_type = 'BASE TABLE') ORDER BY ordinal_position"
    ).to_pylist()
    tables: dict[str, list[str]] = {}
    for row in rows:
        if row["table_name"] not in SKIPPED:
            tables.setdefault(row["table_name"], []).append(row["column_name"])
    return tables


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def export(store: Store, folder: Path) -> dict[str, int]:
    """Every non-empty table under `folder/<table>/`, partitioned by its model and layer."""
    if folder.exists() and any(folder.iterdir()):
        raise SaefeaturesError(f"{folder} is not empty; export into a new folder")
    writable_folder(folder, "the export")
    written = {}
    for table, columns in _tables(store).items():
        count = store.query(f'SELECT count(*) AS n FROM "{table}"')["n"][0].as_py()
        if count == 0:
            continue
        keys = [column for column in PARTITION_COLUMNS if column in columns]
        target = folder / table
        options = f", PARTITION_BY ({', '.join(keys)})" if keys else ""
        if not keys:
            target.mkdir()
            target = target / "data.parquet"
        store.con.execute(f"COPY \"{table}\" TO '{_quoted(target)}' (FORMAT PARQUET{options})")
        written[table] = count
    manifest = {
        "schema_version": store.schema_version,
        "saefeatures": __version__,
        "tables": written,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return written


def _primary_keys(store: Store) -> dict[str, list[str]]:
    rows = store.query(
        "SELECT table_name, constraint_column_names AS columns FROM duckdb_constraints() "
        "WHERE constraint_type = 'PRIMARY KEY'"
    ).to_pylist()
    return {row["table_name"]: row["columns"] for row in rows}


def import_results(store: Store, folder: Path) -> dict[str, int]:
    """Merge an export into the store in one transaction; return rows added per table."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise SaefeaturesError(f"{folder} has no {MANIFEST}: it is not a `saefeatures export`")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("schema_version", 0) > len(migrations()):
        raise SaefeaturesError(
            f"{folder} was exported with schema version {manifest['schema_version']}, newer "
            f"than this saefeatures ({len(migrations())}); upgrade saefeatures first"
        )
    tables, keys = _tables(store), _primary_keys(store)
    unknown = [name for name in manifest.get("tables", {}) if name not in tables]
    if unknown:
        raise SaefeaturesError(f"{folder} holds tables this store does not have: {unknown}")
    added = {}
    with store.transaction():
        for table in manifest.get("tables", {}):
            source = (
                f"read_parquet('{_quoted(folder / table)}/**/*.parquet', "
                "hive_partitioning = true, union_by_name = true)"
            )
            before = store.query(f'SELECT count(*) AS n FROM "{table}"')["n"][0].as_py()
            if table in keys:
                store.con.execute(
                    f'INSERT OR REPLACE INTO "{table}" BY NAME SELECT * FROM {source}'
                )
            else:
                store.con.execute(
                    f'INSERT INTO "{table}" BY NAME SELECT * FROM {source} '
                    f'WHERE run_id NOT IN (SELECT DISTINCT run_id FROM "{table}")'
                )
            named = hooks.fill(table)  # exports made before every layer had its hook
            if named is not None:
                store.con.execute(named)
            after = store.query(f'SELECT count(*) AS n FROM "{table}"')["n"][0].as_py()
            added[table] = after - before
    return added
