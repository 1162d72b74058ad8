"""The numbers behind feature <-> emotion-vector alignment, in plain numpy.

Kept apart from `alignment.py` (which reads vectors and SAEs and writes the store) so
that every score is a small pure function, tested against a planted answer or a direct
computation. Decoders are (N features, d) with one feature direction per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from saefeatures.errors import SaefeaturesError
from saefeatures.stats import as_vector, rank

# Entries of one (random vectors x features) block in the empirical null: 4 M floats,
# so 16k features take 256 samples per matmul and the block stays ~16 MB in float32.
_NULL_BLOCK = 2**22
# Features per block when ranking activation columns: bounds the temporaries to a few
# (n_passages x 2048) arrays whatever the SAE width.
_RANK_BLOCK = 2048


@dataclass(frozen=True, eq=False)
class OmpResult:
    """OMP path; eq=False because comparing arrays field by field is ambiguous.

    `features[i]` is the feature chosen at step i + 1, `coefficients[i]` its weight (on
    the unit-norm decoder row) in the final k_max-feature fit, and `r2[k - 1]` the R² of
    the vector reconstructed from the first k features.
    """

    features: np.ndarray
    coefficients: np.ndarray
    r2: np.ndarray


def _matrix(values: np.ndarray, name: str) -> np.ndarray:
    """A 2-D float array that keeps float32 as float32: SAE decoders are large."""
    array = np.asarray(values)
    array = array.astype(np.result_type(array.dtype, np.float32), copy=False)
    if array.ndim != 2:
        raise SaefeaturesError(f"{name} must be 2-D, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise SaefeaturesError(f"{name} contains NaN or infinite values")
    return array


def _direction_and_decoder(
    vector: np.ndarray, decoder: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate once: a zero vector has no direction, and widths must match."""
    v, rows = as_vector(vector, "vector"), _matrix(decoder, "decoder")
    if rows.shape[1] != len(v):
        raise SaefeaturesError(
            f"vector has width {len(v)} but the SAE decoder rows have width {rows.shape[1]}; "
            "use an SAE trained on the same model and hook as the vector"
        )
    if not np.any(v):
        raise SaefeaturesError("vector is all zeros, so it has no direction to align")
    return v, rows


def _inverse_norms(rows: np.ndarray) -> np.ndarray:
    """1/||row||, and 0 for a zero row (no direction, so it scores 0); no (N, d) copy."""
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows * _inverse_norms(rows)[:, None]


def _labels(labels: np.ndarray, n: int) -> np.ndarray:
    """Boolean labels with both classes present: every score here compares the two."""
    array = np.asarray(labels)
    if array.shape != (n,):
        raise SaefeaturesError(f"labels must have shape ({n},), got {array.shape}")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise SaefeaturesError("labels must be boolean (or 0/1)")
    array = array.astype(bool)
    if array.all() or not array.any():
        raise SaefeaturesError("labels contain only one class; need positives and negatives")
    return array


def _check_k_max(k_max: int, rows: np.ndarray) -> None:
    # Beyond d features any d-dim vector is fit exactly, so larger k says nothing.
    if not 1 <= k_max <= min(rows.shape):
        raise SaefeaturesError(f"k_max must be in 1..{min(rows.shape)}, got {k_max}")


def decoder_cosines(vector: np.ndarray, decoder: np.ndarray) -> np.ndarray:
    """Cosine of the vector with every decoder row, so unnormalised rows compare fairly."""
    v, rows = _direction_and_decoder(vector, decoder)
    # Casting v (not the decoder) keeps a float32 decoder from being copied to float64.
    return (rows @ v.astype(rows.dtype)) * _inverse_norms(rows) / np.linalg.norm(v)


def top_by_abs(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by |score| with sign kept (a feature can carry the emotion negated).

    Ties go to the lower index, so the same scores always give the same ranking.
    """
    values = as_vector(scores, "scores")
    if k < 1:
        raise SaefeaturesError(f"k must be at least 1, got {k}")
    indices = np.argsort(-np.abs(values), kind="stable")[:k]
    return indices, values[indices]


def empirical_null_max_cos(
    decoder: np.ndarray, n_samples: int = 1000, quantile: float = 0.99, seed: int = 0
) -> float:
    """The `quantile` of max |cos| between random unit vectors and the actual decoder rows.

    Unlike the analytic value this respects the decoder's real geometry (rows are not
    isotropic). Samples are drawn in blocks so memory stays at one block of cosines.
    """
    rows = _matrix(decoder, "decoder")
    if n_samples < 1:
        raise SaefeaturesError(f"n_samples must be at least 1, got {n_samples}")
    if not 0 <= quantile <= 1:
        raise SaefeaturesError(f"quantile must be in [0, 1], got {quantile}")
    inverse_norms = _inverse_norms(rows)
    rng = np.random.default_rng(seed)
    batch = max(1, _NULL_BLOCK // len(rows))
    maxima = np.empty(n_samples)
    for start in range(0, n_samples, batch):
        count = min(batch, n_samples - start)
        samples = rng.standard_normal((count, rows.shape[1]))
        samples /= np.linalg.norm(samples, axis=1, keepdims=True)
        cosines = (samples.astype(rows.dtype, copy=False) @ rows.T) * inverse_norms
        maxima[start : start + count] = np.abs(cosines).max(axis=1)
    return float(np.quantile(maxima, quantile))


def shuffled_contrasts(
    means: np.ndarray,
    labels: np.ndarray,
    n_shuffles: int,
    seed: int = 0,
    removed: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Contrast vectors `[emotions, d]` (unit rows) built with the emotion labels shuffled,
    `n_shuffles` times: vectors from the same passages and the same recipe as the real
    ones (means per label minus their mean, `removed` rows projected out as denoising
    does), carrying no emotion. They are the null of every alignment claim: a direction in
    the data's subspace, where an SAE's decoder rows concentrate, aligns with features
    whether or not it means anything."""
    data = _matrix(means, "means")
    names, index = np.unique(np.asarray(labels), return_inverse=True)
    if len(data) != len(index) or len(names) < 2:
        raise SaefeaturesError("need one label per passage and at least two emotions")
    if n_shuffles < 1:
        raise SaefeaturesError(f"n_shuffles must be at least 1, got {n_shuffles}")
    rng = np.random.default_rng(seed)
    counts = np.bincount(index, minlength=len(names))[:, None]
    for _ in range(n_shuffles):
        per_emotion = np.zeros((len(names), data.shape[1]))
        np.add.at(per_emotion, rng.permutation(index), data)
        contrasts = per_emotion / counts
        contrasts -= contrasts.mean(axis=0, keepdims=True)
        if removed is not None:
            contrasts -= (contrasts @ removed.T) @ removed
        yield contrasts / np.linalg.norm(contrasts, axis=1, keepdims=True)


def shuffled_label_null_max_cos(
    contrasts: Iterable[np.ndarray], decoder: np.ndarray, quantile: float = 0.99
) -> float:
    """The `quantile` of best |cos| with the decoder rows over shuffled-label contrasts."""
    unit = _unit_rows(_matrix(decoder, "decoder"))
    best = [np.abs(c.astype(unit.dtype) @ unit.T).max(axis=1) for c in contrasts]
    return float(np.quantile(np.concatenate(best), quantile))


def shuffled_label_null_omp(
    contrasts: Iterable[np.ndarray], decoder: np.ndarray, k_max: int, n_curves: int, seed: int
) -> np.ndarray:
    """`[curves, k_max]` OMP R²(k) curves of shuffled-label contrasts (`n_curves` of them,
    drawn at random): the baseline of OMP's greedy fit, which finds some k features that
    explain any direction in the data's subspace well."""
    pool = np.concatenate(list(contrasts))
    chosen = np.random.default_rng(seed).choice(len(pool), min(n_curves, len(pool)), replace=False)
    return np.stack([omp(pool[i], decoder, k_max).r2 for i in chosen])


def _fit(v: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares of v on the columns: coefficients, residual, and R² (no centering)."""
    coefficients = np.linalg.lstsq(columns, v, rcond=None)[0]
    residual = v - columns @ coefficients
    return coefficients, residual, float(1 - residual @ residual / (v @ v))


def omp(vector: np.ndarray, decoder: np.ndarray, k_max: int = 32) -> OmpResult:
    """Orthogonal matching pursuit of the vector over unit decoder rows, signed coefficients.

    Reconstructs the direction from decoder rows directly rather than through the SAE
    encoder, whose bias and ReLU are meaningless for a vector far smaller than an
    activation. Each step adds the unused row most correlated with the residual and refits
    all chosen coefficients by least squares, so R²(k) never decreases.
    """
    v, rows = _direction_and_decoder(vector, decoder)
    _check_k_max(k_max, rows)
    inverse_norms = _inverse_norms(rows)
    available = np.ones(len(rows), dtype=bool)
    features = np.empty(k_max, dtype=np.int64)
    r2 = np.empty(k_max)
    residual = v
    for step in range(k_max):
        correlation = np.abs(rows @ residual.astype(rows.dtype)) * inverse_norms
        feature = int(np.argmax(np.where(available, correlation, -1.0)))
        available[feature] = False
        features[step] = feature
        columns = _unit_rows(rows[features[: step + 1]].astype(float)).T
        coefficients, residual, r2[step] = _fit(v, columns)
    return OmpResult(features=features, coefficients=coefficients, r2=r2)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC as Mann-Whitney U / (n+ n-), average ranks for ties (a tie counts 1/2)."""
    values = as_vector(scores, "scores")
    positive = _labels(labels, len(values))
    n_pos, n_neg = positive.sum(), (~positive).sum()
    u = rank(values)[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _rank_columns(block: np.ndarray) -> np.ndarray:
    """Average ranks (from 1) down each column at once; SAE activations tie at 0 a lot."""
    n = len(block)
    order = np.argsort(block, axis=0, kind="stable")
    ordered = np.take_along_axis(block, order, axis=0)
    positions = np.arange(n)[:, None]
    starts = np.ones(block.shape, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    ends = np.ones(block.shape, dtype=bool)
    ends[:-1] = starts[1:]
    first = np.maximum.accumulate(np.where(starts, positions, 0), axis=0)
    last = np.minimum.accumulate(np.where(ends, positions, n)[::-1], axis=0)[::-1]
    ranks = np.empty(block.shape)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=0)
    return ranks


def column_ranks(activations: np.ndarray) -> np.ndarray:
    """Average ranks down every column of (n_passages, N), in blocks of features.

    Computed once per SAE: every emotion's AUROCs then come from the same ranks.
    """
    values = _matrix(activations, "activations")
    ranks = np.empty(values.shape)
    for start in range(0, values.shape[1], _RANK_BLOCK):
        ranks[:, start : start + _RANK_BLOCK] = _rank_columns(
            values[:, start : start + _RANK_BLOCK]
        )
    return ranks


def auroc_from_ranks(ranks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of every column from its `column_ranks`: the Mann-Whitney U of `auroc`."""
    positive = _labels(labels, len(ranks))
    n_pos, n_neg = positive.sum(), (~positive).sum()
    u = ranks[positive].sum(axis=0) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def mean_difference(activations: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean activation over positive passages minus over the rest, per feature.

    Complements AUROC: it says how much a feature moves, AUROC only how reliably.
    """
    values = _matrix(activations, "activations")
    positive = _labels(labels, len(values))
    return values[positive].mean(axis=0, dtype=float) - values[~positive].mean(axis=0, dtype=float)


def top_overlap(a_ids: np.ndarray, b_ids: np.ndarray, k: int = 10) -> float:
    """Share of features two rankings (best first) have in common in their top k.

    Order within the top k is ignored; the methods' full scores are compared with a rank
    correlation over all features instead.
    """
    if k < 1:
        raise SaefeaturesError(f"k must be at least 1, got {k}")
    tops = []
    for name, ids in (("a_ids", a_ids), ("b_ids", b_ids)):
        top = [int(i) for i in np.asarray(ids).ravel()[:k]]
        if len(top) < k:
            raise SaefeaturesError(f"{name} has {len(top)} features, fewer than k = {k}")
        if len(set(top)) < k:
            raise SaefeaturesError(f"{name} repeats a feature in its top {k}")
        tops.append(set(top))
    return len(tops[0] & tops[1]) / k


def heldout_feature_auroc(
    activations: np.ndarray,
    labels: np.ndarray,
    chooser: np.ndarray,
    permutations: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """The best feature chosen on the `chooser` passages, scored on the others.

    The largest AUROC over thousands of features is high on noise alone; a feature chosen
    on one half and scored on the other is not, and its p comes from permuting the scored
    half's labels. `noise_max` is the largest AUROC over features on the chooser half
    with its labels shuffled: what the in-sample maximum reaches by chance.
    """
    values = _matrix(activations, "activations")
    positive = _labels(labels, len(values))
    choose, score = np.asarray(chooser, bool), ~np.asarray(chooser, bool)
    for part, name in ((choose, "choosing"), (score, "scored")):
        if positive[part].all() or not positive[part].any():
            raise SaefeaturesError(f"the {name} half needs passages in both classes")
    ranks = column_ranks(values[choose])
    feature = int(np.argmax(auroc_from_ranks(ranks, positive[choose])))
    rng = np.random.default_rng(seed)
    noise = float(np.max(auroc_from_ranks(ranks, rng.permutation(positive[choose]))))
    column, truth = values[score, feature], positive[score]
    observed = auroc(column, truth)
    shuffled = rng.permuted(np.tile(truth, (permutations, 1)), axis=1)
    ranked = rank(column)
    n_pos = truth.sum()
    null = ((ranked[None] * shuffled).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (
        n_pos * (len(truth) - n_pos)
    )
    p = (1 + np.sum(null >= observed - 1e-12)) / (1 + permutations)
    return {"feature": float(feature), "auroc": observed, "p_value": float(p), "noise_max": noise}


def logistic_probe_auroc(X: np.ndarray, labels: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Out-of-fold AUROC of a dense L2 logistic probe on the raw residual (n, d).

    The ceiling for activation selectivity: how well a linear read-out of the whole
    residual detects the emotion, to set single SAE features' AUROCs against. Dimensions
    are standardised first because a few residual dimensions are orders of magnitude
    larger. Out-of-fold scores are pooled into one AUROC; folds drop to the minority
    class size so every fold holds both classes.
    """
    data = _matrix(X, "X")
    positive = _labels(labels, len(data))
    n_splits = min(folds, int(positive.sum()), int((~positive).sum()))
    if n_splits < 2:
        raise SaefeaturesError("need at least 2 passages in each class for a cross-validated probe")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))  # L2 default
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    scores = cross_val_predict(probe, data, positive, cv=splitter, method="decision_function")
    return auroc(scores, positive)
