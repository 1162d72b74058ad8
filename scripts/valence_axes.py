"""Where valence sits among the principal axes of a store's emotion vectors, and how well it
reads out of sample when it is not PC1.

The geometry stage tests the source study's claim (PC1 is valence, PC2 arousal). When it
fails, the question is whether valence is absent or only not the largest axis. Per layer:
|r| of each of the top PCs with valence and with arousal (descriptive: the best of several
PCs is chosen in sample), and valence predicted from the top PC scores by least squares,
in 5 folds of emotions, so every prediction is of an emotion the fit never saw; its r is
tested against the same readout with the ratings shuffled.

    python scripts/valence_axes.py STORE.duckdb MODEL CORPUS [LAYER ...]
"""

from __future__ import annotations

import sys

import numpy as np

from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.store import read
from saefeatures.store.database import Store

TOP_PCS = 5  # the axes listed per layer
READOUT_PCS = 20  # the PC scores the readout may use (at most one per 5 emotions)
FOLDS = 5
PERMUTATIONS = 199


def principal_scores(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The emotions' scores on the principal axes of `[emotions, d]` vectors, and each
    axis's share of the variance."""
    centred = vectors - vectors.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    return u * s, s**2 / np.sum(s**2)


def axis_r(scores: np.ndarray, rating: np.ndarray, count: int) -> np.ndarray:
    return np.array([abs(np.corrcoef(scores[:, k], rating)[0, 1]) for k in range(count)])


def readout_r(scores: np.ndarray, rating: np.ndarray, seed: int = 0) -> float:
    """r between the rating and its out-of-fold prediction from the top PC scores. The PCA
    sees every emotion but no rating, so it leaks nothing about the target."""
    folds = np.random.default_rng(seed).permutation(len(rating)) % FOLDS
    design = np.c_[scores[:, : min(READOUT_PCS, len(rating) // 5)], np.ones(len(rating))]
    predicted = np.zeros(len(rating))
    for fold in range(FOLDS):
        train, test = folds != fold, folds == fold
        weights = np.linalg.lstsq(design[train], rating[train], rcond=None)[0]
        predicted[test] = design[test] @ weights
    return float(np.corrcoef(predicted, rating)[0, 1])


def readout_p(scores: np.ndarray, rating: np.ndarray, observed: float) -> float:
    rng = np.random.default_rng(1)
    null = [readout_r(scores, rng.permutation(rating)) for _ in range(PERMUTATIONS)]
    return (1 + sum(value >= observed for value in null)) / (1 + PERMUTATIONS)


def main(db: str, model: str, corpus: str, *layers: str) -> None:
    ratings = catalog.load_ratings()
    with Store(db, read_only=True) as store:
        found = read.read_vectors(store, model, corpus, "denoised")
    rated = [i for i, e in enumerate(found.emotions) if e in ratings.valence]
    valence = np.array([ratings.valence[found.emotions[i]] for i in rated])
    arousal = np.array([ratings.arousal[found.emotions[i]] for i in rated])
    chosen = [int(layer) for layer in layers] or found.layers
    print(f"{model} {corpus}: {len(rated)} rated emotions, denoised vectors")
    print("layer | |r| valence, PC1..PC5 | |r| arousal, PC1..PC5 | readout r | p")
    for layer in chosen:
        scores, _ = principal_scores(found.vectors[rated, found.layers.index(layer)])
        r = readout_r(scores, valence)
        print(
            f"{layer} | {np.round(axis_r(scores, valence, TOP_PCS), 2)} | "
            f"{np.round(axis_r(scores, arousal, TOP_PCS), 2)} | {r:.2f} | "
            f"{readout_p(scores, valence, r):.3f}"
        )


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    try:
        main(*sys.argv[1:])
    except (OSError, SaefeaturesError) as error:  # a wrong path, model or corpus
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
