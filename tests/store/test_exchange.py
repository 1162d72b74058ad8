"""Export to partitioned Parquet and merge back, through the command line."""

from __future__ import annotations

import json

import pyarrow as pa

from saefeatures.store.database import Store
from tests.conftest import assert_user_error, run_cli

MODELS = ("smollm2-135m-instruct", "org/model-b")


def _seed(path) -> None:
    with Store(path) as store, store.run("seed", {}) as run_id:
        store.insert(
            "corpora", {"run_id": [run_id], "corpus": ["c"], "kind": ["k"], "n_passages": [0]}
        )
        store.insert(
            "emotion_vectors",
            pa.Table.from_pylist(
                [
                    {
                        "run_id": run_id,
                        "model": model,
                        "corpus": "c",
                        "layer": layer,
                        "hook": "h",
                        "emotion": emotion,
                        "method": "raw",
                        "n_passages": 3,
                        "vector": [1.0, float(layer)],
                    }
                    for model in MODELS
                    for layer in (1, 2)
                    for emotion in ("happy", "sad")
                ]
            ),
        )


def _rows(path, sql: str) -> list[dict]:
    with Store(path, read_only=True) as store:
        return store.query(sql).to_pylist()


def test_export_then_merge_without_duplicates(tmp_path):
    source, target, folder = tmp_path / "a.duckdb", tmp_path / "b.duckdb", tmp_path / "export"
    _seed(source)
    exported = run_cli("export", "--to", str(folder), "--db", str(source))
    assert exported.code == 0, exported.stderr
    parts = sorted(
        p.relative_to(folder / "emotion_vectors").parent.as_posix()
        for p in (folder / "emotion_vectors").rglob("*.parquet")
    )
    assert parts == [
        f"model={name}/layer={layer}" for name in ("org%2Fmodel-b", MODELS[0]) for layer in (1, 2)
    ]
    assert json.loads((folder / "manifest.json").read_text())["tables"]["emotion_vectors"] == 8
    _seed(target)  # the target holds results of its own
    for _ in range(2):  # merging twice adds nothing the second time
        merged = run_cli("import-results", str(folder), "--db", str(target))
        assert merged.code == 0, merged.stderr
        assert _rows(target, "SELECT count(*) AS n FROM emotion_vectors")[0]["n"] == 16
    query = "SELECT run_id, model, layer, emotion, vector FROM emotion_vectors ORDER BY ALL"
    mine = _rows(source, query)
    assert [row for row in _rows(target, query) if row["run_id"] == mine[0]["run_id"]] == mine
    assert _rows(target, "SELECT count(*) AS n FROM runs")[0]["n"] == 2
    assert _rows(target, "SELECT count(*) AS n FROM corpora")[0]["n"] == 1


def test_bad_exchange_inputs(tmp_path):
    db = tmp_path / "w.duckdb"
    _seed(db)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert_user_error(
        run_cli("export", "--to", str(tmp_path / "full"), "--db", str(db)), "not empty"
    )
    assert_user_error(run_cli("import-results", str(tmp_path), "--db", str(db)), "manifest.json")
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "manifest.json").write_text(json.dumps({"schema_version": 99, "tables": {}}))
    assert_user_error(run_cli("import-results", str(newer), "--db", str(db)), "newer")
