"""The DuckDB store: migrations, all-or-nothing bulk writes, runs and their status."""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa
import pytest

from saefeatures.errors import SaefeaturesError
from saefeatures.store import database as store_module
from saefeatures.store.database import Store

CORE_TABLES = {
    "runs",
    "models",
    "corpora",
    "passages",
    "emotion_vectors",
    "geometry",
    "saes",
    "sae_metrics",
    "features",
    "feature_activations",
    "alignments",
    "steering_results",
    "patching_results",
    "comparisons",
}


def _passages(n: int, run_id: str = "r") -> pa.Table:
    return pa.table(
        {
            "run_id": [run_id] * n,
            "corpus": ["c"] * n,
            "passage_id": list(range(n)),
            "emotion": ["happy"] * n,
            "text": [f"passage {i}" for i in range(n)],
        }
    )


def test_migrations_create_the_core_tables_and_are_idempotent(tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as first:
        tables = dict(first.table_counts())
        assert set(tables) >= CORE_TABLES
        assert first.schema_version == len(store_module.migrations())
    with Store(db) as second:
        assert dict(second.table_counts()) == tables
        assert second.query("SELECT count(*) AS n FROM schema_version")["n"][0].as_py() == len(
            store_module.migrations()
        )


def test_an_older_database_is_migrated_forward(tmp_path):
    db = tmp_path / "old.duckdb"
    first = store_module.migrations()[0]
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE schema_version (version INTEGER, applied TIMESTAMP, package_version VARCHAR)"
    )
    con.execute(first.sql)
    con.execute("INSERT INTO schema_version VALUES (1, now(), 'old')")
    con.close()
    with Store(db) as store:
        assert store.schema_version == len(store_module.migrations()) > 1
        columns = store.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'emotion_vectors'"
        )["column_name"].to_pylist()
        assert "token_offset" in columns


# Vocabulary entries as a byte-level BPE (GPT-2, SmolLM2) and a SentencePiece vocabulary
# (Gemma) write them, decoded by each family's own decoder in `tokenizers`.
BYTE_LEVEL = ["Ġhappy", "Ċ", "âĢĻs", "ÃĹ", "plain", "<|endoftext|>"]
SENTENCEPIECE = ["▁joy", "<0x0A>", "▁▁", "sad"]


def test_features_written_before_version_18_are_renamed_and_read_as_text(tmp_path):
    from tokenizers import decoders

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied TIMESTAMP, "
        "package_version VARCHAR)"
    )
    for migration in store_module.migrations()[:17]:
        con.execute(migration.sql)
        con.execute("INSERT INTO schema_version VALUES (?, now(), 'old')", [migration.version])
    con.execute(
        "INSERT INTO features (run_id, sae_id, feature, density, top_tokens, bottom_tokens) "
        "VALUES ('r', 's', 3, 0.5, ?, ?)",
        [BYTE_LEVEL, SENTENCEPIECE],
    )
    con.close()
    with Store(db) as store:
        rows = store.query("SELECT * FROM features").to_pylist()
    assert len(rows) == 1 and "top_tokens" not in rows[0] and "bottom_tokens" not in rows[0]
    byte_level = decoders.ByteLevel()
    sentencepiece = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    assert rows[0]["promoted_tokens"] == [byte_level.decode([t]) for t in BYTE_LEVEL]
    assert rows[0]["suppressed_tokens"] == [sentencepiece.decode([t]) for t in SENTENCEPIECE]
    assert rows[0]["promoted_tokens"][:3] == [" happy", "\n", "\u2019s"]
    assert (rows[0]["feature"], rows[0]["density"], rows[0]["promoted_logits"]) == (3, 0.5, None)


def test_bulk_write_failing_midway_leaves_no_rows(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.insert("passages", _passages(1000))
            raise RuntimeError("the stage dies after its first batch")
        bad = _passages(3).set_column(4, "text", pa.array(["ok", None, "ok"]))
        with pytest.raises(duckdb.Error), store.transaction():
            store.insert(
                "passages", _passages(5).set_column(2, "passage_id", pa.array(range(100, 105)))
            )
            store.insert("passages", bad)  # NOT NULL violated by the second batch
        assert store.query("SELECT count(*) AS n FROM passages")["n"][0].as_py() == 0
        with store.transaction():
            assert store.insert("passages", _passages(1000)) == 1000
        assert store.query("SELECT count(*) AS n FROM passages")["n"][0].as_py() == 1000


def test_replace_swaps_rows_atomically(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        store.replace("passages", {"corpus": "c"}, _passages(3))
        store.replace("passages", {"corpus": "c"}, _passages(2, run_id="r2"))
        rows = store.query("SELECT run_id, count(*) AS n FROM passages GROUP BY run_id").to_pylist()
        assert rows == [{"run_id": "r2", "n": 2}]


def test_runs_record_status_and_errors(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        with store.run("good", {"a": 1}) as good:
            status = store.query("SELECT status FROM runs WHERE run_id = ?", [good])
            assert status["status"][0].as_py() == "running"
        with pytest.raises(ValueError), store.run("bad", {}) as bad:
            raise ValueError("boom")
        rows = {
            row["run_id"]: row
            for row in store.query(
                "SELECT run_id, status, error, config, finished FROM runs"
            ).to_pylist()
        }
    assert rows[good]["status"] == "ok" and rows[good]["finished"] is not None
    assert rows[good]["config"] == '{"a": 1}'
    assert rows[bad]["status"] == "failed" and rows[bad]["error"] == "boom"


def test_runs_left_running_by_a_dead_process_are_failed_on_open(tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        store.con.execute(
            "INSERT INTO runs (run_id, command, package_version, host, pid, started, status) "
            "VALUES ('dead', 'x', '0', 'h', ?, now(), 'running')",
            [os.getpid() + 1],
        )
    with Store(db) as store:
        row = store.query("SELECT status, error FROM runs WHERE run_id = 'dead'").to_pylist()[0]
    assert row["status"] == "failed" and "interrupted" in row["error"]


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        store.con.execute("INSERT INTO schema_version VALUES (99, now(), 'future')")
    with pytest.raises(SaefeaturesError, match="schema version 99, newer"):
        Store(db)


def test_read_only_store_refuses_writes_and_file_access(tmp_path):
    db = tmp_path / "s.duckdb"
    Store(db).close()
    with Store(db, read_only=True) as store:
        with pytest.raises(SaefeaturesError, match="read-only"):
            store.user_query("DELETE FROM runs")
        with pytest.raises(SaefeaturesError, match="SQL error"):
            store.user_query(f"COPY runs TO '{tmp_path / 'out.csv'}'")
    assert not (tmp_path / "out.csv").exists()


def test_the_package_own_sql_raises_where_the_user_sql_gets_one_line(tmp_path):
    """A bug in the package's SQL must surface with its traceback, not as a polite line."""
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(duckdb.CatalogException):
            store.query("SELECT * FROM no_such_table")
        with pytest.raises(SaefeaturesError, match=r"SQL error: .*no_such_table"):
            store.user_query("SELECT * FROM no_such_table")


def test_an_atomic_run_lands_whole_with_its_ok_or_not_at_all(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(KeyboardInterrupt), store.run("cut", {}, atomic=True) as cut:
            store.insert("passages", _passages(3, run_id=cut))
            with store.transaction():  # part of the run's transaction
                store.insert(
                    "corpora",
                    {"run_id": [cut], "corpus": ["c"], "kind": ["import"], "n_passages": [3]},
                )
            raise KeyboardInterrupt
        with store.run("whole", {}, atomic=True) as whole:
            store.insert("passages", _passages(2, run_id=whole))
            with store.transaction():
                store.insert(
                    "passages",
                    _passages(1, run_id=whole).set_column(2, "passage_id", pa.array([7])),
                )
        status = dict(store.con.execute("SELECT run_id, status FROM runs").fetchall())
        owners = store.con.execute("SELECT run_id, count(*) FROM passages GROUP BY 1").fetchall()
        assert store.query("SELECT count(*) AS n FROM corpora")["n"][0].as_py() == 0
    assert status == {cut: "failed", whole: "ok"} and owners == [(whole, 3)]
