"""Every table, view and column of a freshly migrated store says what it holds, and every
stored layer says which hook it is: read back from DuckDB's catalog, not from our code."""

from __future__ import annotations

import duckdb
import pytest

from saefeatures.store import database as store_module
from saefeatures.store import exchange, hooks
from saefeatures.store.database import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "w.duckdb") as opened:
        yield opened


OWN = "database_name = current_database() AND schema_name = 'main'"  # not DuckDB's own


def _rows(store: Store, sql: str) -> list[dict]:
    return store.query(sql).to_pylist()


def test_every_table_and_view_has_a_comment(store):
    relations = _rows(
        store,
        f"SELECT table_name AS name, comment FROM duckdb_tables() WHERE {OWN} "
        f"UNION ALL SELECT view_name, comment FROM duckdb_views() WHERE {OWN} AND NOT internal",
    )
    assert len(relations) > 40
    bare = [r["name"] for r in relations if not (r["comment"] or "").strip()]
    assert not bare, f"tables or views without COMMENT ON in db/schema.sql: {bare}"


def test_every_column_has_a_comment(store):
    columns = _rows(
        store,
        f"SELECT table_name, column_name, comment FROM duckdb_columns() WHERE {OWN}",
    )
    assert len(columns) > 400
    bare = [f"{c['table_name']}.{c['column_name']}" for c in columns if not c["comment"]]
    assert not bare, f"columns without COMMENT ON COLUMN in db/schema.sql: {bare}"


def test_a_hook_comment_names_the_hook_point(store):
    hooks_of_layers = _rows(
        store,
        f"SELECT table_name, comment FROM duckdb_columns() WHERE {OWN} "
        "AND column_name = 'hook' AND table_name IN (SELECT table_name FROM duckdb_columns() "
        "WHERE column_name = 'layer') AND table_name IN (SELECT table_name FROM duckdb_tables())",
    )
    assert len(hooks_of_layers) > 25
    vague = [r["table_name"] for r in hooks_of_layers if "blocks." not in (r["comment"] or "")]
    assert not vague, vague


def test_every_stored_layer_has_a_hook_column(store):
    tables = {
        row["table_name"]: set(row["columns"])
        for row in _rows(
            store,
            "SELECT table_name, list(column_name) AS columns FROM duckdb_columns() "
            f"WHERE {OWN} AND table_name IN (SELECT table_name FROM duckdb_tables()) "
            "GROUP BY table_name",
        )
    }
    without_hook = sorted(
        name for name, cols in tables.items() if "layer" in cols and "hook" not in cols
    )
    assert not without_hook, without_hook
    # the tables whose hook the store names from the layer exist with both columns
    named = {name: tables.get(name, set()) >= {"layer", "hook"} for name in hooks.HOOK_OF_LAYER}
    assert all(named.values()), named


def _store_at_version_19(path) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied TIMESTAMP, "
        "package_version VARCHAR)"
    )
    for migration in store_module.migrations()[:19]:
        con.execute(migration.sql)
        con.execute("INSERT INTO schema_version VALUES (?, now(), 'old')", [migration.version])
    con.execute(
        "INSERT INTO emotion_vectors (run_id, model, corpus, layer, hook, emotion, method, "
        "n_passages, vector) VALUES ('r', 'm', 'c', 4, 'resid_post', 'happy', 'raw', 3, [1.0])"
    )
    con.execute(
        "INSERT INTO geometry (run_id, model, corpus, layer, rel_depth, method, component) "
        "VALUES ('r', 'm', 'c', 7, 0.5, 'raw', 'PC1')"
    )
    con.execute(
        "INSERT INTO patching_results (run_id, model, level, pair_id, condition, layer, "
        "position, head) VALUES ('r', 'm', 'resid', 'p', 'good', 2, 5, NULL), "
        "('r', 'm', 'heads', 'p', 'good', 3, NULL, 1)"
    )
    con.execute(
        "INSERT INTO comparisons (run_id, kind, model, other_model, layer, metric) "
        "VALUES ('r', 'models', 'm', 'n', NULL, 'best_r'), ('r', 'levels', 'm', NULL, 6, 'x')"
    )
    con.close()


def test_the_migration_names_the_hooks_the_writers_name_now(tmp_path):
    old, new = tmp_path / "old.duckdb", tmp_path / "new.duckdb"
    _store_at_version_19(old)
    with Store(old) as migrated:
        found = {
            (table, layer): hook
            for table in ("emotion_vectors", "geometry", "patching_results", "comparisons")
            for layer, hook in migrated.con.execute(f"SELECT layer, hook FROM {table}").fetchall()
        }
        rows = {
            table: migrated.query(f"SELECT * EXCLUDE (hook) FROM {table}")
            for table in ("emotion_vectors", "geometry", "patching_results", "comparisons")
        }
    assert found == {
        ("emotion_vectors", 4): "blocks.4.hook_resid_post",
        ("geometry", 7): "blocks.7.hook_resid_post",
        ("patching_results", 2): "blocks.2.hook_resid_pre",
        ("patching_results", 3): "blocks.3.attn.hook_z",
        ("comparisons", None): None,
        ("comparisons", 6): "blocks.6.hook_resid_post",
    }
    with Store(new) as fresh:
        for table, table_rows in rows.items():
            fresh.insert(table, table_rows)
        written = {
            (table, layer): hook
            for table in rows
            for layer, hook in fresh.con.execute(f"SELECT layer, hook FROM {table}").fetchall()
        }
    assert written == found


def test_rows_that_bring_their_hook_keep_it(store):
    store.insert(
        "geometry",
        {
            "run_id": ["r"],
            "model": ["m"],
            "corpus": ["c"],
            "layer": [1],
            "rel_depth": [0.1],
            "method": ["raw"],
            "component": ["PC1"],
            "hook": ["blocks.1.hook_mlp_out"],
        },
    )
    assert _rows(store, "SELECT hook FROM geometry") == [{"hook": "blocks.1.hook_mlp_out"}]


def test_imported_rows_stored_without_a_hook_get_theirs(tmp_path):
    with Store(tmp_path / "a.duckdb") as source:
        source.con.execute(  # as a store exported before every layer had its hook holds it
            "INSERT INTO geometry (run_id, model, corpus, layer, rel_depth, method, component) "
            "VALUES ('r', 'm', 'c', 2, 0.5, 'raw', 'PC1')"
        )
        exchange.export(source, tmp_path / "exported")
    with Store(tmp_path / "b.duckdb") as target:
        exchange.import_results(target, tmp_path / "exported")
        assert _rows(target, "SELECT layer, hook FROM geometry") == [
            {"layer": 2, "hook": "blocks.2.hook_resid_post"}
        ]
