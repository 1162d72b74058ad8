"""Do emotion vectors line up with human valence and arousal? PCA by layer, with nulls.

Per layer, PC1 of the emotions' vectors is set against their valence ratings and PC2
against arousal; a PC's sign is arbitrary, so it is oriented to correlate non-negatively
and r is never negative. The statistics account for the choices that make r look good:

- the CI of a layer's r resamples emotions and recomputes the PCA in each resample (a
  fixed PCA would carry the full sample's fit into every resample);
- the best layer's r has a CI from resamples that also choose the layer anew, and a
  permutation p against the largest r over all layers of shuffled ratings;
- the held-out r chooses the layer on half of the emotions and scores the other half,
  over many random halves: an estimate that no selection inflates;
- beside r stands the r that a pure positive/negative split reaches on the same emotions
  (|corr(valence, sign(valence))|), so a reader sees what r means on this set.

The source study reports r at a chosen layer with no interval; these are our additions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saefeatures import stats
from saefeatures.errors import SaefeaturesError

COMPONENTS = (("PC1", "valence"), ("PC2", "arousal"))
SPLITS = 200  # random halves for the held-out r
LEVEL = 0.95


@dataclass(frozen=True)
class LayerFit:
    """One layer and component against its rating."""

    layer: int
    component: str
    rating: str
    var_explained: float
    pearson_r: float
    spearman_r: float
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float


@dataclass(frozen=True)
class BestLayer:
    """PC1 against valence at the layer where r is largest, and what that choice is worth."""

    layer: int
    pearson_r: float
    ci_low: float  # resamples that choose the layer anew
    ci_high: float
    p_value: float  # against the largest r over layers of shuffled ratings
    same_layer: float  # share of resamples that choose this layer
    heldout_r: float  # chosen on half of the emotions, scored on the other half
    heldout_low: float
    heldout_high: float
    split_r: float  # a pure positive / negative split on the same emotions
    n_emotions: int


@dataclass(frozen=True)
class ValenceFit:
    layers: list[LayerFit]
    best: BestLayer
    scores: np.ndarray  # [emotions, 2]: oriented PC1 and PC2 at the best layer


def fit(
    vectors: np.ndarray,
    layers: list[int],
    valence: np.ndarray,
    arousal: np.ndarray,
    resamples: int,
    seed: int,
) -> ValenceFit:
    """`vectors` `[emotions, layers, d]` of rated emotions against their ratings."""
    n = len(valence)
    if n < 4:
        raise SaefeaturesError(f"only {n} rated emotions; the geometry needs at least 4")
    ratings = {"valence": np.asarray(valence, float), "arousal": np.asarray(arousal, float)}
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n, size=(resamples, n))
    boot = (drawn[..., None] == np.arange(n)).sum(axis=1).astype(float)  # counts per emotion
    shuffled = {
        name: rng.permuted(np.tile(r, (resamples, 1)), axis=1) for name, r in ratings.items()
    }
    order = np.argsort(rng.random((SPLITS, n)), axis=1)
    halves = (order < n // 2).astype(float)  # 1: the half that chooses the layer
    per_layer = [_layer(vectors[:, i], ratings, boot, shuffled) for i in range(len(layers))]
    rows = _layer_rows(per_layer, layers)
    best = _best(per_layer, layers, ratings["valence"], halves, vectors)
    index = layers.index(best.layer)
    return ValenceFit(rows, best, per_layer[index].oriented)


@dataclass(frozen=True)
class _Layer:
    """A layer's fit: observed r per component, its resampled and permuted values."""

    explained: np.ndarray  # [2]
    oriented: np.ndarray  # [emotions, 2]
    observed: np.ndarray  # [2] |r|
    spearman: np.ndarray  # [2]
    resampled: np.ndarray  # [2, resamples] |r| with the PCA refitted
    permuted: np.ndarray  # [2, resamples] |r| of shuffled ratings


def _layer(
    matrix: np.ndarray,
    ratings: dict[str, np.ndarray],
    boot: np.ndarray,
    shuffled: dict[str, np.ndarray],
) -> _Layer:
    fitted = stats.pca(matrix, 2)
    oriented, observed, spearman, permuted = [], [], [], []
    for c, (_, rating) in enumerate(COMPONENTS):
        scores, _ = stats.orient(fitted.scores[:, c], ratings[rating])
        oriented.append(scores)
        observed.append(stats.pearson(scores, ratings[rating]))
        spearman.append(abs(stats.spearman(scores, ratings[rating])))
        flat = np.broadcast_to(scores, shuffled[rating].shape)
        permuted.append(stats.abs_pearson_rows(flat, shuffled[rating]))
    components = stats.weighted_components(matrix, boot, 2)
    resampled = [
        stats.weighted_abs_pearson(components[..., c], ratings[rating], boot)
        for c, (_, rating) in enumerate(COMPONENTS)
    ]
    return _Layer(
        fitted.explained_variance_ratio,
        np.stack(oriented, axis=1),
        np.array(observed),
        np.array(spearman),
        np.stack(resampled),
        np.stack(permuted),
    )


def _layer_rows(per_layer: list[_Layer], layers: list[int]) -> list[LayerFit]:
    rows = []
    for c, (component, rating) in enumerate(COMPONENTS):
        p = np.array([_p(fit.observed[c], fit.permuted[c]) for fit in per_layer])
        q = stats.benjamini_hochberg(p)
        for layer, fit, p_value, q_value in zip(layers, per_layer, p, q, strict=True):
            low, high = _interval(fit.resampled[c])
            rows.append(
                LayerFit(
                    layer,
                    component,
                    rating,
                    float(fit.explained[c]),
                    float(fit.observed[c]),
                    float(fit.spearman[c]),
                    low,
                    high,
                    float(p_value),
                    float(q_value),
                )
            )
    return rows


def _best(
    per_layer: list[_Layer],
    layers: list[int],
    valence: np.ndarray,
    halves: np.ndarray,
    vectors: np.ndarray,
) -> BestLayer:
    observed = np.array([fit.observed[0] for fit in per_layer])
    index = int(np.argmax(observed))
    chosen = np.stack([fit.resampled[0] for fit in per_layer])  # [layers, resamples]
    reselected = np.nanmax(chosen, axis=0)
    low, high = _interval(reselected)
    permuted_max = np.max(np.stack([fit.permuted[0] for fit in per_layer]), axis=0)
    heldout = _heldout(vectors, valence, halves)
    heldout_low, heldout_high = _interval(heldout)
    return BestLayer(
        layer=layers[index],
        pearson_r=float(observed[index]),
        ci_low=low,
        ci_high=high,
        p_value=_p(observed[index], permuted_max),
        same_layer=float(np.mean(np.nanargmax(np.nan_to_num(chosen, nan=-1), axis=0) == index)),
        heldout_r=float(np.nanmean(heldout)),
        heldout_low=heldout_low,
        heldout_high=heldout_high,
        split_r=float(abs(np.corrcoef(valence, np.sign(valence))[0, 1])),
        n_emotions=len(valence),
    )


def _heldout(vectors: np.ndarray, valence: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """Per random split: the layer chosen on one half's PC1-valence r (its own PCA), and
    the r at that layer of the other half (its own PCA)."""
    r = {}
    for name, weights in (("choose", halves), ("score", 1 - halves)):
        r[name] = np.stack(
            [
                stats.weighted_abs_pearson(
                    stats.weighted_components(vectors[:, i], weights, 1)[..., 0], valence, weights
                )
                for i in range(vectors.shape[1])
            ]
        )
    chosen = np.nanargmax(np.nan_to_num(r["choose"], nan=-1), axis=0)  # [splits]
    return r["score"][chosen, np.arange(len(chosen))]


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - LEVEL) / 2
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))


def _p(observed: float, null: np.ndarray) -> float:
    """Upper-tail p of |r| against its null; the +1s keep p > 0."""
    finite = null[np.isfinite(null)]
    return float((1 + np.sum(finite >= observed * (1 - 1e-12))) / (1 + len(finite)))
