"""PC1 against valence: planted signal found, planted nulls held to their nominal rate."""

from __future__ import annotations

import numpy as np
import pytest

from saefeatures import stats
from saefeatures.vectors import valence

N_EMOTIONS, N_LAYERS, WIDTH = 30, 6, 48


def _ratings(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(-1, 1, N_EMOTIONS), rng.uniform(-1, 1, N_EMOTIONS)


def _noise(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(N_EMOTIONS, N_LAYERS, WIDTH))


def test_weighted_components_equal_a_pca_per_resample():
    """The batched power iteration against an SVD of each resample, row by row."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(25, 40)) * np.r_[5.0, 3.0, np.ones(38)]
    drawn = rng.integers(0, 25, size=(4, 25))
    counts = (drawn[..., None] == np.arange(25)).sum(axis=1).astype(float)
    subset = (rng.random((2, 25)) < 0.5).astype(float)
    for weights, rows_of in (
        (counts, lambda b: drawn[b]),
        (subset, lambda b: np.flatnonzero(subset[b])),
    ):
        found = stats.weighted_components(data, weights, 2)
        for b in range(len(weights)):
            rows = rows_of(b)
            direct = stats.pca(data[rows], 2).scores
            for c in range(2):
                r = np.corrcoef(found[b, rows, c], direct[:, c])[0, 1]
                assert abs(r) == pytest.approx(1, abs=1e-4)
    y = rng.normal(size=25)
    weighted = stats.weighted_abs_pearson(found[..., 0], y, subset)
    for b in range(2):
        rows = np.flatnonzero(subset[b])
        assert weighted[b] == pytest.approx(abs(np.corrcoef(found[b, rows, 0], y[rows])[0, 1]))


def test_a_planted_valence_axis_is_found_at_its_layer():
    rng = np.random.default_rng(0)
    v, a = _ratings(rng)
    vectors = _noise(rng)
    vectors[:, 3, 0] += 6 * v  # layer 3 carries valence along one direction
    vectors[:, 3, 1] += 4 * a
    fit = valence.fit(vectors, list(range(N_LAYERS)), v, a, resamples=200, seed=1)
    best = fit.best
    assert best.layer == 3 and best.pearson_r > 0.95 and best.p_value < 0.01
    assert best.ci_low > 0.8 and best.heldout_r > 0.85 and best.same_layer > 0.95
    arousal = next(r for r in fit.layers if r.layer == 3 and r.component == "PC2")
    assert arousal.pearson_r > 0.7 and arousal.q_value < 0.05
    assert np.corrcoef(fit.scores[:, 0], v)[0, 1] > 0.95  # oriented to valence


def test_noise_claims_no_best_layer_beyond_the_nominal_rate():
    """Random vectors at every layer: the best layer's p (a max over layers) is rejected at
    5% in about 5% of seeds, where an unadjusted per-layer p would reject far more."""
    p_best, p_naive, heldout, in_sample = [], [], [], []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        v, a = _ratings(rng)
        fit = valence.fit(_noise(rng), list(range(N_LAYERS)), v, a, resamples=200, seed=seed)
        p_best.append(fit.best.p_value)
        layer_p = [r.p_value for r in fit.layers if r.component == "PC1"]
        p_naive.append(min(layer_p))
        heldout.append(fit.best.heldout_r)
        in_sample.append(fit.best.pearson_r)
    assert np.mean(np.array(p_best) < 0.05) <= 0.1
    assert np.mean(np.array(p_naive) < 0.05) > np.mean(np.array(p_best) < 0.05)
    assert np.mean(heldout) < np.mean(in_sample)  # choosing the layer inflates r in sample only


def test_split_r_is_what_a_sign_alone_reaches():
    rng = np.random.default_rng(5)
    v, a = _ratings(rng)
    vectors = _noise(rng) * 0.01
    vectors[:, :, 0] += np.sign(v)[:, None]  # every layer knows only positive vs negative
    fit = valence.fit(vectors, list(range(N_LAYERS)), v, a, resamples=100, seed=0)
    assert fit.best.split_r == pytest.approx(abs(np.corrcoef(v, np.sign(v))[0, 1]))
    assert fit.best.pearson_r == pytest.approx(fit.best.split_r, abs=0.02)
