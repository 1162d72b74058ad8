"""The valence-axes script: a planted third axis is found and read out; a null is not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).parents[2] / "scripts" / "valence_axes.py"
SPEC = importlib.util.spec_from_file_location("valence_axes", SCRIPT)
valence_axes = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(valence_axes)


def _planted(n: int = 120, d: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Vectors whose two largest axes are nuisances and whose third is the rating."""
    rng = np.random.default_rng(seed)
    rating = rng.uniform(-1, 1, n)
    axes = np.linalg.qr(rng.normal(size=(d, d)))[0]
    vectors = (
        6 * rng.normal(size=(n, 1)) * axes[:, 0]
        + 4 * rng.normal(size=(n, 1)) * axes[:, 1]
        + 1.5 * rating[:, None] * axes[:, 2]
        + 0.1 * rng.normal(size=(n, d))
    )
    return vectors, rating


def test_scores_are_the_centred_vectors_on_their_principal_axes():
    vectors, _ = _planted()
    scores, share = valence_axes.principal_scores(vectors)
    centred = vectors - vectors.mean(0)
    assert np.allclose(scores @ scores.T, centred @ centred.T, atol=1e-6)
    assert np.isclose(share.sum(), 1) and np.all(np.diff(share) <= 1e-12)


def test_a_planted_third_axis_is_found_and_read_out_of_sample():
    vectors, rating = _planted()
    scores, _ = valence_axes.principal_scores(vectors)
    r = valence_axes.axis_r(scores, rating, 5)
    assert r.argmax() == 2 and r[2] > 0.9 and r[0] < 0.3
    readout = valence_axes.readout_r(scores, rating)
    assert readout > 0.9 and valence_axes.readout_p(scores, rating, readout) < 0.01


def test_a_rating_unrelated_to_the_vectors_does_not_read_out():
    vectors, _ = _planted()
    unrelated = np.random.default_rng(7).uniform(-1, 1, len(vectors))
    scores, _ = valence_axes.principal_scores(vectors)
    readout = valence_axes.readout_r(scores, unrelated)
    assert valence_axes.readout_p(scores, unrelated, readout) > 0.05
