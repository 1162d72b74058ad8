"""Mean ablation, faithfulness and completeness against whole runs rewritten by plain torch
forward hooks on the tiny chat model's decoder layers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from saefeatures.circuits import curves
from saefeatures.circuits.graph import CircuitSae, Node
from saefeatures.errors import SaefeaturesError
from saefeatures.patching import sweeps
from tests.circuits.conftest import prompt_ids
from tests.tiny import CLEAN

Rewrite = Callable[[torch.Tensor], torch.Tensor]  # a layer's output [1, T, d] -> new output


@pytest.fixture(scope="module")
def unequal(tiny_chat) -> sweeps.PreparedPair:
    """Prompts of different lengths: only the last position is patched."""
    return sweeps.prepare(
        tiny_chat, prompt_ids(tiny_chat, CLEAN), prompt_ids(tiny_chat, "Bad news.")
    )


@pytest.fixture(scope="module")
def means(tiny_chat, circuit_saes, pair, unequal) -> dict[int, curves.LayerMeans]:
    return curves.mean_values(tiny_chat, [pair, unequal], circuit_saes)


def whole(pair: sweeps.PreparedPair, side: torch.Tensor) -> torch.Tensor:
    """One prompt of a pair, shared prefix included, as a batch of one row."""
    return torch.cat([pair.shared, side])[None]


def sides(pair: sweeps.PreparedPair) -> list[tuple[torch.Tensor, list[int]]]:
    """Each prompt of a pair with its patched positions, counted in the whole prompt."""
    targets, origins = zip(*sweeps.patch_positions(pair), strict=True)
    return [
        (side, [pair.prefix_length + i for i in at])
        for side, at in ((pair.clean, origins), (pair.corrupted, targets))
    ]


def layer_output(model, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """Decoder layer `layer`'s output [T, d_model] in a whole run."""
    taken = {}

    def take(module, args, output) -> None:
        taken["x"] = (output[0] if isinstance(output, tuple) else output)[0].detach().clone()

    handle = model.hf_model.model.layers[layer].register_forward_hook(take)
    try:
        with torch.no_grad():
            model.final_hidden(ids)
    finally:
        handle.remove()
    return taken["x"]


def score_by_hand(model, score, ids: torch.Tensor, rewrites: dict[int, Rewrite]) -> float:
    """The anchor score of a whole run, each layer's output rewritten by its function."""

    def hook_for(rewrite: Rewrite):
        def put(module, args, output):
            hidden = rewrite((output[0] if isinstance(output, tuple) else output).clone())
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return put

    layers = model.hf_model.model.layers
    handles = [layers[layer].register_forward_hook(hook_for(f)) for layer, f in rewrites.items()]
    try:
        with torch.no_grad():
            hidden = model.final_hidden(ids)
            logits = model.head(hidden[:, -score.keep :], score.tokens)
    finally:
        for handle in handles:
            handle.remove()
    return float(score.reduce(logits)[0])


def mean_ablated(
    site: CircuitSae, mean: curves.LayerMeans, positions: list[int], nodes: set[Node], keep: bool
) -> Rewrite:
    """At `positions`: the listed nodes of the SAE's layer replaced by their means (with
    `keep`: every other node), the output rebuilt as decode(features) + error."""
    sae = site.sae
    listed = {node.feature for node in nodes if node.layer == site.layer}

    def rewrite(hidden: torch.Tensor) -> torch.Tensor:
        x = hidden[0, positions]
        features = sae.encode(x)
        error = x - sae.decode(features)
        chosen = torch.zeros(features.shape[-1], dtype=torch.bool)
        chosen[torch.tensor([f for f in listed if f is not None], dtype=torch.long)] = True
        ablate = ~chosen if keep else chosen
        features = torch.where(ablate, mean.features, features)
        if (None in listed) != keep:
            error = mean.error.expand_as(error)
        hidden[0, positions] = sae.decode(features) + error
        return hidden

    return rewrite


def every_node(saes: list[CircuitSae]) -> list[Node]:
    return [
        Node(site.layer, feature)
        for site in saes
        for feature in [*range(site.sae.W_dec.shape[0]), None]
    ]


def test_mean_values_average_the_split_residual_over_both_prompts(
    tiny_chat, circuit_saes, pair, unequal, means
):
    for site in circuit_saes:
        rows = [
            layer_output(tiny_chat, whole(p, side), site.layer)[at]
            for p in (pair, unequal)
            for side, at in sides(p)
        ]
        x = torch.cat(rows)
        assert (
            len(x) == 2 * len(pair.clean) + 2
        )  # every position of one pair, the last of the other
        features = site.sae.encode(x)
        torch.testing.assert_close(means[site.layer].features, features.mean(0), atol=1e-5, rtol=0)
        error = x - site.sae.decode(features)
        torch.testing.assert_close(means[site.layer].error, error.mean(0), atol=1e-5, rtol=0)


def test_mean_ablation_at_one_layer_equals_a_forward_hook_by_hand(
    tiny_chat, score, circuit_saes, pair, means
):
    site = circuit_saes[0]
    chosen = {Node(site.layer, 3), Node(site.layer, 10), Node(site.layer, None)}
    sets = [chosen, set(), {Node(site.layer, 3)}]
    clean, positions = sides(pair)[0]
    for keep in (True, False):
        found = curves.ablated_scores(tiny_chat, pair, score, [site], means, sets, keep)
        for nodes, value in zip(sets, found.tolist(), strict=True):
            rewrite = mean_ablated(site, means[site.layer], positions, nodes, keep)
            by_hand = score_by_hand(tiny_chat, score, whole(pair, clean), {site.layer: rewrite})
            assert value == pytest.approx(by_hand, abs=1e-4)
    untouched = score_by_hand(tiny_chat, score, whole(pair, clean), {})
    assert abs(found[0] - untouched) > 1e-3  # the ablation changes the score


def test_keeping_every_node_is_the_clean_run_and_later_layers_see_earlier_ablations(
    tiny_chat, score, circuit_saes, pair, means
):
    first, second = circuit_saes
    clean, positions = sides(pair)[0]
    untouched = score_by_hand(tiny_chat, score, whole(pair, clean), {})
    everything = set(every_node(circuit_saes))
    kept = curves.ablated_scores(tiny_chat, pair, score, circuit_saes, means, [everything], True)
    ablated = curves.ablated_scores(tiny_chat, pair, score, circuit_saes, means, [set()], False)
    assert float(kept[0]) == pytest.approx(untouched, abs=1e-4)
    assert float(ablated[0]) == pytest.approx(untouched, abs=1e-4)
    # The second layer's nodes kept, the first's ablated: the second layer takes the values
    # the ablated stream gives it, as when only the first layer is rewritten by hand.
    second_nodes = {n for n in everything if n.layer == second.layer}
    first_nodes = everything - second_nodes
    rewrite = mean_ablated(first, means[first.layer], positions, first_nodes, False)
    by_hand = score_by_hand(tiny_chat, score, whole(pair, clean), {first.layer: rewrite})
    only_second = curves.ablated_scores(
        tiny_chat, pair, score, circuit_saes, means, [second_nodes], True
    )
    first_ablated = curves.ablated_scores(
        tiny_chat, pair, score, circuit_saes, means, [first_nodes], False
    )
    assert float(only_second[0]) == pytest.approx(by_hand, abs=1e-4)
    assert float(first_ablated[0]) == pytest.approx(by_hand, abs=1e-4)
    assert abs(by_hand - untouched) > 1e-3


def test_sets_split_over_several_forwards_score_as_in_one(
    tiny_chat, score, circuit_saes, pair, means, monkeypatch
):
    sets = [{Node(1, f), Node(2, None)} for f in range(5)]
    together = curves.ablated_scores(tiny_chat, pair, score, circuit_saes, means, sets, False)
    monkeypatch.setattr(curves, "ROWS_PER_FORWARD", 2)
    apart = curves.ablated_scores(tiny_chat, pair, score, circuit_saes, means, sets, False)
    torch.testing.assert_close(apart, together, atol=1e-5, rtol=0)


def test_curves_follow_their_definitions(tiny_chat, score, circuit_saes, pair, unequal, means):
    first, second = circuit_saes
    nodes = every_node(circuit_saes)
    head = [Node(2, 7), Node(1, None), Node(1, 3), Node(2, None), Node(1, 40)]
    ranking = head + [n for n in nodes if n not in head]
    pairs = [pair, unequal]
    points = curves.curves(
        tiny_chat, pairs, score, circuit_saes, means, ranking, [500, 5, 0], nodes, 3, 11
    )
    by_key = {(p.curve, p.selection, p.nodes): p for p in points}
    total = len(nodes)
    # Sizes past the ranking are clipped to it; every size gets random draws among all nodes.
    assert sorted(by_key) == sorted(
        (curve, selection, n)
        for curve in ("faithfulness", "completeness")
        for selection in ("circuit", "random")
        for n in (0, 5, total)
    )
    assert all(p.pairs == 2 for p in points)
    assert all(p.draws == (1 if p.selection == "circuit" else 3) for p in points)
    assert all(p.spread is None for p in points if p.selection == "circuit")
    expected = {
        ("faithfulness", 0): 0.0,
        ("faithfulness", total): 1.0,
        ("completeness", 0): 1.0,
        ("completeness", total): 0.0,
    }
    for (curve, n), value in expected.items():
        for selection in ("circuit", "random"):
            assert by_key[(curve, selection, n)].value == pytest.approx(value, abs=1e-4)
        assert by_key[(curve, "random", n)].spread == pytest.approx(0.0, abs=1e-4)

    def m(kept: set[Node], keep: bool) -> float:
        """The clean score, mean over the pairs, with both layers rewritten by hand."""
        found = []
        for p in pairs:
            clean, positions = sides(p)[0]
            rewrites = {
                site.layer: mean_ablated(site, means[site.layer], positions, kept, keep)
                for site in (first, second)
            }
            found.append(score_by_hand(tiny_chat, score, whole(p, clean), rewrites))
        return sum(found) / len(found)

    none, full = m(set(), True), m(set(), False)
    assert abs(full - none) > 1e-3
    circuit = set(head)
    faithful = (m(circuit, True) - none) / (full - none)
    complete = (m(circuit, False) - none) / (full - none)
    assert by_key[("faithfulness", "circuit", 5)].value == pytest.approx(faithful, abs=1e-3)
    assert by_key[("completeness", "circuit", 5)].value == pytest.approx(complete, abs=1e-3)


def test_random_sets_are_reproducible_and_drawn_from_the_candidates():
    candidates = [Node(1, f) for f in (4, 9, 17, 30)] + [Node(2, 5), Node(2, None)]
    drawn = curves.random_sets(candidates, [0, 2, 6, 7], 5, seed=3)
    assert sorted(drawn) == [0, 2, 6]  # 7 is more than the candidates
    assert all(len(sets) == 5 for sets in drawn.values())
    for size, sets in drawn.items():
        assert all(len(s) == size and s <= set(candidates) for s in sets)
    assert curves.random_sets(candidates[::-1], [2, 6], 5, seed=3) == {2: drawn[2], 6: drawn[6]}
    others = curves.random_sets(candidates, [2], 5, seed=4)[2]
    assert others != drawn[2]
    assert len(set(drawn[2])) > 1  # draws differ from each other
    assert curves.random_sets(candidates, [2], 0, seed=3) == {}


def test_curves_are_reproducible_for_a_seed(tiny_chat, score, circuit_saes, pair, means):
    ranking = [Node(1, 3), Node(2, None)]
    candidates = [Node(1, f) for f in range(10)]

    def run(seed: int) -> list[curves.CurvePoint]:
        return curves.curves(
            tiny_chat, [pair], score, circuit_saes, means, ranking, [1, 2], candidates, 4, seed
        )

    first = run(5)
    assert first == run(5)
    random = [p for p in first if p.selection == "random"]
    assert len(random) == 4 and all(p.spread is not None for p in random)


def test_curves_are_undefined_where_ablating_everything_changes_nothing(
    tiny_chat, score, circuit_saes, pair, means, monkeypatch
):
    def flat(model, p, s, saes, m, node_sets, keep) -> torch.Tensor:
        return torch.zeros(len(node_sets))

    monkeypatch.setattr(curves, "ablated_scores", flat)
    points = curves.curves(
        tiny_chat, [pair], score, circuit_saes, means, [Node(1, 0)], [1], [Node(1, 2)], 2, 0
    )
    assert len(points) == 4
    assert all(p.value is None and p.spread is None for p in points)


def test_bad_input_is_refused(tiny_chat, score, circuit_saes, pair, means):
    with pytest.raises(SaefeaturesError, match="which has no SAE here"):
        curves.ablated_scores(tiny_chat, pair, score, circuit_saes, means, [{Node(3, 0)}], True)
    with pytest.raises(SaefeaturesError, match="cannot be negative"):
        curves.curves(tiny_chat, [pair], score, circuit_saes, means, [], [-1], [], 1, 0)
    with pytest.raises(SaefeaturesError, match="at least one pair"):
        curves.mean_values(tiny_chat, [], circuit_saes)
