"""Edges between consecutive SAE layers: a planted path is found, and an upstream node's
edges add up to its attribution."""

from __future__ import annotations

import math

import pytest
import torch

from saefeatures import models
from saefeatures.circuits import edges, nodes
from saefeatures.circuits.graph import CircuitSae, Node
from saefeatures.errors import SaefeaturesError
from saefeatures.patching import reply_scores, sweeps
from saefeatures.sae import loading
from tests.circuits.conftest import SAE_LAYERS, prompt_ids
from tests.circuits.test_nodes import every_node
from tests.tiny import CLEAN, save_sae

WRITER, OTHER, READER = 0, 1, 0  # a and c at the first SAE layer, b at the second
LATENTS = 4
ALWAYS_ON = 10.0  # an encoder bias far above the residual's projections: ReLU stays linear


@pytest.fixture(scope="module")
def planted(tiny_chat, tmp_path_factory) -> list[CircuitSae]:
    """SAEs where latent a of the first layer writes the direction that latent b of the
    second reads, and latent c (same encoder as a, so the same clean - corrupted change)
    writes a direction orthogonal to it."""
    d = tiny_chat.d_model
    basis, _ = torch.linalg.qr(torch.randn(d, 4, generator=torch.Generator().manual_seed(0)))
    read_by_both, written_by_a, written_by_c, written_by_b = basis.T

    def weights(reads: dict[int, torch.Tensor], writes: dict[int, torch.Tensor]) -> dict:
        found = {
            "W_enc": torch.zeros(d, LATENTS),
            "b_enc": torch.zeros(LATENTS),
            "W_dec": torch.zeros(LATENTS, d),
            "b_dec": torch.zeros(d),
        }
        for latent, direction in reads.items():
            found["W_enc"][:, latent] = direction
            found["b_enc"][latent] = ALWAYS_ON
        for latent, direction in writes.items():
            found["W_dec"][latent] = direction
        return found

    first, second = SAE_LAYERS
    made = {
        first: weights(
            {WRITER: read_by_both, OTHER: read_by_both}, {WRITER: written_by_a, OTHER: written_by_c}
        ),
        second: weights({READER: written_by_a}, {READER: written_by_b}),
    }
    saes = []
    for layer, values in made.items():
        hook = f"blocks.{layer}.hook_resid_post"
        folder = tmp_path_factory.mktemp(f"planted{layer}") / "sae"
        save_sae(folder, hook, d, LATENTS, None, weights=values)
        saes.append(
            CircuitSae(layer, f"planted-{layer}", hook, loading.read_saelens(folder, "cpu"))
        )
    return saes


def test_a_planted_path_is_found_and_an_orthogonal_writer_is_not(tiny_chat, score, planted):
    # One patched position (the last): edges are not sums of terms of both signs.
    pair = sweeps.prepare(
        tiny_chat, prompt_ids(tiny_chat, CLEAN), prompt_ids(tiny_chat, "Bad news.")
    )
    first, second = SAE_LAYERS
    a, c = Node(first, WRITER), Node(first, OTHER)
    b, error = Node(second, READER), Node(second, None)
    found = edges.edge_effects(tiny_chat, pair, score, planted, [a, c], [b, error])
    assert set(found) == {(a, b), (a, error), (c, b), (c, error)}
    assert abs(found[(a, b)]) > 1e-4
    assert abs(found[(c, b)]) < 0.1 * abs(found[(a, b)])
    # b and the error node are all of the second layer that moves: between them, they
    # pass on all of a's and c's attribution.
    attribution = nodes.node_effects(tiny_chat, pair, score, planted, "attribution").summed()
    for source in (a, c):
        passed = found[(source, b)] + found[(source, error)]
        assert passed == pytest.approx(attribution[source], rel=1e-3, abs=1e-6)


def test_the_edges_of_each_upstream_node_add_up_to_its_attribution(
    tiny_chat, score, circuit_saes, pair
):
    up, down = circuit_saes
    upstream = every_node(up)
    found = edges.edge_effects(tiny_chat, pair, score, circuit_saes, upstream, every_node(down))
    attribution = nodes.node_effects(tiny_chat, pair, score, circuit_saes, "attribution").summed()
    sums = {source: 0.0 for source in upstream}
    for (source, _), effect in found.items():
        sums[source] += effect
    checked = [source for source in upstream if source in attribution]
    assert len(checked) > 10
    for source in checked:
        assert sums[source] == pytest.approx(attribution[source], rel=1e-3, abs=1e-5)


@pytest.fixture(scope="module")
def bfloat16_chat(tiny_chat_dir) -> models.LoadedModel:
    return models.load(str(tiny_chat_dir), dtype="bfloat16")


@pytest.mark.parametrize("case", ["replies", "bfloat16"])
def test_edges_come_out_with_the_replies_score_and_in_bfloat16(
    case, tiny_chat, bfloat16_chat, circuit_saes
):
    model = bfloat16_chat if case == "bfloat16" else tiny_chat
    score = reply_scores.make(model, "replies" if case == "replies" else "anchors")
    pair = sweeps.prepare(model, prompt_ids(model, CLEAN), prompt_ids(model, "Awful news."))
    up, down = circuit_saes
    found = edges.edge_effects(
        model, pair, score, circuit_saes, every_node(up), every_node(down)[-5:]
    )
    assert len(found) == len(every_node(up)) * 5
    assert all(math.isfinite(value) for value in found.values())
    assert any(value != 0 for value in found.values())


def test_edges_join_consecutive_sae_layers_only(tiny_chat, score, circuit_saes, pair):
    first, second = SAE_LAYERS
    ask = lambda up, down: edges.edge_effects(tiny_chat, pair, score, circuit_saes, up, down)  # noqa: E731
    assert ask([], [Node(second, 0)]) == {}
    with pytest.raises(SaefeaturesError, match="not the SAE layer after"):
        ask([Node(second, 0)], [Node(first, 0)])
    with pytest.raises(SaefeaturesError, match="at one layer"):
        ask([Node(first, 0), Node(second, 1)], [Node(second, 0)])
    with pytest.raises(SaefeaturesError, match="no SAE here"):
        ask([Node(first, 0)], [Node(3, 0)])
