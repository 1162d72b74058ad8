"""Comparisons from the store only, on hand-made results with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from saefeatures import compare
from saefeatures.errors import SaefeaturesError
from saefeatures.options import CompareOptions
from saefeatures.store.database import Store
from tests.circuits.hand_made import insert_circuit
from tests.conftest import assert_user_error, run_cli
from tests.tiny import model_row

A, B = "smollm2-135m-instruct", "gemma-3-270m"
LAYERS = {A: 30, B: 18}


def _steering(run_id: str, model: str, level: str, k: int | None, own: float, other: float):
    return [
        {
            "run_id": run_id,
            "model": model,
            "layer": 3,
            "level": level,
            "emotion": e,
            "target": t,
            "k": k,
            "scale": 0.1,
            "metric": "delta_logprob",
            "value": own if e == t else other,
        }
        for e in ("happy", "sad")
        for t in ("happy", "sad")
    ]


def _geometry(run_id: str, model: str, peak: float) -> list[dict]:
    n = LAYERS[model]
    return [
        {
            "run_id": run_id,
            "model": model,
            "corpus": "stories",
            "layer": layer,
            "rel_depth": layer / n,
            "method": "denoised",
            "component": "PC1",
            "rating": "valence",
            "pearson_r": 1 - abs(layer / n - peak),
        }
        for layer in range(n)
    ]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "w.duckdb"
    with Store(path) as store, store.run("seed", {}) as run_id:
        steering = (
            _steering(run_id, A, "direction", None, 2.0, -1.0)
            + _steering(run_id, A, "features", 5, 1.0, -0.5)
            + _steering(run_id, B, "direction", None, 0.5, 0.0)
        )
        for table, rows in (
            ("steering_results", steering),
            ("geometry", _geometry(run_id, A, 0.3) + _geometry(run_id, B, 0.5)),
        ):
            store.insert(table, pa.Table.from_pylist(rows))
    return path


def _by_model(row: dict) -> dict[str, float]:
    """A model-pair row's two values, keyed by model."""
    other = json.loads(row["extra"])["other_value"]
    return {row["model"]: row["direction_value"], row["other_model"]: other}


def test_levels_and_models_from_the_store(db, tmp_path):
    with Store(db) as store:
        result = compare.compare(store, tmp_path / "out", CompareOptions())
    rows = {(r["kind"], r["metric"]): r for r in result.rows}
    own = rows[("levels", "steering_self_effect@k=5,scale=0.1")]
    assert (own["model"], own["direction_value"], own["feature_value"]) == (A, 2.0, 1.0)
    specific = rows[("levels", "steering_specificity@k=5,scale=0.1")]
    assert (specific["direction_value"], specific["feature_value"]) == (3.0, 1.5)
    assert _by_model(rows[("models", "pc1_valence_best_depth (stories)")]) == pytest.approx(
        {A: 9 / 30, B: 9 / 18}
    )
    # depth profiles are drawn, not correlated (neighbouring layers are not independent)
    assert not any("profile_correlation" in metric for _, metric in rows)
    steer = rows[("models", "steering_self_effect (direction, smallest scale)")]
    assert _by_model(steer) == {A: 2.0, B: 0.5}
    assert len(result.figures) == 2
    with Store(db, read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM comparisons")["n"][0].as_py() == len(rows)


def test_compare_keeps_the_validation_rows_and_replaces_its_own(db, tmp_path):
    with Store(db) as store, store.run("validate retrieval", {}) as run_id:
        store.insert(
            "comparisons",
            {
                "run_id": [run_id],
                "kind": ["validation-retrieval"],
                "model": [A],
                "metric": ["mean_ap"],
                "direction_value": [0.3],
                "feature_value": [0.2],
            },
        )
    for _ in range(2):
        with Store(db) as store:
            result = compare.compare(store, tmp_path / "out", CompareOptions())
    with Store(db, read_only=True) as store:
        kinds = store.query("SELECT kind, count(*) AS n FROM comparisons GROUP BY kind")
    counts = dict(zip(kinds["kind"].to_pylist(), kinds["n"].to_pylist(), strict=True))
    assert counts["validation-retrieval"] == 1
    assert counts["levels"] + counts["models"] == len(result.rows)


def test_a_model_without_results_and_an_empty_store(tmp_path):
    empty = tmp_path / "empty.duckdb"
    with Store(empty) as store, store.run("seed", {}):
        pass
    with Store(empty) as store, pytest.raises(SaefeaturesError, match=f"no results for {B}"):
        compare.compare(store, tmp_path, CompareOptions(models=(B,)))
    assert_user_error(run_cli("compare", "--db", str(empty)), "no model results")


def test_patching_peaks_and_faithfulness_from_the_store(tmp_path):
    with Store(tmp_path / "w.duckdb") as store, store.run("seed", {}) as run_id:
        # Two good-news pairs on A, each peaking at one layer of the positions that differ.
        store.register_model(run_id, model_row(A, LAYERS[A]))
        scores = [
            {
                "run_id": run_id,
                "model": A,
                "pair_id": pair,
                "condition": "good",
                "situation": pair,
                "score_name": "anchors",
                "score_definition": "d",
                "clean_score": 1.0,
                "corrupted_score": 0.0,
                "aligned": True,
                "prefix_length": 2,
                "clean_tokens": 10,
                "corrupted_tokens": 10,
                "selection": False,
            }
            for pair in ("p1", "p2")
        ]
        store.insert("pair_scores", pa.Table.from_pylist(scores))
        resid = [
            {
                "run_id": run_id,
                "model": A,
                "level": "resid",
                "pair_id": pair,
                "condition": "good",
                "layer": layer,
                "position": position,
                "effect": float(layer == peak and position == last),
                "differs": True,
                "extra": '{"score": "anchors"}',
            }
            for pair, last, peak in (("p1", 7, 12), ("p2", 9, 18))
            for position in (last - 1, last)
            for layer in range(LAYERS[A])
        ]
        store.insert("patching_results", pa.Table.from_pylist(resid))
        faithful = [
            {
                "run_id": run_id,
                "model": A,
                "sae_id": "s",
                "layer": 10,
                "pair_id": pair,
                "condition": "bad",
                "k": 5,
                "effect": top,
                "layer_effect": whole,
                "gap": gap,
                "recovered": top / whole,
            }
            for pair, top, whole, gap in (("p1", -1.0, -2.0, -4.0), ("p2", 3.0, 3.0, -3.0))
        ]
        store.insert("patching_faithfulness", pa.Table.from_pylist(faithful))
        assert compare.patching_peaks(store, A) == {"good": pytest.approx(15 / 29)}
        (row,) = [r for r in compare.level_rows(store, A) if r["metric"].startswith("patching")]
    assert row["metric"] == "patching_effect@bad,k=5" and row["layer"] == 10
    assert row["direction_value"] == pytest.approx((0.5 - 1.0) / 2)
    assert row["feature_value"] == pytest.approx((0.25 - 1.0) / 2)


def test_circuits_line_up_by_relative_depth(tmp_path):
    """Circuits at layers 4 and 16 of 30 and at 6 and 10 of 18 interleave by depth
    (4/29, 6/17, 16/29, 10/17); a model without circuit rows has none."""
    circuit_layers = {A: (4, 16), B: (6, 10)}
    with Store(tmp_path / "w.duckdb") as store, store.run("seed", {}) as run_id:
        for model, layers in circuit_layers.items():
            store.register_model(run_id, model_row(model, LAYERS[model]))
            insert_circuit(store, run_id, model, layers)
        result = compare.compare(store, tmp_path / "out", CompareOptions())
        assert compare.circuit_rows(store, ["owner/no-circuit"]) == ([], [])
    rows = [r for r in result.rows if r["kind"] == "circuits"]
    by_depth = [(A, 4, 4 / 29), (B, 6, 6 / 17), (A, 16, 16 / 29), (B, 10, 10 / 17)]
    # the circuit's first 5 (good) or 4 (bad) hand-made nodes: 3 or 2 at the first layer
    shares_by_hand = {"good": {True: 3 / 5, False: 2 / 5}, "bad": {True: 2 / 4, False: 2 / 4}}
    for condition in ("good", "bad"):
        shares = [r for r in rows if r["metric"].startswith(f"circuit_node_share@{condition},")]
        assert [(r["model"], r["layer"]) for r in shares] == [
            (m, layer) for m, layer, _ in by_depth
        ]
        for row, (_, layer, depth) in zip(shares, by_depth, strict=True):
            assert json.loads(row["extra"])["rel_depth"] == pytest.approx(depth)
            assert row["metric"] == f"circuit_node_share@{condition},depth={depth:.2f}"
            assert row["feature_value"] == pytest.approx(shares_by_hand[condition][layer in (4, 6)])
        effects = [r for r in rows if r["metric"].startswith(f"circuit_patch_effect@{condition},")]
        first_layer = [r for r in effects if r["layer"] in (4, 6)]
        assert {(r["direction_value"], r["feature_value"]) for r in first_layer} == {(0.3, 0.6)}
        assert {json.loads(r["extra"])["layer"] for r in first_layer} == {1.0}
        # each patch's p against its null rides along (hand-made: 0.01 at the first layer)
        extras = [json.loads(r["extra"]) for r in first_layer]
        assert {(e["valence_p"], e["circuit_p"], e["emotions_p"]) for e in extras} == {
            (0.01, 0.01, 0.01)
        }
    faithful = {r["model"]: r for r in rows if r["metric"] == "circuit_faithfulness@good,nodes=5"}
    assert set(faithful) == {A, B}
    assert faithful[A]["feature_value"] == pytest.approx(5 / 7)
    assert json.loads(faithful[A]["extra"])["random"] == pytest.approx(0.1)
    assert {Path(p).name for p in result.figures} == {
        f"circuits-{c}.{suffix}" for c in ("good", "bad") for suffix in ("png", "html")
    }
