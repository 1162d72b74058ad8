"""The direction view's nulls: a planted direction beats every random subspace of its
rank, a random subspace is not rejected by its own null, the circuit's null is random
node sets patched exactly, and the averages and p-values against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from saefeatures.circuits import curves, direction_view, directions, nodes
from saefeatures.circuits.averages import pair_means
from saefeatures.circuits.graph import Node
from saefeatures.patching import sweeps
from tests.circuits.conftest import prompt_ids
from tests.circuits.test_directions import _differences, _gap
from tests.tiny import CLEAN

DRAWS = 19  # the smallest p is 1 / 20


@pytest.fixture(scope="module")
def unequal(tiny_chat) -> sweeps.PreparedPair:
    """Prompts of unequal lengths: only the last position is patched."""
    return sweeps.prepare(
        tiny_chat, prompt_ids(tiny_chat, CLEAN), prompt_ids(tiny_chat, "Bad news.")
    )


def _rows(tiny_chat, score, saes, pairs, view) -> dict[str, dict]:
    gaps = [_gap(tiny_chat, score, pair) for pair in pairs]
    found = direction_view.direction_rows(tiny_chat, score, saes, pairs, gaps, view, "test")
    return {row["intervention"]: row for row in found}


def test_a_planted_direction_beats_every_random_subspace(tiny_chat, score, circuit_saes, unequal):
    (delta,) = _differences(tiny_chat, unequal)
    planted = (delta / delta.norm())[:, None].numpy()
    view = direction_view.DirectionView({1: {"valence": planted}}, [], [], DRAWS, seed=0)
    rows = _rows(tiny_chat, score, circuit_saes[:1], [unequal], view)
    valence, layer = rows["valence"], rows["layer"]
    gap = _gap(tiny_chat, score, unequal)
    assert valence["effect"] == pytest.approx(layer["effect"], rel=1e-3)
    assert valence["normalized_effect"] == pytest.approx(valence["effect"] / gap)
    assert valence["null_draws"] == DRAWS and valence["dimensions"] == 1
    assert valence["p_value"] == pytest.approx(1 / (1 + DRAWS))
    assert abs(valence["null_effect"]) < 0.2 * abs(valence["effect"])
    assert (layer["null_draws"], layer["p_value"], layer["null_effect"]) == (0, None, None)
    assert "circuit" not in rows  # no circuit nodes at the layer


def test_a_random_subspace_is_not_rejected_by_its_own_null(tiny_chat, score, pair, unequal):
    """Twenty subspaces drawn like the null's, each tested against the null: their
    p-values spread over (0, 1] instead of piling up at the smallest."""
    hook = "blocks.1.hook_resid_post"
    observed = directions.random_bases(tiny_chat.d_model, 2, 20, seed=99)
    null = directions.random_bases(tiny_chat.d_model, 2, DRAWS, seed=0)
    effects = np.array(
        [
            directions.projection_effects(tiny_chat, one, score, hook, [*observed, *null])
            for one in (pair, unequal)
        ]
    )
    p_values = [
        direction_view.null_of(float(effects[:, i].mean()), effects[:, len(observed) :]).p_value
        for i in range(len(observed))
    ]
    assert 0.3 < np.mean(p_values) < 0.7
    assert np.mean(np.array(p_values) <= 0.1) <= 0.25


def test_the_circuit_null_is_random_node_sets_patched_exactly(
    tiny_chat, score, circuit_saes, pair, unequal
):
    site = circuit_saes[0]
    candidates = [Node(1, feature) for feature in range(12)] + [Node(1, None)]
    circuit = candidates[:3]
    view = direction_view.DirectionView({}, circuit, candidates, DRAWS, seed=5)
    rows = _rows(tiny_chat, score, [site], [pair, unequal], view)
    drawn = curves.random_sets(candidates, [3], DRAWS, 5)[3]
    per_pair = np.array(
        [
            nodes.exact_effects(tiny_chat, one, score, [site], [circuit, *drawn])
            for one in (pair, unequal)
        ]
    )
    row = rows["circuit"]
    assert row["dimensions"] == 3 and row["null_draws"] == DRAWS
    assert row["effect"] == pytest.approx(per_pair[:, 0].mean(), rel=1e-5, abs=1e-7)
    assert row["null_effect"] == pytest.approx(per_pair[:, 1:].mean(), rel=1e-5, abs=1e-7)
    extreme = np.sum(
        np.abs(per_pair[:, 1:].mean(axis=0)) >= abs(per_pair[:, 0].mean()) * (1 - 1e-12)
    )
    assert row["p_value"] == pytest.approx((1 + extreme) / (1 + DRAWS))
    assert set(rows) == {"circuit", "layer"}  # no vectors at the layer: no bases


def test_a_null_summarised_by_hand():
    null = direction_view.null_of(2.0, np.array([[0.0, 1.0, -3.0]]))
    assert null.effect == pytest.approx(-2 / 3)
    assert null.spread == pytest.approx(np.std([0.0, 1.0, -3.0], ddof=1))
    assert (null.draws, null.p_value) == (3, pytest.approx(2 / 4))  # only |-3| >= 2
    # the draws are means over pairs, like the observation
    assert direction_view.null_of(2.0, np.array([[1.0, 3.0], [3.0, 1.0]])).p_value == 1.0
    assert direction_view.null_of(2.0, np.zeros((2, 0))).draws == 0


def test_a_normalized_effect_is_a_ratio_of_means_that_a_tiny_gap_cannot_swamp():
    per_pair = [{"a": 1.0, "b": 2.0}, {"a": 1.0}, {"a": -0.5, "b": 1.0}]
    gaps = [1.0, 1e-9, 2.0]  # the second pair's prompts score alike
    means = pair_means(per_pair, gaps)
    assert means["a"].effect == pytest.approx(0.5)
    assert means["a"].normalized == pytest.approx(0.5 / np.mean(gaps))
    assert means["a"].pairs == 3
    # "b" is averaged over the pairs that have it only
    assert means["b"].normalized == pytest.approx(1.5 / 1.5) and means["b"].pairs == 2
    assert pair_means([{"c": 1.0}, {"c": 1.0}], [1.0, -1.0])["c"].normalized is None
    # a mean of per-pair ratios would be about 3e8 here
    assert abs(means["a"].normalized) < 1
