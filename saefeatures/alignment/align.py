"""The alignment stage: which SAE features carry each emotion vector, by three methods.

For one model and layer it reads the emotion vectors and every SAE at that layer's
residual stream, scans the emotion corpus and a held-out sample of training text
through the model and the SAEs once, and writes `alignments` (top features per method),
`alignment_summary` (nulls, probe ceiling, agreement), `alignment_curves` (OMP R² vs k
against random sets), `features`, `feature_activations` and `passage_tokens`.
The scores themselves live in `alignment_math`; this module only wires them up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from saefeatures import activations, models, stats
from saefeatures.alignment import measures, tables
from saefeatures.alignment.scan import Scan, Source, scan
from saefeatures.corpora import catalog, training_text
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.options import AlignOptions
from saefeatures.sae import loading
from saefeatures.store.database import Store
from saefeatures.store.read import VectorSet, read_vectors, saes_at
from saefeatures.vectors import extraction

METHODS = ("decoder_cosine", "omp", "mean_diff", "auroc")
SAMPLE_CORPUS = "text-sample"
AGREEMENT_TOP = 10
NULL_SHUFFLES = 100  # label shuffles for the data-shaped null (x emotions vectors each)
OMP_NULL_CURVES = 100  # OMP fits of shuffled-label contrasts: OMP's baseline


@dataclass(frozen=True)
class Inputs:
    """Everything checked before a run starts, so bad input writes nothing."""

    spec: models.ModelSpec
    saes: list[dict[str, Any]]
    emotions: list[str]
    vectors: np.ndarray  # [emotions, d] at the layer
    token_offset: int


# -- inputs --------------------------------------------------------------------------


def _emotions(vectors: VectorSet, chosen: Sequence[str] | None, corpus: str) -> list[str]:
    if chosen is None:
        return vectors.emotions
    wanted = list(chosen)
    missing = [e for e in wanted if e not in vectors.emotions]
    if missing:
        raise SaefeaturesError(
            f"no vector for {', '.join(missing)} in corpus {corpus}; the vectors cover "
            f"{len(vectors.emotions)} emotions (make more with `saefeatures vectors --emotions`)"
        )
    return wanted


def check_inputs(store: Store, options: AlignOptions) -> Inputs:
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    n_layers = models.shape_of(spec)["n_layers"]
    layer = activations.select_layers([options.layer], n_layers, spec.name)[0]
    saes = saes_at(store, spec.name, layer, options.sae)
    vector_set = read_vectors(store, spec.name, options.corpus, options.method)
    if layer not in vector_set.layers:
        raise SaefeaturesError(
            f"no {options.method} vectors at layer {layer} for {spec.name} and corpus "
            f"{options.corpus}; make them with `saefeatures vectors --model {spec.name} "
            f"--corpus {options.corpus} --layers {layer}`"
        )
    emotions = _emotions(vector_set, options.emotions, options.corpus)
    rows = [vector_set.emotions.index(e) for e in emotions]
    vectors = vector_set.vectors[rows, vector_set.layers.index(layer)]
    for row in saes:
        if row["d_in"] != vectors.shape[1]:
            raise SaefeaturesError(
                f"SAE {row['sae_id']} has width {row['d_in']} but the vectors of {spec.name} "
                f"have width {vectors.shape[1]}; use an SAE trained on {spec.name}"
            )
        if row["model"] != spec.name:
            raise SaefeaturesError(
                f"SAE {row['sae_id']} was trained on {row['model']}, not {spec.name}"
            )
    if len(emotions) < 2:
        raise SaefeaturesError("alignment contrasts emotions: choose at least 2")
    if options.k_max > vectors.shape[1]:
        raise SaefeaturesError(f"--k-max must be at most the width {vectors.shape[1]}")
    offset = store.query(
        "SELECT max(token_offset) AS o FROM emotion_vectors WHERE model = ? AND corpus = ?",
        [spec.name, options.corpus],
    )["o"][0].as_py()
    return Inputs(spec, saes, emotions, vectors, int(offset or 0))


# -- the methods ---------------------------------------------------------------------


@dataclass
class EmotionResult:
    ranked: dict[str, tuple[np.ndarray, np.ndarray]]  # method -> (features, scores)
    omp_r2: np.ndarray
    summary: dict[str, float]


def align_emotion(
    vector: np.ndarray,
    decoder: np.ndarray,
    passages: Passages,
    labels: np.ndarray,
    omp_null: np.ndarray,
    options: AlignOptions,
) -> EmotionResult:
    """Every method for one emotion; `labels` mark its passages among the scanned ones.

    The claims it supports are against shuffled-label nulls: its best decoder cosine and
    OMP fit against those of contrasts built with shuffled labels (`omp_null`), its best
    single feature's AUROC chosen on one half of the passages and scored on the other.
    """
    cosines = measures.decoder_cosines(vector, decoder)
    path = measures.omp(vector, decoder, options.k_max)
    mean_diff = measures.mean_difference(passages.mean, labels)
    auroc = measures.auroc_from_ranks(passages.max_ranks, labels)
    heldout = measures.heldout_feature_auroc(
        passages.max, labels, passages.chooser, seed=options.seed
    )
    by_value = {"mean_diff": mean_diff, "auroc": auroc}
    ranked = {"decoder_cosine": measures.top_by_abs(cosines, options.top_k)}
    ranked["omp"] = (path.features, path.coefficients)
    for method, values in by_value.items():
        order = np.argsort(-values, kind="stable")[: options.top_k]
        ranked[method] = (order, values[order])
    k = options.k_max
    summary = {
        "best_abs_cos": float(np.abs(cosines).max()),
        "best_cos_feature": float(ranked["decoder_cosine"][0][0]),
        "omp_r2_k1": float(path.r2[0]),
        f"omp_r2_k{k}": float(path.r2[-1]),
        f"shuffled_omp_r2_k{k}_p99": float(np.quantile(omp_null[:, -1], 0.99)),
        "omp_exceeds_shuffled": float(path.r2[-1] > np.quantile(omp_null[:, -1], 0.99)),
        "best_mean_diff": float(mean_diff.max()),
        "best_feature_auroc": float(auroc.max()),
        "heldout_feature": heldout["feature"],
        "heldout_feature_auroc": heldout["auroc"],
        "heldout_feature_auroc_p": heldout["p_value"],
        "noise_max_feature_auroc": heldout["noise_max"],
        "probe_auroc": measures.logistic_probe_auroc(passages.residual, labels, options.seed),
    }
    omp_scores = np.zeros(len(decoder))
    omp_scores[path.features] = path.coefficients
    full = {"decoder_cosine": cosines, "omp": omp_scores, **by_value}
    top = min(AGREEMENT_TOP, options.top_k, options.k_max)
    for a, b in combinations(METHODS, 2):
        summary[f"overlap@{top}:{a}~{b}"] = measures.top_overlap(ranked[a][0], ranked[b][0], top)
        summary[f"spearman:{a}~{b}"] = stats.spearman(full[a], full[b])
    return EmotionResult(ranked, path.r2, summary)


@dataclass(frozen=True)
class Passages:
    """The scanned passages as every emotion's methods read them."""

    mean: np.ndarray  # [n, d_sae] mean activation per passage
    max: np.ndarray  # [n, d_sae] max activation per passage
    max_ranks: np.ndarray  # column ranks of `max`, computed once per SAE
    residual: np.ndarray  # [n, d] mean residual per passage
    chooser: np.ndarray  # [n] bool: the half that chooses the held-out AUROC's feature


def chooser_half(labels: np.ndarray, seed: int) -> np.ndarray:
    """Half of each emotion's passages, seeded: where features are chosen, the rest scored."""
    rng = np.random.default_rng(seed)
    chooser = np.zeros(len(labels), dtype=bool)
    for emotion in np.unique(labels):
        own = rng.permutation(np.flatnonzero(labels == emotion))
        chooser[own[: (len(own) + 1) // 2]] = True
    return chooser


def _result_tables(
    common: dict[str, Any], emotions: list[str], results: list[EmotionResult], nulls: dict
) -> dict[str, pa.Table]:
    ranked, summary, curves = [], [], []
    for emotion, result in zip(emotions, results, strict=True):
        for method, (ids, scores) in result.ranked.items():
            for position, (feature, score) in enumerate(zip(ids, scores, strict=True)):
                extra = {"r2": float(result.omp_r2[position])} if method == "omp" else None
                ranked.append(
                    {
                        **common,
                        "emotion": emotion,
                        "method": method,
                        "feature": int(feature),
                        "score": float(score),
                        "rank": position + 1,
                        "extra": json.dumps(extra) if extra else None,
                    }
                )
        metrics = {
            **result.summary,
            **{name: value for name, value in nulls.items() if name != "omp_curves"},
            "exceeds_random_p99": float(result.summary["best_abs_cos"] > nulls["random_p99"]),
            "exceeds_shuffled_null": float(
                result.summary["best_abs_cos"] > nulls["shuffled_null_p99"]
            ),
        }
        summary += [
            {**common, "emotion": emotion, "metric": name, "value": value}
            for name, value in metrics.items()
        ]
        shuffled = nulls["omp_curves"].mean(axis=0)
        for curve, values in (("omp", result.omp_r2), ("shuffled", shuffled)):
            curves += [
                {**common, "emotion": emotion, "curve": curve, "k": k + 1, "r2": float(r2)}
                for k, r2 in enumerate(values)
            ]
    return {
        "alignments": pa.Table.from_pylist(ranked),
        "alignment_summary": pa.Table.from_pylist(summary),
        "alignment_curves": pa.Table.from_pylist(curves),
    }


# -- the stage -----------------------------------------------------------------------


def _sample(model: models.LoadedModel, row: dict, options: AlignOptions) -> Source | None:
    """Held-out rows of the SAE's own training text (or --text): never trained on."""
    if options.sample_rows == 0:
        return None
    stored = json.loads(row["config"] or "{}") if row["source"] == "trained" else {}
    data = training_text.prepare(
        options.text or stored.get("dataset"),
        model.tokenizer,
        int(stored.get("context_size", 128)),
        float(stored.get("holdout_fraction", 0.02)),
    )
    rows = [list(map(int, r)) for r in data.held_out[: options.sample_rows]]
    return Source(np.arange(len(rows)), rows, 0)


def _align_sae(
    run_id: str,
    row: dict[str, Any],
    sae: Any,
    index: int,
    inputs: Inputs,
    options: AlignOptions,
    scans: dict[str, Any],
    sources: dict[str, Source],
    context: dict[str, Any],
) -> tuple[list[tuple[str, dict, pa.Table]], SaeAlignment]:
    """One SAE's tables (as store replacements) and its headline."""
    decoder = sae.W_dec.detach().float().cpu().numpy()
    corpus_scan, labels = scans[options.corpus], context["labels"]
    nulls = _nulls(decoder, corpus_scan, options, context)
    passages = _passages(corpus_scan, index, context)
    results = [
        align_emotion(vector, decoder, passages, labels == emotion, nulls["omp_curves"], options)
        for emotion, vector in zip(inputs.emotions, inputs.vectors, strict=True)
    ]
    sae_id = row["sae_id"]
    common = {
        "run_id": run_id,
        "model": inputs.spec.name,
        "sae_id": sae_id,
        "layer": options.layer,
        "corpus": options.corpus,
    }
    where = {"sae_id": sae_id, "layer": options.layer, "corpus": options.corpus}
    changes = [
        (table, where, data)
        for table, data in _result_tables(common, inputs.emotions, results, nulls).items()
    ]
    changes += _feature_changes(run_id, sae_id, decoder, index, options, scans, sources, context)
    return changes, _headline(sae_id, inputs.emotions, results, nulls, options.k_max)


def _nulls(
    decoder: np.ndarray, corpus_scan: Scan, options: AlignOptions, context: dict[str, Any]
) -> dict[str, Any]:
    """The SAE's nulls: best |cos| of shuffled-label contrasts and of random directions,
    and OMP curves of the shuffled-label contrasts."""
    contrasts = list(
        measures.shuffled_contrasts(
            corpus_scan.residual_mean[context["kept"]],
            context["labels"],
            NULL_SHUFFLES,
            options.seed,
            context["removed"],
        )
    )
    return {
        "shuffled_null_p99": measures.shuffled_label_null_max_cos(contrasts, decoder),
        "random_p99": measures.empirical_null_max_cos(
            decoder, options.null_samples, 0.99, options.seed
        ),
        "omp_curves": measures.shuffled_label_null_omp(
            contrasts, decoder, options.k_max, OMP_NULL_CURVES, options.seed
        ),
    }


def _passages(corpus_scan: Scan, index: int, context: dict[str, Any]) -> Passages:
    """The kept passages of the emotion corpus as the SAE at `index` sees them."""
    own, kept = corpus_scan.per_sae[index], context["kept"]
    return Passages(
        own.passage_mean[kept],
        own.passage_max[kept],
        measures.column_ranks(own.passage_max[kept]),
        corpus_scan.residual_mean[kept],
        context["chooser"],
    )


def _feature_changes(
    run_id: str,
    sae_id: str,
    decoder: np.ndarray,
    index: int,
    options: AlignOptions,
    scans: dict[str, Scan],
    sources: dict[str, Source],
    context: dict[str, Any],
) -> list[tuple[str, dict, pa.Table]]:
    """The SAE's descriptive tables: activations per corpus, emotion activity, features."""
    scanned = [
        tables.ScannedCorpus(name, source.ids, source.sequences, scans[name].per_sae[index])
        for name, source in sources.items()
    ]
    changes = [
        (
            "feature_activations",
            {"sae_id": sae_id, "corpus": corpus.corpus},
            tables.activation_table(run_id, sae_id, corpus),
        )
        for corpus in scanned
    ]
    activity = tables.emotion_activity_table(
        run_id,
        sae_id,
        scanned[0],
        context["emotions"],
        len(decoder),  # [0]: the emotion corpus
    )
    changes.append(
        ("emotion_feature_activity", {"sae_id": sae_id, "corpus": options.corpus}, activity)
    )
    table = tables.feature_table(
        run_id, sae_id, context["model"], decoder, scanned, context["n_tokens"], context["strings"]
    )
    changes.append(("features", {"sae_id": sae_id}, table))
    return changes


def _denoising_basis(
    store: Store, model: models.LoadedModel, inputs: Inputs, options: AlignOptions
) -> np.ndarray | None:
    """What denoising removed from the vectors at this layer, rebuilt from the neutral
    passages, so the shuffled-label null is built in the same subspace; None for raw."""
    if options.method != "denoised":
        return None
    count = store.query(
        "SELECT max(n_removed) AS n FROM emotion_vectors WHERE model = ? AND corpus = ? "
        "AND layer = ? AND method = 'denoised'",
        [inputs.spec.name, options.corpus, options.layer],
    )["n"][0].as_py()
    neutral = [p.text for p in catalog.read_corpus(store, catalog.neutral_of(options.corpus))]
    pooled = extraction.pool_passages(
        model, neutral, [options.layer], inputs.token_offset, options.batch_size
    )
    return extraction.neutral_basis(pooled.means[:, 0], int(count or 0))


@dataclass(frozen=True)
class SaeAlignment:
    """One SAE's alignment: per emotion, the claims against their shuffled-label nulls
    (best |cos|, OMP R², held-out feature AUROC) and what is only descriptive; the share
    of emotions passing each; the nulls' thresholds; the mean OMP curves."""

    sae_id: str
    nulls: dict[str, float]
    fraction_above_shuffled_null: float
    fraction_omp_above_shuffled: float
    fraction_heldout_auroc_p05: float
    fraction_above_random: float
    mean_omp_r2: np.ndarray  # [k_max]: mean R² of OMP with 1..k_max features
    mean_shuffled_omp_r2: np.ndarray
    per_emotion: list[dict[str, Any]]


@dataclass(frozen=True)
class Aligned:
    """One `align` run: the text it scanned and each SAE's alignment."""

    run_id: str
    model: str
    layer: int
    corpus: str
    passages: int
    sample_rows: int
    tokens_scanned: int
    saes: list[SaeAlignment]


def align(store: Store, options: AlignOptions, model: LoadedModel | None = None) -> Aligned:
    """Align every emotion vector with every SAE at the layer, and describe the features."""
    inputs = check_inputs(store, options)
    if options.text is not None:
        training_text.check_dataset(options.text)
    saes = [loading.read_saelens(Path(row["path"]), options.device) for row in inputs.saes]
    config = {
        **asdict(options),
        "model": inputs.spec.name,
        "emotions": inputs.emotions,
        "saes": [row["sae_id"] for row in inputs.saes],
    }
    with store.run("align", config, atomic=True) as run_id:
        catalog.ensure_builtin(store, run_id, options.corpus)
        if not store.query("SELECT emotion FROM emotion_ratings LIMIT 1").num_rows:
            catalog.store_ratings(store, run_id, catalog.load_ratings())  # for the example SQL
        wanted = set(inputs.emotions)
        passages = [p for p in catalog.read_corpus(store, options.corpus) if p.emotion in wanted]
        model = models.load(
            inputs.spec.name, dtype=options.dtype, device=options.device, loaded=model
        )
        sources = {
            options.corpus: Source(
                np.array([p.passage_id for p in passages]),
                model.tokenizer([p.text for p in passages])["input_ids"],
                inputs.token_offset,
            )
        }
        sample = _sample(model, inputs.saes[0], options)
        if sample is not None:
            sources[SAMPLE_CORPUS] = sample
        scans = _scans(model, saes, options, sources)
        context = _context(store, model, inputs, options, passages, sources, scans)
        changes, headline = _changes(run_id, saes, inputs, options, scans, sources, context)
        store.replace_all(changes)
    return Aligned(
        run_id,
        inputs.spec.name,
        options.layer,
        options.corpus,
        int(context["kept"].sum()),
        len(sample.sequences) if sample else 0,
        context["n_tokens"],
        headline,
    )


def _scans(
    model: models.LoadedModel, saes: list[Any], options: AlignOptions, sources: dict[str, Source]
) -> dict[str, Scan]:
    """Each source scanned once through the model and every SAE at the layer."""
    special = training_text.special_ids(model.tokenizer)
    return {
        name: scan(
            model,
            saes,
            options.layer,
            source.sequences,
            source.offset,
            special,
            options.batch_size,
        )
        for name, source in sources.items()
    }


def _context(
    store: Store,
    model: models.LoadedModel,
    inputs: Inputs,
    options: AlignOptions,
    passages: list[catalog.Passage],
    sources: dict[str, Source],
    scans: dict[str, Scan],
) -> dict[str, Any]:
    """What every SAE's alignment shares: the kept passages, their labels and halves, the
    token strings, the tokens scanned and the subspace denoising removed."""
    kept = scans[options.corpus].pooled
    every_sequence = [s for source in sources.values() for s in source.sequences]
    return {
        "model": model,
        "kept": kept,
        "emotions": np.array([p.emotion for p in passages]),
        "labels": np.array([p.emotion for p in passages])[kept],
        "chooser": chooser_half(np.array([p.emotion for p in passages])[kept], options.seed),
        "strings": tables.token_strings(model, every_sequence),
        "n_tokens": sum(s.n_tokens for s in scans.values()),
        "removed": _denoising_basis(store, model, inputs, options),
    }


def _changes(
    run_id: str,
    saes: list[Any],
    inputs: Inputs,
    options: AlignOptions,
    scans: dict[str, Scan],
    sources: dict[str, Source],
    context: dict[str, Any],
) -> tuple[list[tuple[str, dict, pa.Table]], list[SaeAlignment]]:
    """Every table the run replaces (each SAE's, then the passage tokens) and each SAE's
    headline."""
    changes, headline = [], []
    for index, (row, sae) in enumerate(zip(inputs.saes, saes, strict=True)):
        own, summary = _align_sae(run_id, row, sae, index, inputs, options, scans, sources, context)
        changes += own
        headline.append(summary)
    changes += [
        (
            "passage_tokens",
            {"model": inputs.spec.name, "corpus": name},
            tables.token_table(run_id, inputs.spec.name, name, source, context["strings"]),
        )
        for name, source in sources.items()
    ]
    return changes, headline


def _headline(
    sae_id: str, emotions: list[str], results: list[EmotionResult], nulls: dict, k: int
) -> SaeAlignment:
    """What the CLI prints of one SAE."""
    per_emotion = [
        {
            "emotion": emotion,
            "best |cos|": r.summary["best_abs_cos"],
            "feature": int(r.summary["best_cos_feature"]),
            "> shuffled p99": bool(r.summary["best_abs_cos"] > nulls["shuffled_null_p99"]),
            f"R² k={k}": r.omp_r2[-1],
            "> shuffled OMP p99": bool(r.summary["omp_exceeds_shuffled"]),
            "held-out feature AUROC": r.summary["heldout_feature_auroc"],
            "p": r.summary["heldout_feature_auroc_p"],
            "probe AUROC": r.summary["probe_auroc"],
            "> random p99": bool(r.summary["best_abs_cos"] > nulls["random_p99"]),
        }
        for emotion, r in zip(emotions, results, strict=True)
    ]
    share = lambda key: float(np.mean([row[key] for row in per_emotion]))  # noqa: E731
    return SaeAlignment(
        sae_id,
        {name: v for name, v in nulls.items() if name != "omp_curves"},
        share("> shuffled p99"),
        share("> shuffled OMP p99"),
        float(np.mean([r.summary["heldout_feature_auroc_p"] < 0.05 for r in results])),
        share("> random p99"),
        np.mean([r.omp_r2 for r in results], axis=0),
        nulls["omp_curves"].mean(axis=0),
        per_emotion,
    )
