"""The direction view: projection patches against whole runs patched by hand, the emotion
subspace against a direct SVD, and the valence axis read from a real store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saefeatures.circuits import directions
from saefeatures.errors import SaefeaturesError
from saefeatures.patching import sweeps
from saefeatures.store.database import Store
from saefeatures.vectors.axes import valence_axis
from tests.circuits.conftest import prompt_ids
from tests.circuits.test_curves import layer_output, score_by_hand, sides, whole
from tests.tiny import CLEAN

LAYER = 1
HOOK = f"blocks.{LAYER}.hook_resid_post"


def _differences(model, pair: sweeps.PreparedPair) -> torch.Tensor:
    """x_clean - x_corrupted [patched positions, d_model] at the layer, from whole runs."""
    (clean, origins), (corrupted, targets) = sides(pair)
    x_clean = layer_output(model, whole(pair, clean), LAYER)[origins]
    x_corrupted = layer_output(model, whole(pair, corrupted), LAYER)[targets]
    return x_clean - x_corrupted


def _gap(model, score, pair: sweeps.PreparedPair) -> float:
    """Clean minus corrupted score of whole, unpatched runs."""
    (clean, _), (corrupted, _) = sides(pair)
    return score_by_hand(model, score, whole(pair, clean), {}) - score_by_hand(
        model, score, whole(pair, corrupted), {}
    )


def _effects(model, pair, score, bases: dict[str, torch.Tensor]) -> dict[str, float]:
    found = directions.projection_effects(model, pair, score, HOOK, list(bases.values()))
    return dict(zip(bases, found, strict=True))


def test_projections_of_the_whole_residual_none_of_it_and_its_span(tiny_chat, score, pair):
    delta = _differences(tiny_chat, pair)  # every position of the aligned pair
    rank = len(delta)
    assert rank < tiny_chat.d_model
    q, _ = torch.linalg.qr(delta.T, mode="complete")  # first `rank` columns span delta
    bases = {
        "layer": torch.eye(tiny_chat.d_model),
        "orthogonal": q[:, rank : rank + 5],
        "span": q[:, :rank],
    }
    effects = _effects(tiny_chat, pair, score, bases)
    gap = _gap(tiny_chat, score, pair)
    assert abs(gap) > 1e-4
    assert effects["layer"] == pytest.approx(gap, rel=1e-3)
    assert effects["span"] == pytest.approx(gap, rel=1e-3)
    assert abs(effects["orthogonal"]) < 1e-3 * abs(gap)


def test_a_planted_direction_carries_the_last_position_of_unequal_prompts(tiny_chat, score):
    pair = sweeps.prepare(
        tiny_chat, prompt_ids(tiny_chat, CLEAN), prompt_ids(tiny_chat, "Bad news.")
    )
    (delta,) = _differences(tiny_chat, pair)  # only the last position is patched
    planted = delta / delta.norm()
    other = torch.randn(tiny_chat.d_model, generator=torch.Generator().manual_seed(0))
    other = other - (other @ planted) * planted
    bases = {"planted": planted[:, None], "other": (other / other.norm())[:, None]}
    effects = _effects(tiny_chat, pair, score, bases)
    # The whole effect here: the clean residual at the last position only, by hand.
    (clean, _), (corrupted, (last,)) = sides(pair)
    x_clean = layer_output(tiny_chat, whole(pair, clean), LAYER)[-1]

    def put(hidden: torch.Tensor) -> torch.Tensor:
        hidden[0, last] = x_clean
        return hidden

    unpatched = score_by_hand(tiny_chat, score, whole(pair, corrupted), {})
    layer = score_by_hand(tiny_chat, score, whole(pair, corrupted), {LAYER: put}) - unpatched
    assert abs(layer) > 1e-4
    assert effects["planted"] == pytest.approx(layer, rel=1e-3)
    assert abs(effects["other"]) < 1e-3 * abs(layer)


def test_bases_must_be_orthonormal_columns_of_the_model_width(tiny_chat, score, pair):
    for basis, message in ((2 * torch.eye(64), "not orthonormal"), (torch.eye(8), "shape")):
        with pytest.raises(SaefeaturesError, match=message):
            directions.projection_effects(tiny_chat, pair, score, HOOK, [basis])


def test_bases_past_one_forward_give_what_each_gives_alone(tiny_chat, score, pair):
    """More bases than one forward holds run in several batches, each read against its own
    unpatched copy: every basis's effect is the one it has when patched alone."""
    drawn = directions.random_bases(tiny_chat.d_model, 3, 80, seed=1)
    bases = [torch.eye(tiny_chat.d_model), *drawn]
    per_forward = directions.ROWS_PER_FORWARD // len(score.continuations) - 1
    assert len(bases) > per_forward  # at least two forwards
    together = directions.projection_effects(tiny_chat, pair, score, HOOK, bases)
    alone = [directions.projection_effects(tiny_chat, pair, score, HOOK, [b])[0] for b in bases]
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-6)
    assert together[0] == pytest.approx(_gap(tiny_chat, score, pair), rel=1e-3)


def test_random_bases_are_orthonormal_reproducible_and_uniform():
    d_model, rank = 64, 4
    drawn = directions.random_bases(d_model, rank, 400, seed=3)
    assert len(drawn) == 400
    for basis in drawn[:20]:
        torch.testing.assert_close(basis.T @ basis, torch.eye(rank), atol=1e-5, rtol=0)
    again = directions.random_bases(d_model, rank, 400, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(drawn, again, strict=True))
    assert not torch.equal(drawn[0], directions.random_bases(d_model, rank, 1, seed=4)[0])
    # A uniformly random rank-r subspace holds r/d of a fixed unit vector's squared norm
    # on average, whichever vector: planted axes are no exception.
    for axis in (0, 17):
        held = np.array([float(basis[axis].square().sum()) for basis in drawn])
        assert held.mean() == pytest.approx(rank / d_model, rel=0.15)


def _emotions(rng: np.random.Generator) -> np.ndarray:
    """12 emotion vectors in 64 dimensions: an offset, three directions of falling
    variance, and a little noise."""
    loadings = rng.normal(size=(12, 3)) * np.array([6.0, 3.0, 1.0])
    return 5.0 + loadings @ rng.normal(size=(3, 64)) + 0.05 * rng.normal(size=(12, 64))


@pytest.mark.parametrize("share", [0.5, 0.9, 0.99, 1.0])
def test_the_emotion_subspace_is_the_fewest_top_components_holding_the_share(share):
    vectors = _emotions(np.random.default_rng(0))
    basis = directions.emotion_subspace(vectors, share)
    rank = basis.shape[1]
    np.testing.assert_allclose(basis.T @ basis, np.eye(rank), atol=1e-10)
    centred = vectors - vectors.mean(axis=0)
    total = np.sum(centred**2)
    held = [np.sum((centred @ basis[:, :k]) ** 2) / total for k in range(rank + 1)]
    assert held[rank] >= share * (1 - 1e-9)
    assert held[rank - 1] < share  # one component fewer is not enough
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    top = vt[:rank].T
    np.testing.assert_allclose(basis @ basis.T, top @ top.T, atol=1e-8)


def test_the_emotion_subspace_refuses_a_share_outside_zero_to_one():
    with pytest.raises(SaefeaturesError, match="share must be in"):
        directions.emotion_subspace(_emotions(np.random.default_rng(0)), 1.5)


RATED = {"happy": 1.0, "joyful": 0.98, "proud": 0.812, "calm": 0.75}
RATED |= {"sad": -0.55, "lonely": -0.5, "angry": -0.756, "afraid": -0.98}


def test_the_valence_axis_is_the_rated_emotions_pc1_signed_by_valence(tmp_path):
    rng = np.random.default_rng(1)
    axis = rng.normal(size=16)
    axis /= np.linalg.norm(axis)
    at_layer = {e: 3.0 * v * axis + 0.1 * rng.normal(size=16) for e, v in RATED.items()}
    # An unrated emotion far off the axis: counted, it would turn PC1 towards itself.
    at_layer["unratedfeeling"] = 40.0 * rng.normal(size=16)
    store = Store(tmp_path / "w.duckdb")
    rows = [
        (layer, emotion, vector if layer == 4 else rng.normal(size=16))
        for layer in (2, 4)
        for emotion, vector in at_layer.items()
    ]
    with store.run("seed", {}) as run_id:
        store.insert(
            "emotion_vectors",
            {
                "run_id": [run_id] * len(rows),
                "model": ["m"] * len(rows),
                "corpus": ["c"] * len(rows),
                "layer": [layer for layer, _, _ in rows],
                "hook": [f"blocks.{layer}.hook_resid_post" for layer, _, _ in rows],
                "emotion": [emotion for _, emotion, _ in rows],
                "method": ["denoised"] * len(rows),
                "n_passages": [10] * len(rows),
                "vector": [vector.tolist() for _, _, vector in rows],
            },
        )
    found = valence_axis(store, "m", "c", "denoised", 4)
    assert np.linalg.norm(found) == pytest.approx(1.0)
    assert found @ axis > 0.99
    rated = np.array([at_layer[e] for e in RATED], dtype=np.float32)
    _, _, vt = np.linalg.svd(rated - rated.mean(axis=0), full_matrices=False)
    np.testing.assert_allclose(abs(found @ vt[0]), 1.0, atol=1e-5)
    with pytest.raises(SaefeaturesError, match="no denoised vectors for layers 3"):
        valence_axis(store, "m", "c", "denoised", 3)
