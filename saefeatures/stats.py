"""Statistics for the geometry of emotion vectors, in plain numpy.

Written here rather than taken from scipy so that every number in a report comes
from code we can read in one place; the tests check each function against scipy
and scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from saefeatures.errors import SaefeaturesError

# Paired samples in rows, `[n, m]` and `[n, m]`, to one value per row: resampling
# evaluates all its resamples in one call instead of one Python call each.
RowStatistic = Callable[[np.ndarray, np.ndarray], np.ndarray]
# Permuted statistics equal to the observed one up to rounding must count as "as extreme".
_REL_TOL = 1e-12


@dataclass(frozen=True, eq=False)
class PCA:
    """A fitted PCA; eq=False because comparing arrays field by field is ambiguous."""

    scores: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray


def as_vector(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise SaefeaturesError(f"{name} must be 1-D, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise SaefeaturesError(f"{name} contains NaN or infinite values")
    return array


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate paired samples once, so every statistic fails with the same clear message."""
    x, y = as_vector(x, "x"), as_vector(y, "y")
    if len(x) != len(y):
        raise SaefeaturesError(f"x and y differ in length ({len(x)} vs {len(y)})")
    if len(x) < 3:
        raise SaefeaturesError(f"need at least 3 paired points, got {len(x)}")
    return x, y


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; zero variance is an error because r is undefined there."""
    x, y = _pair(x, y)
    return float(pearson_rows(x[None], y[None])[0])


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row pair of `[n, m]` arrays (the rows are checked by the caller)."""
    dx = x - x.mean(axis=-1, keepdims=True)
    dy = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.einsum("ij,ij->i", dx, dx) * np.einsum("ij,ij->i", dy, dy))
    if np.any(denominator == 0):
        raise SaefeaturesError("correlation undefined: x or y has zero variance")
    return np.clip(np.einsum("ij,ij->i", dx, dy) / denominator, -1.0, 1.0)


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (as Spearman's rho requires)."""
    values = as_vector(values, "values")
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    bounds = np.flatnonzero(np.r_[starts_group, True])
    average = (bounds[:-1] + bounds[1:] + 1) / 2
    ranks = np.empty(len(values))
    ranks[order] = average[np.cumsum(starts_group) - 1]
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the average ranks."""
    x, y = _pair(x, y)
    return pearson(rank(x), rank(y))


def bootstrap_ci(
    x: np.ndarray,
    y: np.ndarray,
    statistic: RowStatistic,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI from resampling (x_i, y_i) pairs with replacement.

    Resamples in which x or y is constant are skipped, not returned as NaN: with
    few points (or many ties) some draws repeat one value, and a correlation is
    undefined there. The CI is then over fewer than n_resamples values.
    """
    x, y = _pair(x, y)
    if not 0 < level < 1:
        raise SaefeaturesError(f"level must be strictly between 0 and 1, got {level}")
    if n_resamples < 1:
        raise SaefeaturesError(f"n_resamples must be at least 1, got {n_resamples}")
    indices = np.random.default_rng(seed).integers(0, len(x), size=(n_resamples, len(x)))
    xs, ys = x[indices], y[indices]
    varied = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
    if not varied.any():
        raise SaefeaturesError("every bootstrap resample has zero variance; no CI possible")
    values = statistic(xs[varied], ys[varied])
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH q-values in the input order, so one q is reported per (layer, rating) test."""
    p = as_vector(p_values, "p_values")
    if np.any((p < 0) | (p > 1)):
        raise SaefeaturesError("p-values must lie in [0, 1]")
    order = np.argsort(p)
    # m / rank first, so that the largest p is multiplied by exactly 1.0 and q >= p holds.
    scaled = p[order] * (len(p) / np.arange(1, len(p) + 1))
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(len(p))
    q[order] = np.minimum(monotone, 1.0)
    return q


def pca(matrix: np.ndarray, n_components: int) -> PCA:
    """PCA by SVD of the centered rows; component signs are arbitrary (see `orient`)."""
    data = np.asarray(matrix, dtype=float)
    if data.ndim != 2:
        raise SaefeaturesError(f"matrix must be 2-D, got shape {data.shape}")
    if not 1 <= n_components <= min(data.shape):
        raise SaefeaturesError(
            f"n_components must be in 1..{min(data.shape)} for shape {data.shape}, "
            f"got {n_components}"
        )
    centered = data - data.mean(axis=0)
    u, s, vt = np.linalg.svd(centered, full_matrices=False)
    total = np.sum(s**2)
    if total == 0:
        raise SaefeaturesError("matrix has zero variance: all rows are identical")
    return PCA(
        scores=u[:, :n_components] * s[:n_components],
        components=vt[:n_components],
        explained_variance_ratio=s[:n_components] ** 2 / total,
    )


def orient(scores_column: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, int]:
    """Flip a PC so it correlates non-negatively with the ratings, and return the sign used."""
    column = as_vector(scores_column, "scores_column")
    sign = 1 if pearson(column, reference) >= 0 else -1
    return column * sign, sign


def cosine_matrix(matrix: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of rows; a zero row has no direction, so it scores 0."""
    data = np.asarray(matrix, dtype=float)
    if data.ndim != 2:
        raise SaefeaturesError(f"matrix must be 2-D, got shape {data.shape}")
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    unit = np.divide(data, norms, out=np.zeros_like(data), where=norms > 0)
    # Rounding can push a self-similarity just past 1; the heatmap scale is fixed to [-1, 1].
    return np.clip(unit @ unit.T, -1.0, 1.0)


def weighted_components(
    matrix: np.ndarray,
    weights: np.ndarray,
    n_components: int = 2,
    tolerance: float = 1e-6,
    max_iterations: int = 100,
) -> np.ndarray:
    """The top principal-component scores of many weightings of the rows at once, the PCA
    recomputed for each: `weights` `[B, n]` (a bootstrap resample's counts, or 0/1 for a
    subset) -> `[B, n, n_components]` scores of every row (signs arbitrary; rows of weight
    0 get the score they would have, which weighted statistics ignore).

    A weighted PCA of rows x_i with weights c_i has the eigenvectors of
    D^1/2 Gc D^1/2, where Gc is the Gram matrix of the rows centred on their weighted mean
    and D = diag(c). Block power iteration on it runs every weighting at once, one product
    with the full Gram matrix per iteration, where a PCA per resample would cost an SVD.
    Iteration stops when no vector moves by more than `tolerance` (or after
    `max_iterations`: enough for correlations to a few decimals even when two components
    are nearly tied).
    """
    data = np.asarray(matrix, dtype=float)
    data = data - data.mean(axis=0)
    gram = data @ data.T
    n_weightings, n = weights.shape
    c = np.asarray(weights, dtype=float)
    total = c.sum(axis=1)
    a = (c @ gram) / total[:, None]  # [B, n]: each row's mean Gram entry with the weighted rows
    q = np.einsum("bn,bn->b", a, c) / total  # the weighted mean's squared norm
    root = np.sqrt(c)[:, None, :]  # [B, 1, n]

    def centred_gram(y: np.ndarray) -> np.ndarray:  # Gc @ y, vectors in rows: [B, k, n]
        product = (y.reshape(-1, n) @ gram).reshape(y.shape)
        sums = y.sum(axis=2, keepdims=True)
        return (
            product
            - np.einsum("bn,bkn->bk", a, y)[..., None]
            - a[:, None] * sums
            + (q[:, None, None] * sums)
        )

    start = np.broadcast_to(pca(data, n_components).scores.T[None], (n_weightings, n_components, n))
    u = _orthonormal(start * root)
    for _ in range(max_iterations):
        new = _orthonormal(root * centred_gram(root * u))
        moved = np.max(1 - np.abs(np.einsum("bkn,bkn->bk", new, u)))
        u = new
        if moved < tolerance:
            break
    return centred_gram(root * u).transpose(0, 2, 1)


def _orthonormal(rows: np.ndarray) -> np.ndarray:
    """Gram-Schmidt over the vectors (axis 1) of `[B, k, n]`, each batch on its own."""
    out = np.zeros_like(rows)
    for c in range(rows.shape[1]):
        done = out[:, :c]
        vector = rows[:, c] - np.einsum(
            "bkn,bk->bn", done, np.einsum("bkn,bn->bk", done, rows[:, c])
        )
        norm = np.linalg.norm(vector, axis=1, keepdims=True)
        out[:, c] = np.divide(vector, norm, out=np.zeros_like(vector), where=norm > 0)
    return out


def weighted_abs_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """|r| of each row of `x` `[B, n]` with `y` `[n]` under row weights `[B, n]` (a
    resample's counts: the r of the resampled pairs); NaN where either side is constant."""
    w = weights / weights.sum(axis=1, keepdims=True)
    dx = x - np.einsum("bn,bn->b", w, x)[:, None]
    dy = y[None] - (w @ y)[:, None]
    covariance = np.einsum("bn,bn,bn->b", w, dx, dy)
    spread = np.einsum("bn,bn,bn->b", w, dx, dx) * np.einsum("bn,bn,bn->b", w, dy, dy)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(covariance / np.sqrt(spread))


def abs_pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|r| of each row pair, NaN where a row is constant: a PC's sign is arbitrary, so its
    correlation with a rating is taken after orienting it (see `orient`)."""
    dx = x - x.mean(axis=-1, keepdims=True)
    dy = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.einsum("ij,ij->i", dx, dx) * np.einsum("ij,ij->i", dy, dy))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(np.einsum("ij,ij->i", dx, dy) / denominator)


def binomial_upper_p(successes: int, trials: int, rate: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, rate): is a share of tests that passed at
    a nominal rate more than that rate gives by chance?"""
    if trials < 1 or not 0 <= successes <= trials:
        raise SaefeaturesError(f"need 0 <= successes <= trials >= 1, got {successes}/{trials}")
    return float(
        sum(
            math.comb(trials, k) * rate**k * (1 - rate) ** (trials - k)
            for k in range(successes, trials + 1)
        )
    )


def two_sided_p(observed: float, null: np.ndarray) -> float | None:
    """Share of the finite null draws at least as far from 0 as `observed`, the +1s keeping
    p above 0 (the draws and the observation as one sample); None for a NaN observation."""
    if math.isnan(observed):
        return None
    finite = np.asarray(null, dtype=float)
    finite = finite[np.isfinite(finite)]
    extreme = np.sum(np.abs(finite) >= abs(observed) * (1 - _REL_TOL))
    return float((1 + extreme) / (1 + len(finite)))


def diagonal_p(
    matrix: np.ndarray, n_permutations: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Is the diagonal of a square matrix (e.g. each steering emotion's effect on its own
    word) larger than the rest? The mean diagonal minus the mean off-diagonal, and its
    upper-tail p from permuting the columns."""
    data = np.asarray(matrix, dtype=float)
    n = len(data)
    if data.shape != (n, n) or n < 3:
        raise SaefeaturesError(f"need a square matrix of at least 3 x 3, got {data.shape}")

    def gap(m: np.ndarray) -> float:
        diagonal = np.trace(m) / n
        return float(diagonal - (m.sum() - np.trace(m)) / (n * n - n))

    observed = gap(data)
    rng = np.random.default_rng(seed)
    null = np.array([gap(data[:, rng.permutation(n)]) for _ in range(n_permutations)])
    return observed, float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
