"""Alignment math on planted answers and against direct computations (scikit-learn, by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from saefeatures.alignment import measures as am
from saefeatures.errors import SaefeaturesError

D = 64
N_RANDOM = 2000


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def random_decoder(seed: int, n: int = N_RANDOM, d: int = D) -> np.ndarray:
    """Random directions with unequal norms, as an untied SAE decoder may have."""
    rng = np.random.default_rng(seed)
    return unit(rng.standard_normal((n, d))) * rng.uniform(0.5, 3.0, size=(n, 1))


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray, int]:
    """(direction, decoder, index): the decoder's row `index` is 3.7 x the direction."""
    rng = np.random.default_rng(1)
    direction = rng.standard_normal(D)
    decoder = random_decoder(2)
    index = 1234
    decoder = np.insert(decoder, index, 3.7 * direction, axis=0)
    return direction, decoder, index


def test_decoder_cosines_match_a_direct_computation(planted) -> None:
    direction, decoder, _ = planted
    expected = unit(decoder) @ unit(direction)
    np.testing.assert_allclose(am.decoder_cosines(direction, decoder), expected, atol=1e-12)


def test_planted_direction_ranks_first_with_cosine_one(planted) -> None:
    direction, decoder, index = planted
    cosines = am.decoder_cosines(0.01 * direction, decoder)
    indices, values = am.top_by_abs(cosines, 5)
    assert indices[0] == index
    assert values[0] == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.abs(values[1:]) < 0.7)


def test_top_by_abs_keeps_a_negative_match_and_its_sign() -> None:
    rng = np.random.default_rng(3)
    direction = rng.standard_normal(D)
    decoder = random_decoder(4)
    decoder[77] = -2.5 * direction
    indices, values = am.top_by_abs(am.decoder_cosines(direction, decoder), 3)
    assert indices[0] == 77
    assert values[0] == pytest.approx(-1.0, abs=1e-9)


def test_top_by_abs_breaks_ties_by_index() -> None:
    indices, values = am.top_by_abs(np.array([0.5, -0.5, 0.2, 0.5, -0.9]), 4)
    np.testing.assert_array_equal(indices, [4, 0, 1, 3])
    np.testing.assert_array_equal(values, [-0.9, 0.5, -0.5, 0.5])


def test_empirical_null_is_seeded_and_grows_with_the_quantile() -> None:
    decoder = random_decoder(6).astype(np.float32)
    median = am.empirical_null_max_cos(decoder, n_samples=300, quantile=0.5, seed=7)
    assert median == am.empirical_null_max_cos(decoder, n_samples=300, quantile=0.5, seed=7)
    assert median < am.empirical_null_max_cos(decoder, n_samples=300, quantile=0.99, seed=7)


def test_planted_best_cosine_exceeds_the_empirical_null(planted) -> None:
    direction, decoder, _ = planted
    best = np.abs(am.decoder_cosines(direction, decoder)).max()
    assert best > am.empirical_null_max_cos(decoder, n_samples=500) + 0.3


def test_omp_ranks_a_planted_single_direction_first(planted) -> None:
    direction, decoder, index = planted
    result = am.omp(direction, decoder, k_max=4)
    assert result.features[0] == index
    assert result.r2[0] == pytest.approx(1.0, abs=1e-9)


def test_omp_never_reuses_a_feature_after_an_exact_fit() -> None:
    # After step 1 the residual is exactly zero, so every correlation ties at 0.
    decoder = np.eye(4, 6).T
    result = am.omp(decoder[0], decoder, k_max=4)
    np.testing.assert_array_equal(result.features, [0, 1, 2, 3])
    np.testing.assert_allclose(result.r2, np.ones(4), atol=1e-12)
    np.testing.assert_allclose(result.coefficients, [1, 0, 0, 0], atol=1e-12)


@pytest.fixture(scope="module")
def sparse_combination() -> tuple[np.ndarray, np.ndarray, list[int], list[float]]:
    decoder = random_decoder(8)
    features, weights = [17, 503, 1999], [2.0, -1.5, 0.7]
    noise = np.random.default_rng(9).normal(scale=1e-3, size=D)
    vector = np.asarray(weights) @ unit(decoder[features]) + noise
    return vector, decoder, features, weights


def test_omp_recovers_a_planted_sparse_combination(sparse_combination) -> None:
    vector, decoder, features, weights = sparse_combination
    result = am.omp(vector, decoder, k_max=32)
    assert set(result.features[:3].tolist()) == set(features)
    assert len(set(result.features.tolist())) == 32
    assert result.r2[2] > 0.999
    assert np.all(np.diff(result.r2) >= -1e-12)
    three = am.omp(vector, decoder, k_max=3)
    fitted = dict(zip(three.features.tolist(), three.coefficients, strict=True))
    np.testing.assert_allclose([fitted[f] for f in features], weights, atol=1e-2)


def test_omp_r2_and_coefficients_agree_with_a_direct_reconstruction(sparse_combination) -> None:
    vector, decoder, _, _ = sparse_combination
    result = am.omp(vector, decoder, k_max=10)
    residual = vector - result.coefficients @ unit(decoder[result.features])
    assert result.r2[-1] == pytest.approx(1 - residual @ residual / (vector @ vector), abs=1e-10)


def test_width_mismatch_and_zero_vector_raise() -> None:
    decoder = random_decoder(10, n=50)
    with pytest.raises(SaefeaturesError, match="width"):
        am.decoder_cosines(np.ones(D + 1), decoder)
    with pytest.raises(SaefeaturesError, match="all zeros"):
        am.omp(np.zeros(D), decoder)
    with pytest.raises(SaefeaturesError, match="k_max"):
        am.omp(np.ones(D), decoder, k_max=D + 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=200).astype(float)
    labels = rng.random(200) < 0.3 + 0.1 * scores / 4
    assert am.auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_needs_both_classes() -> None:
    with pytest.raises(SaefeaturesError, match="one class"):
        am.auroc(np.arange(5.0), np.ones(5, dtype=bool))


def test_auroc_from_ranks_equals_per_column_auroc() -> None:
    rng = np.random.default_rng(11)
    labels = rng.random(120) < 0.25
    # ReLU-like activations: many exact zeros (ties), some shifted by the labels.
    activations = np.maximum(
        rng.normal(size=(120, 40)) + 0.8 * labels[:, None] * (rng.random(40) < 0.5), 0
    )
    activations[:, 3] = 0.0
    per_feature = am.auroc_from_ranks(am.column_ranks(activations), labels)
    expected = [roc_auc_score(labels, column) for column in activations.T]
    np.testing.assert_allclose(per_feature, expected, atol=1e-12)
    np.testing.assert_allclose(per_feature, [am.auroc(c, labels) for c in activations.T])
    assert per_feature[3] == 0.5


def test_mean_difference_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(12)
    activations = rng.normal(size=(50, 7))
    labels = np.arange(50) % 3 == 0
    expected = [
        np.mean([activations[i, j] for i in range(50) if labels[i]])
        - np.mean([activations[i, j] for i in range(50) if not labels[i]])
        for j in range(7)
    ]
    np.testing.assert_allclose(am.mean_difference(activations, labels), expected, atol=1e-12)


def test_top_overlap_on_hand_made_lists() -> None:
    assert am.top_overlap(list(range(10)), np.arange(10)[::-1], k=10) == 1.0
    assert am.top_overlap(range(10), range(100, 110), k=10) == 0.0
    assert am.top_overlap([1, 2, 3, 9], [2, 1, 4], k=3) == pytest.approx(2 / 3)


def test_top_overlap_rejects_short_or_repeated_lists() -> None:
    with pytest.raises(SaefeaturesError, match="fewer than k"):
        am.top_overlap([1, 2], [1, 2, 3], k=3)
    with pytest.raises(SaefeaturesError, match="repeats"):
        am.top_overlap([1, 1, 2], [1, 2, 3], k=3)


def test_logistic_probe_separates_linearly_separable_data() -> None:
    rng = np.random.default_rng(13)
    standard = rng.normal(size=(200, 20))
    labels = standard @ rng.normal(size=20) > 0
    X = standard * np.r_[100.0, np.ones(19)]  # one huge dimension, as residuals have
    assert am.logistic_probe_auroc(X, labels) > 0.9


def test_logistic_probe_is_at_chance_on_random_labels() -> None:
    rng = np.random.default_rng(14)
    X = rng.normal(size=(200, 20))
    assert 0.3 < am.logistic_probe_auroc(X, rng.random(200) < 0.5) < 0.7


def test_logistic_probe_uses_fewer_folds_for_a_small_class() -> None:
    rng = np.random.default_rng(15)
    labels = np.zeros(60, dtype=bool)
    labels[:3] = True
    X = rng.normal(size=(60, 5)) + 4.0 * labels[:, None]
    assert am.logistic_probe_auroc(X, labels, folds=5) > 0.9
    with pytest.raises(SaefeaturesError, match="at least 2"):
        am.logistic_probe_auroc(X, np.arange(60) == 0)


def _null(means, labels, decoder, n, seed=0, removed=None) -> float:
    contrasts = am.shuffled_contrasts(means, labels, n, seed, removed)
    return am.shuffled_label_null_max_cos(contrasts, decoder)


def test_shuffled_label_null_sits_below_a_real_planted_contrast() -> None:
    """Passages of emotion 0 are shifted along a direction the decoder contains."""
    rng = np.random.default_rng(3)
    decoder = random_decoder(4)
    labels = np.repeat(np.arange(5), 20)
    means = rng.standard_normal((100, D))
    means[labels == 0] += 3 * unit(decoder[:1])[0]
    null = _null(means, labels, decoder, 50, seed=1)
    assert null == _null(means, labels, decoder, 50, seed=1)
    real = means[labels == 0].mean(0) - np.mean([means[labels == e].mean(0) for e in range(5)], 0)
    assert np.abs(am.decoder_cosines(real, decoder)).max() > 0.8 > null > 0


def test_shuffled_null_in_a_subspace_equals_the_null_of_projected_data() -> None:
    rng = np.random.default_rng(4)
    decoder, labels = random_decoder(6), np.repeat(np.arange(4), 10)
    means = rng.standard_normal((40, D))
    removed = np.eye(D)[:3]
    zeroed = means.copy()
    zeroed[:, :3] = 0
    with_basis = _null(means, labels, decoder, 20, removed=removed)
    assert with_basis == pytest.approx(_null(zeroed, labels, decoder, 20))


def _subspace_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Passage means in an 8-dimensional subspace that the decoder's rows lean into, with
    emotion labels that mean nothing: the situation of a real corpus under the null."""
    basis = unit(rng.standard_normal((8, D)))
    means = rng.standard_normal((90, 8)) @ basis + 0.05 * rng.standard_normal((90, D))
    decoder = unit(rng.standard_normal((400, 8)) @ basis + 0.3 * rng.standard_normal((400, D)))
    labels = np.repeat(np.arange(6), 15)
    return means, rng.permutation(labels), decoder


def _real_contrasts(means: np.ndarray, labels: np.ndarray) -> np.ndarray:
    per = np.stack([means[labels == e].mean(0) for e in np.unique(labels)])
    return per - per.mean(0)


def test_label_free_passages_pass_the_shuffled_null_at_its_nominal_rate() -> None:
    """The claims' null: contrasts of meaningless labels beat the shuffled p99 about 1% of
    the time, while random unit vectors (the old null) are beaten every time."""
    shuffled, random = [], []
    for seed in range(25):
        rng = np.random.default_rng(seed)
        means, labels, decoder = _subspace_data(rng)
        best = np.abs(
            np.stack([am.decoder_cosines(c, decoder) for c in _real_contrasts(means, labels)])
        ).max(axis=1)
        shuffled += list(best > _null(means, labels, decoder, 100, seed=seed))
        random += list(best > am.empirical_null_max_cos(decoder, 500, 0.99, seed))
    assert np.mean(shuffled) <= 0.05
    assert np.mean(random) > 0.3  # far above its nominal 1%: any subspace direction beats it


def test_omp_on_label_free_contrasts_stays_within_the_shuffled_curves() -> None:
    exceed = []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        means, labels, decoder = _subspace_data(rng)
        null = am.shuffled_label_null_omp(
            am.shuffled_contrasts(means, labels, 20, seed), decoder, 6, 60, seed
        )
        p99 = np.quantile(null[:, -1], 0.99)
        exceed += [am.omp(c, decoder, 6).r2[-1] > p99 for c in _real_contrasts(means, labels)]
    assert np.mean(exceed) <= 0.05


def test_a_held_out_feature_auroc_finds_a_planted_feature_and_not_noise() -> None:
    rng = np.random.default_rng(7)
    labels = np.repeat([True, False], [40, 120])
    chooser = np.zeros(160, dtype=bool)
    chooser[::2] = True
    activations = np.maximum(rng.normal(size=(160, 3000)), 0)
    activations[:, 123] += 2.0 * labels
    found = am.heldout_feature_auroc(activations, labels, chooser, seed=1)
    assert found["feature"] == 123 and found["auroc"] > 0.9 and found["p_value"] < 0.01
    rejected, noise_max = [], []
    for seed in range(40):
        noise = np.maximum(np.random.default_rng(seed).normal(size=(160, 3000)), 0)
        result = am.heldout_feature_auroc(noise, labels, chooser, permutations=500, seed=seed)
        rejected.append(result["p_value"] < 0.05)
        noise_max.append(result["noise_max"])
    assert np.mean(rejected) <= 0.125  # 5% nominal, 40 draws
    assert min(noise_max) > 0.65  # what the in-sample maximum reaches on noise alone
