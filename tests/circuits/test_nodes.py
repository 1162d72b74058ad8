"""Node effects against a computation made by hand, against exact patches, and on every
kind of model the suite runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saefeatures import models
from saefeatures.circuits import nodes
from saefeatures.circuits.graph import CircuitSae, Node
from saefeatures.errors import SaefeaturesError
from saefeatures.patching import reply_scores, sweeps
from tests.circuits.conftest import prompt_ids
from tests.tiny import CLEAN, CORRUPTED

LARGEST = 15  # nodes with the largest exact effects that the estimates are checked on
LEAST_R = 0.95  # their correlation with the estimates (measured: above 0.99)


def every_node(site: CircuitSae) -> list[Node]:
    return [*(Node(site.layer, f) for f in range(site.sae.W_dec.shape[0])), Node(site.layer, None)]


@torch.no_grad()
def clean_and_corrupted(model, pair, score) -> tuple[float, float]:
    prefix = pair.prefix(model)
    run = lambda tokens: float(sweeps.scored_forward(model, prefix, tokens, score, 1)[0])  # noqa: E731
    return run(pair.clean), run(pair.corrupted)


def hand_run(model, pair, tokens, score, layers) -> tuple[dict, dict]:
    """Each layer's output at the suffix and the score's gradient there, from plain forward
    hooks on the Hugging Face layers that add a zero leaf to the output."""
    n = len(tokens)
    leaves = {layer: torch.zeros(n, model.d_model, requires_grad=True) for layer in layers}
    outputs = {}

    def tap(layer):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            outputs[layer] = hidden[0, :n].detach().clone()
            hidden = hidden.clone()
            hidden[:, :n] = hidden[:, :n] + leaves[layer]
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    blocks = model.hf_model.model.layers
    handles = [blocks[layer].register_forward_hook(tap(layer)) for layer in layers]
    try:
        with torch.enable_grad():
            value = sweeps.scored_forward(model, pair.prefix(model), tokens, score, 1)
            grads = torch.autograd.grad(value.sum(), [leaves[layer] for layer in layers])
    finally:
        for handle in handles:
            handle.remove()
    return outputs, dict(zip(layers, grads, strict=True))


def test_attribution_at_both_layers_matches_a_hand_computation(
    tiny_chat, score, circuit_saes, pair
):
    effects = nodes.node_effects(tiny_chat, pair, score, circuit_saes, "attribution")
    layers = [site.layer for site in circuit_saes]
    clean, _ = hand_run(tiny_chat, pair, pair.clean, score, layers)
    corrupted, grads = hand_run(tiny_chat, pair, pair.corrupted, score, layers)
    assert effects.positions == list(range(-len(pair.corrupted), 0))
    for site in circuit_saes:
        sae, layer = site.sae, site.layer
        with torch.no_grad():
            f_clean, f_corrupted = sae.encode(clean[layer]), sae.encode(corrupted[layer])
            e_clean = clean[layer] - sae.decode(f_clean)
            e_corrupted = corrupted[layer] - sae.decode(f_corrupted)
            # The gradient at the residual (through every later layer and SAE) times each
            # feature's decoded difference, and times the error's difference.
            features = torch.einsum("pd,pf,fd->pf", grads[layer], f_clean - f_corrupted, sae.W_dec)
            error = (grads[layer] * (e_clean - e_corrupted)).sum(-1)
        assert features.abs().max() > 1e-3 and error.abs().max() > 1e-3
        torch.testing.assert_close(effects.layers[layer].features, features, atol=1e-5, rtol=1e-3)
        torch.testing.assert_close(effects.layers[layer].error, error, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("score_name", reply_scores.SCORES)
def test_integrated_gradients_add_up_to_patching_the_whole_layer(
    tiny_chat, circuit_saes, pair, score_name
):
    score = reply_scores.make(tiny_chat, score_name)
    effects = nodes.node_effects(tiny_chat, pair, score, circuit_saes, "integrated_gradients", 32)
    whole_layers = [every_node(site) for site in circuit_saes]
    whole = nodes.exact_effects(tiny_chat, pair, score, circuit_saes, whole_layers)
    clean, corrupted = clean_and_corrupted(tiny_chat, pair, score)
    if score.name == "anchors":
        # Every position after the shared prefix patched at the first SAE layer: the clean
        # run (the replies score also reads the reply tokens, which stay corrupted).
        assert whole[0] == pytest.approx(clean - corrupted, abs=1e-6)
    for site, exact in zip(circuit_saes, whole, strict=True):
        layer = effects.layers[site.layer]
        # Single nodes move the score far more than their sum: the sum is no accident.
        assert float(layer.features.abs().max()) > 1e-3
        total = float(layer.features.sum() + layer.error.sum())
        assert total == pytest.approx(exact, rel=0.01, abs=1e-6)


def test_exact_effects_of_a_whole_layer_and_of_no_node(tiny_chat, score, circuit_saes, pair):
    first = every_node(circuit_saes[0])
    sets = [first, set(), first[:-1]]
    effects = nodes.exact_effects(tiny_chat, pair, score, circuit_saes, sets)
    clean, corrupted = clean_and_corrupted(tiny_chat, pair, score)
    assert effects[0] == pytest.approx(clean - corrupted, abs=1e-6)
    assert abs(clean - corrupted) > 1e-4
    assert effects[1] == pytest.approx(0.0, abs=1e-6)
    # Without the error node the layer's features alone move the score elsewhere.
    assert abs(effects[2] - effects[0]) > 1e-3


@pytest.mark.parametrize("method", nodes.METHODS)
def test_estimates_follow_exact_single_node_patches(tiny_chat, score, circuit_saes, pair, method):
    every = [node for site in circuit_saes for node in every_node(site)]
    exact = np.array(
        nodes.exact_effects(tiny_chat, pair, score, circuit_saes, [{n} for n in every])
    )
    summed = nodes.node_effects(tiny_chat, pair, score, circuit_saes, method).summed()
    estimated = np.array([summed.get(node, 0.0) for node in every])
    largest = np.argsort(-np.abs(exact))[:LARGEST]
    r = np.corrcoef(estimated[largest], exact[largest])[0, 1]
    assert r > LEAST_R, (method, r)


def test_both_methods_at_once_equal_each_alone(tiny_chat, score, circuit_saes, pair):
    together = nodes.estimated_effects(tiny_chat, pair, score, circuit_saes, nodes.METHODS)
    for method in nodes.METHODS:
        alone = nodes.node_effects(tiny_chat, pair, score, circuit_saes, method)
        assert together[method].positions == alone.positions
        for layer, effects in alone.layers.items():
            torch.testing.assert_close(together[method].layers[layer].features, effects.features)
            torch.testing.assert_close(together[method].layers[layer].error, effects.error)


def test_an_unequal_pair_has_only_its_last_position(tiny_chat, score, circuit_saes):
    pair = sweeps.prepare(
        tiny_chat, prompt_ids(tiny_chat, CLEAN), prompt_ids(tiny_chat, "Bad news.")
    )
    effects = nodes.node_effects(tiny_chat, pair, score, circuit_saes, "integrated_gradients")
    assert effects.positions == [-1]
    assert all(layer.features.shape[0] == 1 for layer in effects.layers.values())


@pytest.fixture(scope="module")
def tiny_gemma(tiny_gemma_dir) -> models.LoadedModel:
    return models.load(str(tiny_gemma_dir), dtype="float32")


def test_integrated_gradients_add_up_on_gemma(tiny_gemma, circuit_saes):
    model = tiny_gemma
    pair = sweeps.prepare(model, prompt_ids(model, CLEAN), prompt_ids(model, CORRUPTED))
    # The base model's anchors share their first byte (a space): it is scored by replies.
    score = reply_scores.replies_score(model)
    effects = nodes.node_effects(model, pair, score, circuit_saes, "integrated_gradients", 16)
    (whole,) = nodes.exact_effects(model, pair, score, circuit_saes, [every_node(circuit_saes[0])])
    first = effects.layers[circuit_saes[0].layer]
    assert abs(whole) > 1e-4
    assert float(first.features.sum() + first.error.sum()) == pytest.approx(whole, rel=0.01)


@pytest.mark.parametrize("method", nodes.METHODS)
def test_bfloat16_effects_follow_float32_ones(
    tiny_chat, tiny_chat_dir, score, circuit_saes, method
):
    """bfloat16 cannot resolve the tiny model's clean - corrupted gap (a thousandth of a
    logit), but single nodes move the score a hundred times more."""
    found = {}
    for model in (tiny_chat, models.load(str(tiny_chat_dir), dtype="bfloat16")):
        pair = sweeps.prepare(model, prompt_ids(model, CLEAN), prompt_ids(model, CORRUPTED))
        effects = nodes.node_effects(model, pair, score, circuit_saes, method)
        for layer in effects.layers.values():
            assert layer.features.dtype == torch.float32
            assert torch.isfinite(layer.features).all() and torch.isfinite(layer.error).all()
        found[model.dtype] = torch.cat(
            [
                torch.cat([layer.features.flatten(), layer.error])
                for layer in effects.layers.values()
            ]
        )
    r = np.corrcoef(found["float32"].numpy(), found["bfloat16"].numpy())[0, 1]
    assert r > 0.9, r


def test_bad_requests_are_user_errors(tiny_chat, score, circuit_saes, pair):
    with pytest.raises(SaefeaturesError, match="unknown method"):
        nodes.node_effects(tiny_chat, pair, score, circuit_saes, "exact")  # type: ignore[arg-type]
    with pytest.raises(SaefeaturesError, match="at least one step"):
        nodes.node_effects(tiny_chat, pair, score, circuit_saes, "integrated_gradients", 0)
    with pytest.raises(SaefeaturesError, match="no SAE here"):
        nodes.exact_effects(tiny_chat, pair, score, circuit_saes, [{Node(0, 1)}])
    with pytest.raises(SaefeaturesError, match=r"latents 0\.\.47"):
        nodes.exact_effects(tiny_chat, pair, score, circuit_saes, [{Node(1, 48)}])
