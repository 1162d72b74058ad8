"""Geometry of emotion vectors: PCA against human ratings, cosine sanity pairs, logit lens.

Reads vectors only from the store (`emotion_vectors`) and writes `geometry` (every layer),
`geometry_best` (the best layer with its selection-aware statistics), `pca_scores` (each
emotion's oriented PC1 and PC2 there), `vector_pairs` and `logit_lens`, plus figures.

The statistics are `valence.fit`'s: PCA recomputed in every resample, the best layer chosen
anew in every resample and on held-out halves of the emotions, a permutation null over all
layers, and the r of a pure positive/negative split beside r. Each is computed for every
rated emotion with a vector (`all`) and, when the vectors hold more, for the 30 default
emotions (`default`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from saefeatures import activations, models, plots, stats
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.options import GeometryOptions, default_emotions
from saefeatures.store.database import Store
from saefeatures.store.read import VectorSet, read_vectors
from saefeatures.vectors import valence

SANITY_PAIRS = (
    ("happy", "joyful", 1),
    ("angry", "furious", 1),
    ("happy", "sad", -1),
    ("calm", "panicked", -1),
    ("loving", "disgusted", -1),
)
TABLE_COLUMNS = [
    "method",
    "emotion_set",
    "layer",
    "rel_depth",
    "component",
    "rating",
    "var_explained",
    "pearson_r",
    "spearman_r",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
]


def _sanity_rows(vs: VectorSet, layer_index: int) -> list[dict[str, object]]:
    position = {emotion: i for i, emotion in enumerate(vs.emotions)}
    cosines = stats.cosine_matrix(vs.vectors[:, layer_index])
    return [
        {
            "emotion_a": a,
            "emotion_b": b,
            "expected_sign": sign,
            "cosine": float(cosines[position[a], position[b]]),
        }
        for a, b, sign in SANITY_PAIRS
        if a in position and b in position
    ]


def emotion_sets(emotions: list[str], rated: list[str]) -> dict[str, list[str]]:
    """`all` rated emotions with vectors, and the 30 defaults when the vectors hold them
    and more."""
    sets = {"all": rated}
    defaults = [e for e in default_emotions() if e in rated]
    if len(defaults) == len(default_emotions()) and len(rated) > len(defaults):
        sets["default"] = defaults
    return sets


def _rated(
    emotions: list[str], ratings: catalog.Ratings, strict: bool
) -> tuple[list[str], list[str]]:
    """The emotions without ratings (refused with `strict`) and the rated ones, at least 4."""
    missing = ratings.missing(emotions)
    if missing and strict:
        raise SaefeaturesError(
            f"no ratings for: {', '.join(missing)} (drop --strict to exclude them)"
        )
    rated = [e for e in emotions if e not in missing]
    if len(rated) < 4:
        raise SaefeaturesError(f"only {len(rated)} rated emotions; geometry needs at least 4")
    return missing, rated


@dataclass(frozen=True)
class Analysed:
    """One `geometry` run: the best layer (denoised vectors, every rated emotion) at its
    relative depth, every fit per layer, the sanity pairs, the emotions without ratings,
    and the figures."""

    run_id: str
    best: valence.BestLayer
    rel_depth: float
    geometry: list[dict[str, object]]
    pairs: list[dict[str, object]]
    excluded: list[str]
    figures: list[str]

    def best_row(self) -> dict[str, object]:
        """The best layer's statistics with its relative depth, as printed and reported."""
        return {**asdict(self.best), "rel_depth": self.rel_depth}


def analyze(
    store: Store, out: Path, options: GeometryOptions, model: LoadedModel | None = None
) -> Analysed:
    """The geometry stage for one model and corpus, both vector methods, each emotion set."""
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    sets = {m: read_vectors(store, spec.name, options.corpus, m) for m in ("raw", "denoised")}
    ratings = catalog.load_ratings(options.ratings)
    emotions = sets["denoised"].emotions
    missing, rated = _rated(emotions, ratings, options.strict)
    n_layers = models.shape_of(spec)["n_layers"]
    chosen = emotion_sets(emotions, rated)
    config = {**asdict(options), "model": spec.name, "ratings": str(options.ratings or "shipped")}
    with store.run("geometry", config, atomic=True) as run_id:
        catalog.store_ratings(store, run_id, ratings)
        fits = {
            (method, name): _fit(vs, names, ratings, options)
            for method, vs in sets.items()
            for name, names in chosen.items()
        }
        pairs = [
            {"layer": layer, "method": method, **row}
            for method, vs in sets.items()
            for i, layer in enumerate(vs.layers)
            for row in _sanity_rows(vs, i)
        ]
        model = models.load(options.model, dtype=options.dtype, device=options.device, loaded=model)
        lens = _lens_rows(model, sets, options.top_tokens)
        _write(store, run_id, spec.name, options.corpus, n_layers, fits, chosen, pairs, lens)
    best = fits[("denoised", "all")].best
    figures = _figures(
        out / "geometry" / spec.slug / options.corpus,
        spec.name,
        options.corpus,
        fits,
        sets["denoised"],
        chosen["all"],
        ratings,
        n_layers,
    )
    rel_depth = best.layer / max(n_layers - 1, 1)
    return Analysed(run_id, best, rel_depth, _layer_rows(fits, n_layers), pairs, missing, figures)


def _layer_rows(
    fits: dict[tuple[str, str], valence.ValenceFit], n_layers: int
) -> list[dict[str, object]]:
    """Every fit's statistics at every layer, with the layer's relative depth."""
    return [
        {
            "method": method,
            "emotion_set": name,
            **asdict(row),
            "rel_depth": row.layer / max(n_layers - 1, 1),
        }
        for (method, name), fit in fits.items()
        for row in fit.layers
    ]


def _fit(
    vs: VectorSet, names: list[str], ratings: catalog.Ratings, options: GeometryOptions
) -> valence.ValenceFit:
    rows = [vs.emotions.index(e) for e in names]
    return valence.fit(
        vs.vectors[rows],
        vs.layers,
        np.array([ratings.valence[e] for e in names]),
        np.array([ratings.arousal[e] for e in names]),
        options.resamples,
        options.seed,
    )


def _write(
    store: Store,
    run_id: str,
    model: str,
    corpus: str,
    n_layers: int,
    fits: dict[tuple[str, str], valence.ValenceFit],
    chosen: dict[str, list[str]],
    pairs: list[dict],
    lens: list[dict],
) -> None:
    """Every table of the stage, replacing the model and corpus's rows, in one transaction."""
    depth = max(n_layers - 1, 1)
    common = {"run_id": run_id, "model": model, "corpus": corpus}
    tables = {
        "geometry": [
            {
                **common,
                "method": method,
                "emotion_set": name,
                **asdict(row),
                "rel_depth": row.layer / depth,
                "n_emotions": len(chosen[name]),
            }
            for (method, name), fit in fits.items()
            for row in fit.layers
        ],
        "geometry_best": [
            {
                **common,
                "method": method,
                "emotion_set": name,
                **asdict(fit.best),
                "rel_depth": fit.best.layer / depth,
            }
            for (method, name), fit in fits.items()
        ],
        "pca_scores": [
            {
                **common,
                "method": method,
                "emotion_set": name,
                "layer": fit.best.layer,
                "emotion": emotion,
                "pc1": float(scores[0]),
                "pc2": float(scores[1]),
            }
            for (method, name), fit in fits.items()
            for emotion, scores in zip(chosen[name], fit.scores, strict=True)
        ],
        "vector_pairs": [{**common, **row} for row in pairs],
        "logit_lens": [{**common, **row} for row in lens],
    }
    with store.transaction():
        for table, rows in tables.items():
            store.replace(table, {"model": model, "corpus": corpus}, pa.Table.from_pylist(rows))


def _lens_rows(
    model: models.LoadedModel, sets: dict[str, VectorSet], top: int
) -> list[dict[str, object]]:
    rows = []
    for method, vs in sets.items():
        flat = vs.vectors.reshape(-1, vs.vectors.shape[-1])
        up_ids, up_logits, down_ids, down_logits = activations.logit_lens(model, flat, top)
        for n, (emotion, layer) in enumerate(
            (e, layer) for e in vs.emotions for layer in vs.layers
        ):
            for direction, ids, values in (
                ("promoted", up_ids, up_logits),
                ("suppressed", down_ids, down_logits),
            ):
                tokens = model.tokenizer.convert_ids_to_tokens(ids[n].tolist())
                rows += [
                    {
                        "layer": layer,
                        "method": method,
                        "emotion": emotion,
                        "direction": direction,
                        "rank": r + 1,
                        "token": token,
                        "logit": float(value),
                    }
                    for r, (token, value) in enumerate(zip(tokens, values[n], strict=True))
                ]
    return rows


def _figures(
    folder: Path,
    model: str,
    corpus: str,
    fits: dict[tuple[str, str], valence.ValenceFit],
    vs: VectorSet,
    rated: list[str],
    ratings: catalog.Ratings,
    n_layers: int,
) -> list[str]:
    """r by depth, the PCA scatter and the cosine heatmap at the best layer."""
    fit = fits[("denoised", "all")]
    layer = fit.best.layer
    layer_rows = [
        {**asdict(row), "rel_depth": row.layer / max(n_layers - 1, 1)} for row in fit.layers
    ]
    values = np.array([ratings.valence[e] for e in rated])
    rows = [vs.emotions.index(e) for e in rated]
    written = plots.r_by_layer(layer_rows, f"{model} · {corpus}: r by layer", folder / "r_by_layer")
    written += plots.pca_scatter(
        rated,
        fit.scores[:, 0],
        fit.scores[:, 1],
        values,
        f"{model} · layer {layer}: PCA of emotion vectors",
        folder / f"pca_layer{layer}",
    )
    written += plots.cosine_heatmap(
        rated,
        stats.cosine_matrix(vs.vectors[rows, vs.layers.index(layer)]),
        values,
        f"{model} · layer {layer}: cosine of emotion vectors",
        folder / f"cosine_layer{layer}",
    )
    return [str(path) for path in written]
