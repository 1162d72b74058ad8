"""Retrieval on unseen text (`saefeatures validate retrieval`): does an emotion's vector,
built from one half of a corpus, find the emotion's passages in the other half?

The corpus is split by passage or by topic (seeded). Contrast vectors are rebuilt from the
training half exactly as `saefeatures vectors` builds them (the same token offset, and for
denoised vectors as many neutral principal components removed as the stored vectors had).
Each emotion then ranks the candidates — the held-out passages of every emotion, the
neutral passages and the other emotions' training passages — by projection on its
direction, and at the feature level by the summed activation of its top aligned SAE
features. Precision@10 and average precision score the ranking; the shuffled-label null
permutes which candidates count as the emotion's own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from saefeatures import corpora, models, validation, vectors
from saefeatures.errors import SaefeaturesError
from saefeatures.store import Store

SPLITS = ("passage", "topic")
TOP_PASSAGES = 10  # stored per emotion, layer and level
PRECISION_AT = 10
KIND = "validation-retrieval"


@dataclass(frozen=True)
class RetrievalOptions(validation.ReadoutOptions):
    split: str = "passage"


# -- the metrics -----------------------------------------------------------------------


def ranked_relevance(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """The relevance labels in order of falling score (ties keep candidate order)."""
    return np.asarray(relevant, dtype=float)[np.argsort(-scores, kind="stable")]


def precision_at(ranked: np.ndarray, k: int) -> np.ndarray:
    """Share of the first k ranked candidates that are relevant (per row of `ranked`)."""
    return ranked[..., :k].sum(axis=-1) / k


def average_precision(ranked: np.ndarray) -> np.ndarray:
    """Mean, over the relevant candidates, of the precision at each one's rank (per row)."""
    ranks = np.arange(1, ranked.shape[-1] + 1)
    precision = np.cumsum(ranked, axis=-1) / ranks
    return (precision * ranked).sum(axis=-1) / ranked.sum(axis=-1)


def shuffled_label_null(relevant: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Average precision of `n` rankings in which the relevance labels are shuffled.

    A shuffled ranking does not depend on the scores, so one null serves every emotion
    with the same number of relevant candidates, at every layer and level.
    """
    shuffled = np.random.default_rng(seed).permuted(np.tile(relevant, (n, 1)), axis=1)
    return average_precision(shuffled.astype(float))


# -- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    train: list[corpora.Passage]
    held_out: list[corpora.Passage]


def split_passages(passages: list[corpora.Passage], by: str, seed: int) -> Split:
    """Half of each emotion's passages (or half of the topics) held out, seeded."""
    rng = np.random.default_rng(seed)
    if by == "topic":
        topics = sorted({p.topic for p in passages if p.topic})
        if len(topics) < 2:
            raise SaefeaturesError(
                "--split topic needs passages with at least 2 topics; this corpus has "
                f"{len(topics)}: use --split passage"
            )
        held = set(rng.permutation(topics)[: len(topics) // 2])
        return Split([p for p in passages if p.topic not in held],
                     [p for p in passages if p.topic in held])  # fmt: skip
    train, held_out = [], []
    for emotion in dict.fromkeys(p.emotion for p in passages):
        own = [p for p in passages if p.emotion == emotion]
        order = rng.permutation(len(own))
        half = (len(own) + 1) // 2
        train += [own[i] for i in sorted(order[:half])]
        held_out += [own[i] for i in sorted(order[half:])]
    return Split(train, held_out)


@dataclass(frozen=True)
class Inputs:
    plan: validation.Plan
    split: Split
    neutral: list[corpora.Passage]
    offset: int
    n_removed: dict[int, int]


def _recipe(store: Store, model: str, options: RetrievalOptions) -> tuple[int, dict[int, int]]:
    """The stored vectors' token offset and, per layer, how many neutral PCs they removed."""
    rows = store.query(
        "SELECT layer, max(token_offset) AS offset, max(n_removed) AS removed FROM "
        "emotion_vectors WHERE model = ? AND corpus = ? AND method = ? GROUP BY layer",
        [model, options.corpus, options.method],
    ).to_pylist()
    removed = {r["layer"]: int(r["removed"] or 0) for r in rows}
    return int(rows[0]["offset"] or 0), removed


def check_inputs(store: Store, options: RetrievalOptions) -> Inputs:
    if options.split not in SPLITS:
        raise SaefeaturesError(f"unknown split {options.split!r}; use one of {', '.join(SPLITS)}")
    plan = validation.plan(store, options)
    wanted = set(plan.emotions)
    passages = [p for p in _numbered(store, options.corpus) if p.emotion in wanted]
    split = split_passages(passages, options.split, options.seed)
    for half in (split.train, split.held_out):
        corpora.by_emotion(half, plan.emotions)  # every emotion needs passages in both halves
    offset, removed = _recipe(store, plan.spec.name, options)
    return Inputs(plan, split, _numbered(store, "neutral"), offset, removed)


def _numbered(store: Store, corpus: str) -> list[corpora.Passage]:
    """A corpus's passages with their ids in the store; a built-in corpus read from its
    file gets the ids it will be stored with (its file order)."""
    return [p if p.passage_id is not None else replace(p, passage_id=i)
            for i, p in enumerate(corpora.read_corpus(store, corpus))]  # fmt: skip


# -- the stage ---------------------------------------------------------------------------


def _split_vectors(readout: validation.Readout, inputs: Inputs, method: str) -> np.ndarray:
    """`[E, L, d]` contrast vectors of the training half, made as `saefeatures vectors` does."""
    n_train = len(inputs.split.train)
    labels = [p.emotion for p in inputs.split.train]
    raw = vectors.contrast_vectors(readout.residual[:n_train], labels, inputs.plan.emotions)
    if method != "denoised":
        return raw
    neutral = readout.residual[-len(inputs.neutral) :]
    bases = [vectors.neutral_basis(neutral[:, i], inputs.n_removed.get(layer, 0))
             for i, layer in enumerate(inputs.plan.layers)]  # fmt: skip
    return vectors.denoise(raw, bases)


@dataclass(frozen=True)
class Candidate:
    """A text every emotion ranks: where it comes from and what it is."""

    part: str  # training, held-out or neutral
    corpus: str
    passage_id: int
    emotion: str | None


def _candidates(inputs: Inputs, corpus: str) -> list[Candidate]:
    """Every text read, in read-out order: the training half, the held-out half, neutral."""
    parts = [("training", corpus, inputs.split.train), ("held-out", corpus, inputs.split.held_out),
             ("neutral", "neutral", inputs.neutral)]  # fmt: skip
    return [Candidate(part, source, p.passage_id, p.emotion)
            for part, source, passages in parts for p in passages]  # fmt: skip


@dataclass(frozen=True)
class Ranking:
    """Per emotion, which candidates it ranks (all but its own training passages) and which
    of them are hits (its own held-out passages); one null per candidate count."""

    eligible: np.ndarray  # [E, n] bool
    relevant: np.ndarray  # [E, n] bool
    nulls: dict[tuple[int, int], np.ndarray]  # (hits, candidates) -> null APs

    @classmethod
    def of(
        cls, candidates: list[Candidate], emotions: list[str], options: RetrievalOptions
    ) -> Ranking:
        eligible = np.array([[not (c.part == "training" and c.emotion == e) for c in candidates]
                             for e in emotions])  # fmt: skip
        relevant = np.array([[c.part == "held-out" and c.emotion == e for c in candidates]
                             for e in emotions])  # fmt: skip
        nulls = {}
        for keep, hits in zip(eligible, relevant, strict=True):
            key = (int(hits.sum()), int(keep.sum()))
            if key not in nulls:
                nulls[key] = shuffled_label_null(hits[keep], options.permutations, options.seed)
        return cls(eligible, relevant, nulls)


def _level_rows(
    scores: np.ndarray, ranking: Ranking, emotions: list[str], common: dict
) -> list[dict[str, Any]]:
    """Per emotion: precision@10, average precision, chance and shuffled-label p."""
    rows = []
    for e, emotion in enumerate(emotions):
        keep = ranking.eligible[e]
        ranked = ranked_relevance(scores[keep, e], ranking.relevant[e, keep])
        ap = float(average_precision(ranked))
        n_relevant = int(ranked.sum())
        null = ranking.nulls[n_relevant, len(ranked)]
        rows.append(
            {**common, "emotion": emotion, "n_relevant": n_relevant, "n_candidates": len(ranked),
             "precision_at_10": float(precision_at(ranked, PRECISION_AT)),
             "average_precision": ap, "chance": n_relevant / len(ranked),
             "p_value": float(validation.upper_tail_p(ap, null))}
        )  # fmt: skip
    return rows


def _top_rows(
    scores: np.ndarray, candidates: list[Candidate], ranking: Ranking, emotions: list[str],
    common: dict,
) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for e, emotion in enumerate(emotions):
        eligible = np.flatnonzero(ranking.eligible[e])
        order = eligible[np.argsort(-scores[eligible, e], kind="stable")][:TOP_PASSAGES]
        for rank, index in enumerate(order, start=1):
            c = candidates[index]
            rows.append(
                {**common, "emotion": emotion, "rank": rank, "part": c.part,
                 "source_corpus": c.corpus, "passage_id": c.passage_id,
                 "passage_emotion": c.emotion, "relevant": bool(ranking.relevant[e, index]),
                 "score": float(scores[index, e])}
            )  # fmt: skip
    return rows


def retrieve(store: Store, options: RetrievalOptions) -> dict[str, Any]:
    """Rank held-out and neutral passages for every emotion, at both levels, into the store."""
    inputs = check_inputs(store, options)
    plan = inputs.plan
    config = validation.run_config(plan, options)
    with store.run("validate retrieval", config, atomic=True) as run_id:
        for name in (options.corpus, "neutral"):
            corpora.ensure_builtin(store, run_id, name)
        model = models.load(plan.spec.name, dtype=options.dtype, device=options.device)
        sets = validation.feature_sets(plan, options)
        texts = [p.text for p in inputs.split.train + inputs.split.held_out + inputs.neutral]
        weights = validation.offset_weights(inputs.offset)
        readout = validation.read_out(model, texts, plan.layers, sets, weights, options.batch_size)
        if not readout.kept.all():
            raise SaefeaturesError(
                f"{int((~readout.kept).sum())} passages have no token past the vectors' offset "
                f"{inputs.offset}; make the vectors with a smaller `saefeatures vectors --offset`"
            )
        tables, summary = _score_all(run_id, inputs, options, readout, sets)
        store.replace_all(tables)
    return {"run_id": run_id, "model": plan.spec.name, **summary}


def _score_all(run_id, inputs, options, readout, sets) -> tuple[list, dict[str, Any]]:
    """Every level's rows, the top passages and the comparisons, as store replacements."""
    plan = inputs.plan
    candidates = _candidates(inputs, options.corpus)
    ranking = Ranking.of(candidates, plan.emotions, options)
    direction = validation.projections(
        readout.residual, _split_vectors(readout, inputs, options.method)
    )
    base = {"run_id": run_id, "model": plan.spec.name, "corpus": options.corpus,
            "split": options.split}  # fmt: skip
    levels = [({**base, "layer": layer, "level": "direction", "sae_id": None, "k": None},
               direction[:, i]) for i, layer in enumerate(plan.layers)]  # fmt: skip
    levels += [({**base, "layer": s.layer, "level": "features", "sae_id": s.sae_id, "k": s.k},
                scores) for s, scores in zip(sets, readout.features, strict=True)]  # fmt: skip
    results, tops = [], []
    for common, scores in levels:
        results += _level_rows(scores, ranking, plan.emotions, common)
        tops += _top_rows(scores, candidates, ranking, plan.emotions, common)
    comparisons = _comparisons(run_id, results, plan, options)
    where = {"model": plan.spec.name, "corpus": options.corpus, "split": options.split}
    tables = [
        ("retrieval_results", where, pa.Table.from_pylist(results)),
        ("retrieval_top_passages", where, pa.Table.from_pylist(tops)),
    ]
    if comparisons:
        tables.append(("comparisons", {"kind": KIND, "model": plan.spec.name},
                       pa.Table.from_pylist(comparisons)))  # fmt: skip
    return tables, {"results": results, "candidates": len(candidates)}


def _means(results: list[dict], level: str, layer: int) -> dict[str, float]:
    chosen = [r for r in results if r["level"] == level and r["layer"] == layer]
    return {
        "mean_average_precision": float(np.mean([r["average_precision"] for r in chosen])),
        "mean_precision_at_10": float(np.mean([r["precision_at_10"] for r in chosen])),
        "share_p_below_0.05": float(np.mean([r["p_value"] < 0.05 for r in chosen])),
    }


def _comparisons(run_id, results, plan, options) -> list[dict[str, Any]]:
    """At each SAE layer, the mean metrics of the direction against the features."""
    rows = []
    for row in plan.sae_rows:
        direction = _means(results, "direction", row["layer"])
        features = _means(results, "features", row["layer"])
        extra = {"corpus": options.corpus, "split": options.split, "sae_id": row["sae_id"],
                 "top_k": options.top_k, "emotions": len(plan.emotions),
                 "mean_chance": float(np.mean([r["chance"] for r in results]))}  # fmt: skip
        values = {metric: (direction[metric], features[metric]) for metric in direction}
        rows += validation.comparison_rows(
            run_id, KIND, plan.spec.name, row["layer"], values, extra
        )
    return rows


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level and layer: mean precision@10 and average precision against chance."""
    groups = sorted({(r["level"], r["layer"], r["sae_id"]) for r in results},
                    key=lambda g: (g[0], g[1]))  # fmt: skip
    summary = []
    for level, layer, sae_id in groups:
        means = _means(results, level, layer)
        chance = np.mean([r["chance"] for r in results if r["layer"] == layer])
        summary.append({"level": level, "layer": layer, "sae": sae_id or "",
                        "mean P@10": means["mean_precision_at_10"],
                        "MAP": means["mean_average_precision"], "chance AP": float(chance),
                        "p < 0.05": means["share_p_below_0.05"]})  # fmt: skip
    return summary
