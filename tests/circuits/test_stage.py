"""The circuit stage: the situation split, the stored circuit against a direct computation,
and bad input through the real command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from saefeatures.circuits import curves, nodes, stage
from saefeatures.circuits.graph import CircuitSae, Node
from saefeatures.config import DB_ENV, OUT_ENV
from saefeatures.errors import SaefeaturesError
from saefeatures.patching import sweeps
from saefeatures.patching.conclusions import Pair
from saefeatures.patching.patch import encode_pair
from saefeatures.sae import loading
from saefeatures.store.database import Store
from tests.conftest import assert_refused, run_cli, run_cli_here
from tests.tiny import save_sae, write_pairs

SAE_LAYERS = (1, 2)
VECTOR_LAYER = 1  # emotion vectors here only: layer 2's direction view has no axis
NODES = 5
# Four situations, one of prompts of unequal lengths (patched at the last position only).
SITUATIONS = {
    "s1": ("Great news.", "Awful news.", "Fresh news."),
    "s2": ("I got the job.", "I lost my job.", "I had the job."),
    "s3": ("We won the cup.", "We lost again.", "We played them."),
    "s4": ("My dog is well.", "My dog is sick.", "My dog is here."),
}


def _pair_lines() -> list[dict[str, str]]:
    return [
        {
            "id": f"{situation}-{condition}",
            "situation": situation,
            "condition": condition,
            "clean": clean,
            "corrupted": corrupted,
        }
        for situation, (good, bad, corrupted) in SITUATIONS.items()
        for condition, clean in (("good", good), ("bad", bad))
    ]


@pytest.fixture(scope="module")
def circuit_workspace(tiny_chat_dir, tmp_path_factory) -> dict[str, Any]:
    """A store with random ReLU SAEs of the tiny chat model at layers 1 and 2 and emotion
    vectors at layer 1, and a pairs file; bad input is refused against it."""
    tmp = tmp_path_factory.mktemp("circuit")
    env = {DB_ENV: str(tmp / "w.duckdb"), OUT_ENV: str(tmp / "out")}
    model = ["--model", str(tiny_chat_dir)]
    torch.manual_seed(0)  # the SAEs, and so the circuit, are the same on every run
    for layer in SAE_LAYERS:
        folder = save_sae(tmp / f"sae{layer}", f"blocks.{layer}.hook_resid_post", 64, 48, None)
        loaded = run_cli_here("load", "--path", str(folder), *model, env=env)
        assert loaded.code == 0, loaded.stderr
    emotions = ["--emotions", "happy,sad,angry,calm,afraid", "--layers", str(VECTOR_LAYER)]
    made = run_cli_here("vectors", *model, *emotions, "--dtype", "float32", env=env)
    assert made.code == 0, made.stderr
    pairs = write_pairs(tmp / "pairs.jsonl", _pair_lines())
    return {"env": env, "db": tmp / "w.duckdb", "out": tmp / "out", "pairs": pairs}


# -- the split -------------------------------------------------------------------------------


def test_the_split_keeps_situations_whole_and_depends_on_the_seed_only():
    pairs = [Pair(**line) for line in _pair_lines()]
    selection, evaluation = stage.split_situations(pairs, seed=3)
    assert (selection, evaluation) == stage.split_situations(pairs, seed=3)
    chosen = {pair.situation for pair in selection}
    scored = {pair.situation for pair in evaluation}
    assert not chosen & scored and chosen | scored == set(SITUATIONS)
    assert len(chosen) == 2 and len(selection) == 4  # both conditions of each situation
    splits = {tuple(p.id for p in stage.split_situations(pairs, seed)[0]) for seed in range(10)}
    assert len(splits) > 1
    with pytest.raises(SaefeaturesError, match="at least 2 situations"):
        stage.split_situations([p for p in pairs if p.situation == "s1"], seed=0)


# -- the stage through the command line ------------------------------------------------------


def _read(db: Path, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    with Store(db, read_only=True) as store:
        return store.query(sql, params).to_pylist()


@pytest.fixture(scope="module")
def stored_circuit(circuit_workspace, tiny_chat_dir) -> dict[str, Any]:
    """`saefeatures circuit` run once on the workspace: its output and its run's config."""
    ws = circuit_workspace
    result = run_cli(
        "circuit",
        "--model",
        str(tiny_chat_dir),
        "--pairs",
        str(ws["pairs"]),
        "--nodes",
        str(NODES),
        "--exact-pairs",
        "2",
        "--edge-threshold",
        "0",
        "--draws",
        "3",
        "--null-directions",
        "4",
        "--dtype",
        "float32",
        env=ws["env"],
    )
    assert result.code == 0, result.stderr
    (run,) = _read(ws["db"], "SELECT config FROM runs WHERE command = 'circuit'")
    return {"stdout": result.stdout, "stderr": result.stderr, "config": json.loads(run["config"])}


def test_the_circuit_command_writes_every_table(circuit_workspace, stored_circuit):
    db = circuit_workspace["db"]
    for table in stage.TABLES:
        assert _read(db, f"SELECT count(*) AS n FROM {table}")[0]["n"] > 0, table
    for fragment in ("circuits", "faithfulness (random)", "direction view", "figures: "):
        assert fragment in stored_circuit["stdout"], fragment
    # Layer 2 has no emotion vectors: one line says so, and its view lacks those rows.
    (warning,) = [line for line in stored_circuit["stderr"].splitlines() if "vectors" in line]
    assert "at layers 2:" in warning
    views = _read(db, "SELECT DISTINCT layer, intervention FROM circuit_directions ORDER BY ALL")
    assert {(r["layer"], r["intervention"]) for r in views} >= {
        (1, "valence"),
        (1, "emotions"),
        (1, "layer"),
        (2, "layer"),
    }
    assert not {(2, "valence"), (2, "emotions")} & {(r["layer"], r["intervention"]) for r in views}
    # Every view but the whole layer has its null of --null-directions draws.
    nulls = _read(db, "SELECT intervention, null_draws, p_value FROM circuit_directions")
    for row in nulls:
        if row["intervention"] == "layer":
            assert (row["null_draws"], row["p_value"]) == (0, None)
        else:
            assert row["null_draws"] == 4 and 1 / 5 <= row["p_value"] <= 1, row
    # Each condition's circuit has --nodes nodes (or every node with an effect), by both
    # estimates; the curves have the circuit and its random baseline.
    members = _read(
        db,
        "SELECT condition, method, count(*) FILTER (in_circuit) AS chosen, count(*) AS found "
        "FROM circuit_nodes WHERE position IS NULL AND method <> 'exact' GROUP BY ALL",
    )
    assert len(members) == 4
    for row in members:
        assert row["chosen"] == min(NODES, row["found"]), row
    selections = _read(db, "SELECT DISTINCT condition, selection FROM circuit_curves")
    assert len(selections) == 4


def test_the_split_is_recorded_and_the_circuit_chosen_on_the_selection_pairs(
    circuit_workspace, stored_circuit, tiny_chat, score
):
    config, db = stored_circuit["config"], circuit_workspace["db"]
    situation = {line["id"]: line["situation"] for line in _pair_lines()}
    chosen = {situation[i] for i in config["selection_pairs"]}
    scored = {situation[i] for i in config["evaluation_pairs"]}
    assert not chosen & scored and chosen | scored == set(SITUATIONS)
    assert sorted(config["selection_pairs"] + config["evaluation_pairs"]) == sorted(situation)

    saes = _saes(db)
    good = [_prepared(tiny_chat, score, i) for i in config["selection_pairs"] if "good" in i]
    # Each node's normalized integrated-gradients effect, computed here pair by pair: its
    # mean effect over the pairs divided by their mean gap.
    summed = [
        nodes.node_effects(tiny_chat, pair, score, saes, "integrated_gradients", steps=5).summed()
        for pair, _ in good
    ]
    every = set().union(*summed)
    mean_gap = np.mean([gap for _, gap in good])
    expected = {
        node: np.mean([found.get(node, 0.0) for found in summed]) / mean_gap for node in every
    }
    stored = _read(
        db,
        "SELECT layer, feature, normalized_effect, in_circuit FROM circuit_nodes WHERE "
        "condition = 'good' AND method = 'integrated_gradients' AND position IS NULL",
    )
    found = {Node(r["layer"], r["feature"]): r for r in stored}
    for node, row in found.items():
        assert row["normalized_effect"] == pytest.approx(expected[node], rel=1e-3, abs=1e-5)
    top = sorted(expected, key=lambda node: -abs(expected[node]))[:NODES]
    assert {node for node, row in found.items() if row["in_circuit"]} == set(top)


def _saes(db: Path) -> list[CircuitSae]:
    rows = _read(db, "SELECT layer, sae_id, hook, path FROM saes ORDER BY layer")
    return [
        CircuitSae(r["layer"], r["sae_id"], r["hook"], loading.read_saelens(Path(r["path"])))
        for r in rows
    ]


def _prepared(model, score, pair_id: str) -> tuple[sweeps.PreparedPair, float]:
    """The pair split at its shared prefix, and its score gap (clean - corrupted)."""
    (line,) = [line for line in _pair_lines() if line["id"] == pair_id]
    clean_ids, corrupted_ids = encode_pair(model, Pair(**line))
    pair = sweeps.prepare(model, clean_ids.tolist(), corrupted_ids.tolist())
    with torch.no_grad():
        clean, corrupted = (
            float(sweeps.scored_forward(model, pair.prefix(model), tokens, score, 1)[0])
            for tokens in (pair.clean, pair.corrupted)
        )
    return pair, clean - corrupted


# -- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_one_line_and_leaves_the_store_alone(
    circuit_workspace, tiny_chat_dir, tiny_llama_dir, tmp_path
):
    ws = circuit_workspace
    chat = ("--model", str(tiny_chat_dir))
    one = write_pairs(tmp_path / "one.jsonl", _pair_lines()[:2])
    assert_refused(
        ws["db"],
        ws["env"],
        ("circuit", "--pairs", str(ws["pairs"])),
        [
            (("--model", str(tiny_llama_dir)), ("no SAE for", "saefeatures load")),
            ((*chat, "--layers", "0"), ("no SAE for", "at layer 0", "layers 1, 2")),
            ((*chat, "--layers", "9"), ("out of range",)),
            ((*chat, "--nodes", "0"), ("--nodes must be at least 1",)),
            ((*chat, "--score", "vibes"), ("'--score'", "'vibes' is not one of")),
            ((*chat, "--sae", "nope"), ("--sae nope", "saefeatures saes")),
            ((*chat, "--pairs", str(one)), ("at least 2 situations",)),
        ],
    )


def test_a_layer_with_several_saes_needs_one_named(tiny_chat_dir, tmp_path):
    env = {DB_ENV: str(tmp_path / "w.duckdb"), OUT_ENV: str(tmp_path / "out")}
    model = ("--model", str(tiny_chat_dir))
    for name in ("a", "b"):
        folder = save_sae(tmp_path / name, "blocks.1.hook_resid_post", 64, 48, None)
        assert run_cli_here("load", "--path", str(folder), *model, env=env).code == 0
    ids = [r["sae_id"] for r in _read(tmp_path / "w.duckdb", "SELECT sae_id FROM saes")]
    pairs = write_pairs(tmp_path / "pairs.jsonl", _pair_lines())
    assert_refused(
        tmp_path / "w.duckdb",
        env,
        ("circuit", *model, "--pairs", str(pairs)),
        [((), ("layer 1 has SAEs", *ids, "--sae")), (("--sae", ",".join(ids)), ("--sae",))],
    )


def test_faithfulness_of_the_whole_ranking_follows_its_definition(
    circuit_workspace, stored_circuit, tiny_chat, score
):
    """The curve's last point keeps every node with an effect and mean-ablates the others
    (means over the selection pairs), scored on the evaluation pairs; m(all) is the clean
    score and m(none) the last SAE layer's mean reconstruction at the patched positions."""
    config, db = stored_circuit["config"], circuit_workspace["db"]
    saes = _saes(db)
    selection, evaluation = (
        [_prepared(tiny_chat, score, i)[0] for i in config[key] if i.endswith("-good")]
        for key in ("selection_pairs", "evaluation_pairs")
    )
    ranked = frozenset(
        Node(r["layer"], r["feature"])
        for r in _read(
            db,
            "SELECT layer, feature FROM circuit_nodes WHERE condition = 'good' AND "
            "method = 'integrated_gradients' AND position IS NULL",
        )
    )
    means = curves.mean_values(tiny_chat, selection, saes)
    last = saes[-1]
    constant = last.sae.decode(means[last.layer].features) + means[last.layer].error

    def scored(pair: sweeps.PreparedPair, ablated: bool) -> float:
        positions = [origin for _, origin in sweeps.patch_positions(pair)]

        def ablate(activation: torch.Tensor, hook: Any = None) -> torch.Tensor:
            activation = activation.clone()
            activation[:, positions] = constant.to(activation.dtype)
            return activation

        hooks = [(last.hook, ablate)] if ablated else []
        with torch.no_grad():
            found = sweeps.scored_forward(
                tiny_chat, pair.prefix(tiny_chat), pair.clean, score, 1, hooks=hooks
            )
        return float(found[0])

    m_all = np.mean([scored(pair, False) for pair in evaluation])
    m_none = np.mean([scored(pair, True) for pair in evaluation])
    m_ranked = np.mean(
        [
            float(curves.ablated_scores(tiny_chat, pair, score, saes, means, [ranked], True)[0])
            for pair in evaluation
        ]
    )
    (row,) = _read(
        db,
        "SELECT value FROM circuit_curves WHERE condition = 'good' AND curve = 'faithfulness' "
        "AND selection = 'circuit' AND nodes = ?",
        [len(ranked)],
    )
    expected = (m_ranked - m_none) / (m_all - m_none)
    assert row["value"] == pytest.approx(expected, rel=1e-3, abs=1e-4)
