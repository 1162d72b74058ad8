"""Each statistic against a direct computation (scipy, scikit-learn or by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sp
from sklearn.decomposition import PCA as SkPCA

from saefeatures import stats
from saefeatures.errors import SaefeaturesError


def correlated(n: int, r: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y with population Pearson correlation r."""
    rng = np.random.default_rng(seed)
    x, noise = rng.standard_normal(n), rng.standard_normal(n)
    return x, r * x + np.sqrt(1 - r**2) * noise


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_matches_scipy(seed: int) -> None:
    x, y = correlated(30, 0.4, seed)
    assert stats.pearson(x, y) == pytest.approx(sp.pearsonr(x, y).statistic, abs=1e-12)


def test_rank_averages_ties_like_scipy() -> None:
    values = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0, 7.0])
    np.testing.assert_allclose(stats.rank(values), sp.rankdata(values))


def test_spearman_with_ties_matches_scipy() -> None:
    x = np.array([1, 2, 2, 3, 5, 5, 5, 8, 9, 9], dtype=float)
    y = np.array([2, 1, 4, 4, 3, 7, 7, 6, 9, 8], dtype=float)
    assert stats.spearman(x, y) == pytest.approx(sp.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_is_one_for_a_monotone_nonlinear_relation() -> None:
    x = np.linspace(0.1, 3, 12)
    assert stats.spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert stats.pearson(x, np.exp(x)) < 0.99


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], "differ in length"),
        ([1.0, 2.0], [2.0, 1.0], "at least 3"),
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], "zero variance"),
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "NaN"),
    ],
)
def test_bad_pairs_raise(x: list[float], y: list[float], message: str) -> None:
    for function in (stats.pearson, stats.spearman):
        with pytest.raises(SaefeaturesError, match=message):
            function(np.array(x), np.array(y))


def test_row_statistics_match_scipy_row_by_row() -> None:
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((6, 15)), rng.standard_normal((6, 15))
    y[0] = np.round(y[0])  # ties, for the ranks
    expected = [sp.pearsonr(a, b).statistic for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(stats.pearson_rows(x, y), expected, atol=1e-12)
    with pytest.raises(SaefeaturesError, match="zero variance"):
        stats.pearson_rows(x, np.vstack([y[:-1], np.ones(15)]))


def test_resampling_equals_one_scipy_call_per_resample() -> None:
    """The bootstrap against the loop it replaces, on the same seeded draws."""
    x, y = correlated(30, 0.4, seed=12)
    indices = np.random.default_rng(3).integers(0, 30, size=(200, 30))
    values = [sp.pearsonr(x[i], y[i]).statistic for i in indices]
    expected = np.quantile(values, [0.025, 0.975])
    got = stats.bootstrap_ci(x, y, stats.pearson_rows, n_resamples=200, seed=3)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_bad_lengths_raise_in_resampling() -> None:
    with pytest.raises(SaefeaturesError, match="differ in length"):
        stats.bootstrap_ci(np.arange(5.0), np.arange(4.0), stats.pearson_rows)
    with pytest.raises(SaefeaturesError, match="at least 3"):
        stats.bootstrap_ci(np.arange(2.0), np.arange(2.0), stats.pearson_rows)


def test_bootstrap_ci_contains_true_r_and_agrees_with_scipy() -> None:
    x, y = correlated(150, 0.6, seed=3)
    low, high = stats.bootstrap_ci(x, y, stats.pearson_rows, n_resamples=4000, seed=0)
    assert low < 0.6 < high
    assert low < stats.pearson(x, y) < high
    reference = sp.bootstrap(
        (x, y),
        lambda a, b: sp.pearsonr(a, b).statistic,
        paired=True,
        vectorized=False,
        method="percentile",
        n_resamples=4000,
        rng=np.random.default_rng(1),
    ).confidence_interval
    assert low == pytest.approx(reference.low, abs=0.03)
    assert high == pytest.approx(reference.high, abs=0.03)


def test_bootstrap_ci_is_reproducible_per_seed() -> None:
    x, y = correlated(40, 0.5, seed=4)
    first = stats.bootstrap_ci(x, y, stats.pearson_rows, n_resamples=300, seed=7)
    assert stats.bootstrap_ci(x, y, stats.pearson_rows, n_resamples=300, seed=7) == first
    assert stats.bootstrap_ci(x, y, stats.pearson_rows, n_resamples=300, seed=8) != first


def test_bootstrap_ci_narrows_with_level() -> None:
    x, y = correlated(60, 0.5, seed=5)
    wide = stats.bootstrap_ci(x, y, stats.pearson_rows, level=0.99, n_resamples=500)
    narrow = stats.bootstrap_ci(x, y, stats.pearson_rows, level=0.5, n_resamples=500)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_bootstrap_ci_skips_degenerate_resamples() -> None:
    # One x differs from the rest, so about a third of the resamples have constant x.
    x = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    y = np.array([0.1, 0.4, 0.2, 0.3, 1.0])
    low, high = stats.bootstrap_ci(x, y, stats.pearson_rows, n_resamples=500)
    assert np.isfinite(low) and np.isfinite(high)
    assert -1.0 <= low <= high <= 1.0


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.04, 0.5, 0.001, 0.9, 0.2])
    np.testing.assert_allclose(
        stats.benjamini_hochberg(p), sp.false_discovery_control(p, method="bh")
    )


def test_benjamini_hochberg_is_monotone_and_capped() -> None:
    p = np.random.default_rng(0).uniform(size=50) ** 2
    q = stats.benjamini_hochberg(p)
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= 0)
    assert np.all(q >= p) and np.all(q <= 1.0)
    np.testing.assert_allclose(q, sp.false_discovery_control(p, method="bh"))


def test_benjamini_hochberg_rejects_out_of_range() -> None:
    with pytest.raises(SaefeaturesError, match=r"\[0, 1\]"):
        stats.benjamini_hochberg(np.array([0.2, 1.5]))


def test_pca_matches_sklearn_up_to_sign() -> None:
    matrix = np.random.default_rng(0).standard_normal((12, 6)) * np.arange(1, 7)
    ours = stats.pca(matrix, 3)
    reference = SkPCA(n_components=3, svd_solver="full").fit(matrix)
    np.testing.assert_allclose(
        ours.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-10
    )
    np.testing.assert_allclose(np.abs(ours.scores), np.abs(reference.transform(matrix)), atol=1e-10)
    np.testing.assert_allclose(np.abs(ours.components), np.abs(reference.components_), atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(ours.components, axis=1), 1.0)
    assert ours.scores.shape == (12, 3) and ours.components.shape == (3, 6)


def test_pca_rejects_too_many_components() -> None:
    with pytest.raises(SaefeaturesError, match="n_components"):
        stats.pca(np.ones((4, 3)), 5)


def test_orient_flips_a_negatively_correlated_column() -> None:
    reference = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    column = np.array([1.5, 1.1, 0.2, -0.9, -2.0])
    flipped, sign = stats.orient(column, reference)
    assert sign == -1
    np.testing.assert_allclose(flipped, -column)
    assert stats.pearson(flipped, reference) > 0


def test_orient_keeps_a_positively_correlated_column() -> None:
    reference = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    column = np.array([-1.5, -1.1, 0.2, 0.9, 2.0])
    kept, sign = stats.orient(column, reference)
    assert sign == 1
    np.testing.assert_allclose(kept, column)


def test_cosine_matrix_by_hand() -> None:
    matrix = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [-2.0, 0.0]])
    half = 1 / np.sqrt(2)
    expected = np.array(
        [
            [1.0, half, 0.0, -1.0],
            [half, 1.0, 0.0, -half],
            [0.0, 0.0, 0.0, 0.0],
            [-1.0, -half, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(stats.cosine_matrix(matrix), expected, atol=1e-12)


def test_binomial_upper_p_equals_scipy():
    from scipy.stats import binom

    for k, n, rate in ((0, 10, 0.05), (3, 30, 0.01), (12, 30, 0.25), (30, 30, 0.5)):
        assert stats.binomial_upper_p(k, n, rate) == pytest.approx(binom.sf(k - 1, n, rate))


def test_diagonal_p_finds_a_planted_diagonal_and_not_noise():
    rng = np.random.default_rng(0)
    planted = rng.normal(size=(8, 8)) + 3 * np.eye(8)
    gap, p = stats.diagonal_p(planted, 500, seed=1)
    direct = np.trace(planted) / 8 - (planted.sum() - np.trace(planted)) / 56
    assert gap == pytest.approx(direct) and p < 0.01
    rejected = [stats.diagonal_p(rng.normal(size=(8, 8)), 200, seed=s)[1] < 0.05 for s in range(40)]
    assert np.mean(rejected) <= 0.125
