"""Retrieval on unseen text (`saefeatures validate retrieval`): does an emotion's vector,
built from one half of a corpus, find the emotion's passages in the other half?

The passages of every emotion of the stored vector set are split by passage or by topic
(seeded); `--emotions` only chooses the emotions scored. Contrast vectors are rebuilt from
the training half exactly as `saefeatures vectors` builds them (against the mean over the
vector set's emotions, from the same token offset, and for denoised vectors with as many
neutral principal components removed as the stored vectors had). Each emotion then ranks
the candidates, the held-out passages of every emotion and the corpus's neutral passages
(never a passage that made a vector), by projection on its direction, and at the feature
level by the summed activation of the SAE features that the training half's vector aligns
with best (top-k by decoder cosine, each signed by its cosine): both levels choose on the
training half only. Precision@10 and average precision score the ranking (tied scores in
every order alike); chance is the expected average precision of a random ranking, and the
shuffled-label null permutes which candidates count as the emotion's own.

The source study retrieved with vectors from its whole story set; we hold out half so that
the score is not on text the vector was made from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from saefeatures import models
from saefeatures.alignment import measures
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.options import RetrievalOptions
from saefeatures.sae import loading
from saefeatures.store.database import Store
from saefeatures.store.read import read_vectors
from saefeatures.validation import readouts
from saefeatures.vectors import extraction

TOP_PASSAGES = 10  # stored per emotion, layer and level
PRECISION_AT = 10
KIND = "validation-retrieval"


# -- the metrics -----------------------------------------------------------------------
#
# Tied scores have no order of their own (feature-level sums tie, often at 0, when no
# feature fires), so both metrics are their expected value over the orderings of tied
# candidates, each equally likely (McSherry and Najork, ECIR 2008): a ranking then does
# not depend on the order the candidates were read in.


@dataclass(frozen=True)
class Ties:
    """Candidates in order of falling score, cut into runs of equal scores."""

    order: np.ndarray  # candidate indices by falling score (within a run: any order)
    starts: np.ndarray  # each run's first position in `order`
    sizes: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray) -> Ties:
        order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
        ranked = np.asarray(scores, dtype=float)[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        return cls(order, starts, np.diff(np.r_[starts, len(order)]))

    def hits(self, relevant: np.ndarray) -> np.ndarray:
        """`[..., runs]`: how many relevant candidates each run holds (per row of `relevant`)."""
        ranked = np.asarray(relevant, dtype=float)[..., self.order]
        return np.add.reduceat(ranked, self.starts, axis=-1)


def precision_at(scores: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Expected share of relevant candidates among the first k (per row of `relevant`):
    a run of ties that the cut splits contributes its share of hits per place taken."""
    ties = Ties.of(scores)
    taken = np.clip(k - ties.starts, 0, ties.sizes)
    return (ties.hits(relevant) * taken / ties.sizes).sum(axis=-1) / k


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Expected mean, over the relevant candidates, of the precision at each one's rank
    (per row of `relevant`; ties in any order, each equally likely).

    A relevant candidate of a run of n ties holding r hits, after h hits and i candidates,
    stands at each place i + j (j = 1..n) with chance 1/n, with (j - 1)(r - 1)/(n - 1)
    of the run's other hits expected before it: its expected precision is the mean over j
    of (h + 1 + (j - 1)(r - 1)/(n - 1)) / (i + j).
    """
    ties = Ties.of(scores)
    run = np.repeat(np.arange(len(ties.starts)), ties.sizes)
    place = np.arange(1, len(run) + 1)
    before = (place - 1 - ties.starts[run]) / place  # (j - 1) / (i + j)
    inverse = np.add.reduceat(1 / place, ties.starts) / ties.sizes
    later = np.add.reduceat(before, ties.starts) / ties.sizes
    hits = ties.hits(relevant)
    earlier = np.cumsum(hits, axis=-1) - hits
    others = (hits - 1) / np.maximum(ties.sizes - 1, 1)
    total = (hits * ((earlier + 1) * inverse + others * later)).sum(axis=-1)
    return total / hits.sum(axis=-1)


def chance_average_precision(n_relevant: int, n_candidates: int) -> float:
    """The exact expected average precision of a random ranking: every score tied.

    (H + (R - 1)/(N - 1) (N - H)) / N for R hits among N candidates, H = 1 + 1/2 + ... +
    1/N; about twice R/N when R is small (0.028 for 6 of 412, not 0.015).
    """
    return float(average_precision(np.zeros(n_candidates), np.arange(n_candidates) < n_relevant))


def shuffled_label_null(relevant: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`[n, candidates]`: the relevance labels shuffled `n` times (seeded).

    Shuffled labels do not depend on the scores, so one null serves every emotion with
    the same number of hits and candidates, at every layer and level; scored with the
    scores' ties, its mean is the chance average precision.
    """
    return np.random.default_rng(seed).permuted(np.tile(relevant, (n, 1)), axis=1)


# -- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    train: list[catalog.Passage]
    held_out: list[catalog.Passage]


CORPUS_SPLITS = ("train", "heldout")


def resolve_split(passages: list[catalog.Passage], by: str) -> str:
    """`auto` is the corpus's own split where every passage carries one, else `passage`."""
    if by != "auto":
        return by
    own = all(p.meta.get("split") in CORPUS_SPLITS for p in passages)
    return "corpus" if passages and own else "passage"


def split_passages(passages: list[catalog.Passage], by: str, seed: int) -> Split:
    """The corpus's own train/heldout split, or half of each emotion's passages (or of the
    topics) held out, seeded."""
    rng = np.random.default_rng(seed)
    if by == "corpus":
        if not all(p.meta.get("split") in CORPUS_SPLITS for p in passages):
            raise SaefeaturesError(
                "--split corpus needs a `split` of train or heldout on every passage; this "
                "corpus has none: use --split passage"
            )
        return Split(
            [p for p in passages if p.meta["split"] == "train"],
            [p for p in passages if p.meta["split"] == "heldout"],
        )
    if by == "topic":
        topics = sorted({p.topic for p in passages if p.topic})
        if len(topics) < 2:
            raise SaefeaturesError(
                "--split topic needs passages with at least 2 topics; this corpus has "
                f"{len(topics)}: use --split passage"
            )
        held = set(rng.permutation(topics)[: len(topics) // 2])
        return Split(
            [p for p in passages if p.topic not in held], [p for p in passages if p.topic in held]
        )
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
    plan: readouts.Plan
    vector_emotions: list[str]  # the stored vector set's: the contrast baseline's
    split_by: str  # corpus, passage or topic: what `auto` resolved to
    split: Split
    neutral: list[catalog.Passage]
    offset: int
    n_removed: dict[int, int]

    def texts(self) -> list[str]:
        """Every text read, in read-out order: the training half, the held-out half, neutral."""
        return [p.text for p in self.split.train + self.split.held_out + self.neutral]


def _recipe(store: Store, model: str, options: RetrievalOptions) -> tuple[int, dict[int, int]]:
    """The stored vectors' token offset and, per layer, how many neutral PCs they removed."""
    rows = store.query(
        "SELECT layer, max(token_offset) AS offset, max(n_removed) AS removed FROM "
        "emotion_vectors WHERE model = ? AND corpus = ? AND method = ? GROUP BY layer",
        [model, options.corpus, options.method],
    ).to_pylist()
    removed = {r["layer"]: int(r["removed"] or 0) for r in rows}
    return int(rows[0]["offset"] or 0), removed


def check_inputs(
    store: Store, options: RetrievalOptions, model: LoadedModel | None = None
) -> Inputs:
    """The plan, the split of every vector emotion's passages, and every text reaching past
    the vectors' token offset (checked with the tokenizer), before anything runs."""
    plan = readouts.plan(store, options, aligned=False)
    emotions = read_vectors(store, plan.spec.name, options.corpus, options.method).emotions
    passages = [p for p in _numbered(store, options.corpus) if p.emotion in emotions]
    split_by = resolve_split(passages, options.split)
    split = split_passages(passages, split_by, options.seed)
    for half in (split.train, split.held_out):
        catalog.by_emotion(half, emotions)  # every emotion needs passages in both halves
    offset, removed = _recipe(store, plan.spec.name, options)
    neutral = _numbered(store, catalog.neutral_of(options.corpus))
    inputs = Inputs(plan, emotions, split_by, split, neutral, offset, removed)
    tokenizer = models.load_tokenizer(plan.spec.name, loaded=model)
    extraction.check_offset(tokenizer, offset, {"the passages": inputs.texts()}, every=True)
    return inputs


def _numbered(store: Store, corpus: str) -> list[catalog.Passage]:
    """A corpus's passages with their ids in the store; a built-in corpus read from its
    file gets the ids it will be stored with (its file order)."""
    return [
        p if p.passage_id is not None else replace(p, passage_id=i)
        for i, p in enumerate(catalog.read_corpus(store, corpus))
    ]


# -- the stage ---------------------------------------------------------------------------


def _split_vectors(readout: readouts.Readout, inputs: Inputs, method: str) -> np.ndarray:
    """`[E, L, d]` contrast vectors of the training half, made as `saefeatures vectors` does
    (against the mean over every emotion of the vector set), for the chosen emotions."""
    n_train = len(inputs.split.train)
    labels = [p.emotion for p in inputs.split.train]
    made = extraction.contrast_vectors(readout.residual[:n_train], labels, inputs.vector_emotions)
    if method == "denoised":
        neutral = readout.residual[-len(inputs.neutral) :]
        bases = [
            extraction.neutral_basis(neutral[:, i], inputs.n_removed.get(layer, 0))
            for i, layer in enumerate(inputs.plan.layers)
        ]
        made = extraction.denoise(made, bases)
    return made[[inputs.vector_emotions.index(e) for e in inputs.plan.emotions]]


@dataclass(frozen=True)
class Candidate:
    """A text every emotion ranks: where it comes from and what it is."""

    part: str  # training, held-out or neutral
    corpus: str
    passage_id: int
    emotion: str | None


def _candidates(inputs: Inputs, corpus: str) -> list[Candidate]:
    """Every text read, in read-out order: the training half, the held-out half, neutral."""
    parts = [
        ("training", corpus, inputs.split.train),
        ("held-out", corpus, inputs.split.held_out),
        ("neutral", catalog.neutral_of(corpus), inputs.neutral),
    ]
    return [
        Candidate(part, source, p.passage_id, p.emotion)
        for part, source, passages in parts
        for p in passages
    ]


@dataclass(frozen=True)
class Ranking:
    """Per emotion, which candidates it ranks (the held-out half and neutral text: no passage
    that made a vector, of any emotion) and which of them are hits (its own held-out
    passages); shuffled labels per candidate count."""

    eligible: np.ndarray  # [E, n] bool
    relevant: np.ndarray  # [E, n] bool
    shuffled: dict[tuple[int, int], np.ndarray]  # (hits, candidates) -> [draws, candidates]
    untied_nulls: dict[tuple[int, int], np.ndarray]  # the null APs of scores without ties
    tiebreak: np.ndarray  # [n]: a seeded order for listing tied top passages

    @classmethod
    def of(
        cls, candidates: list[Candidate], emotions: list[str], options: RetrievalOptions
    ) -> Ranking:
        eligible = np.array([[c.part != "training" for c in candidates] for _ in emotions])
        relevant = np.array(
            [[c.part == "held-out" and c.emotion == e for c in candidates] for e in emotions]
        )
        shuffled, untied = {}, {}
        for keep, hits in zip(eligible, relevant, strict=True):
            key = (int(hits.sum()), int(keep.sum()))
            if key not in shuffled:
                shuffled[key] = shuffled_label_null(hits[keep], options.permutations, options.seed)
                untied[key] = average_precision(-np.arange(key[1]), shuffled[key])
        tiebreak = np.random.default_rng(options.seed).permutation(len(candidates))
        return cls(eligible, relevant, shuffled, untied, tiebreak)

    def null(self, scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
        """The null APs of one emotion's eligible candidates: with their scores' ties."""
        key = (int(relevant.sum()), len(scores))
        if len(np.unique(scores)) == len(scores):
            return self.untied_nulls[key]
        return average_precision(scores, self.shuffled[key])


def _level_rows(
    scores: np.ndarray, ranking: Ranking, emotions: list[str], common: dict
) -> list[dict[str, Any]]:
    """Per emotion: precision@10, average precision, its chance value and shuffled-label p."""
    rows = []
    for e, emotion in enumerate(emotions):
        keep = ranking.eligible[e]
        mine, relevant = scores[keep, e], ranking.relevant[e, keep]
        ap = float(average_precision(mine, relevant))
        n_relevant = int(relevant.sum())
        rows.append(
            {
                **common,
                "emotion": emotion,
                "n_relevant": n_relevant,
                "n_candidates": len(mine),
                "precision_at_10": float(precision_at(mine, relevant, PRECISION_AT)),
                "average_precision": ap,
                "chance_average_precision": chance_average_precision(n_relevant, len(mine)),
                "p_value": float(readouts.upper_tail_p(ap, ranking.null(mine, relevant))),
            }
        )
    return rows


def _top_rows(
    scores: np.ndarray,
    candidates: list[Candidate],
    ranking: Ranking,
    emotions: list[str],
    common: dict,
) -> list[dict[str, Any]]:
    """Per emotion, its first candidates by falling score, ties in the seeded order."""
    rows = []
    for e, emotion in enumerate(emotions):
        eligible = np.flatnonzero(ranking.eligible[e])
        order = eligible[np.lexsort((ranking.tiebreak[eligible], -scores[eligible, e]))]
        for rank, index in enumerate(order[:TOP_PASSAGES], start=1):
            c = candidates[index]
            rows.append(
                {
                    **common,
                    "emotion": emotion,
                    "rank": rank,
                    "part": c.part,
                    "source_corpus": c.corpus,
                    "passage_id": c.passage_id,
                    "passage_emotion": c.emotion,
                    "relevant": bool(ranking.relevant[e, index]),
                    "score": float(scores[index, e]),
                }
            )
    return rows


@dataclass(frozen=True)
class Retrieved:
    """One retrieval run: per emotion, level and layer, its precision, average precision
    and null; and how many passages were ranked."""

    run_id: str
    model: str
    results: list[dict[str, Any]]
    candidates: int


def retrieve(
    store: Store, options: RetrievalOptions, model: LoadedModel | None = None
) -> Retrieved:
    """Rank held-out and neutral passages for every emotion, at the chosen levels, into the
    store."""
    inputs = check_inputs(store, options, model)
    options = replace(options, split=inputs.split_by)  # what `auto` chose, as stored
    plan = inputs.plan
    config = readouts.run_config(plan, options)
    with store.run("validate retrieval", config, atomic=True) as run_id:
        for name in (options.corpus, catalog.neutral_of(options.corpus)):
            catalog.ensure_builtin(store, run_id, name)
        model = models.load(
            plan.spec.name, dtype=options.dtype, device=options.device, loaded=model
        )
        saes = [
            (row["layer"], loading.read_saelens(Path(row["path"]), options.device))
            for row in plan.sae_rows
        ]
        weights = readouts.offset_weights(inputs.offset)
        readout = readouts.read_out(
            model, inputs.texts(), plan.layers, saes, weights, options.batch_size
        )
        tables, results, candidates = _score_all(run_id, inputs, options, readout, saes)
        store.replace_all(tables)
    return Retrieved(run_id, plan.spec.name, results, candidates)


def _training_features(
    plan: readouts.Plan, saes: list[tuple[int, Any]], split: np.ndarray, k: int
) -> list[readouts.FeatureSet]:
    """Each SAE's top-k features per emotion by decoder cosine with the training half's
    vectors: chosen on the passages that are not ranked, as the direction is."""
    sets = []
    for row, (layer, sae) in zip(plan.sae_rows, saes, strict=True):
        decoder = sae.W_dec.detach().float().cpu().numpy()
        vectors = split[:, plan.layers.index(layer)]
        chosen = {
            emotion: list(
                zip(*measures.top_by_abs(measures.decoder_cosines(v, decoder), k), strict=True)
            )
            for emotion, v in zip(plan.emotions, vectors, strict=True)
        }
        sets.append(readouts.with_features(row["sae_id"], layer, sae, chosen, k))
    return sets


def _score_all(run_id, inputs, options, readout, saes) -> tuple[list, list[dict[str, Any]], int]:
    """Every level's rows, the top passages and the comparisons, as store replacements;
    the rows; how many passages were ranked."""
    plan = inputs.plan
    split = _split_vectors(readout, inputs, options.method)
    sets = _training_features(plan, saes, split, options.top_k)
    candidates = _candidates(inputs, options.corpus)
    ranking = Ranking.of(candidates, plan.emotions, options)
    base = {
        "run_id": run_id,
        "model": plan.spec.name,
        "corpus": options.corpus,
        "split": options.split,
    }
    levels = []
    if plan.level != "features":
        direction = readouts.projections(readout.residual, split)
        levels += [
            (
                {**base, "layer": layer, "level": "direction", "sae_id": None, "k": None},
                direction[:, i],
            )
            for i, layer in enumerate(plan.layers)
        ]
    levels += [
        ({**base, "layer": s.layer, "level": "features", "sae_id": s.sae_id, "k": s.k}, s.read(f))
        for s, f in zip(sets, readout.latents, strict=True)
    ]
    results, tops = [], []
    for common, scores in levels:
        results += _level_rows(scores, ranking, plan.emotions, common)
        tops += _top_rows(scores, candidates, ranking, plan.emotions, common)
    where = {"model": plan.spec.name, "corpus": options.corpus, "split": options.split}
    tables = [
        ("retrieval_results", where, pa.Table.from_pylist(results)),
        ("retrieval_top_passages", where, pa.Table.from_pylist(tops)),
        *_comparisons(run_id, results, plan, options),
    ]
    return tables, results, len(candidates)


def _means(results: list[dict], level: str, layer: int) -> dict[str, float]:
    chosen = [r for r in results if r["level"] == level and r["layer"] == layer]
    return {
        "mean_average_precision": float(np.mean([r["average_precision"] for r in chosen])),
        "mean_precision_at_10": float(np.mean([r["precision_at_10"] for r in chosen])),
        "share_p_below_0.05": float(np.mean([r["p_value"] < 0.05 for r in chosen])),
    }


METRICS = ("mean_average_precision", "mean_precision_at_10", "share_p_below_0.05")  # _means'


def metric_name(metric: str, options: RetrievalOptions) -> str:
    """A `comparisons` metric of one corpus and split: each keeps its own rows."""
    return f"{metric} ({options.corpus}, {options.split} split)"


def _comparisons(run_id, results, plan, options) -> list[tuple[str, dict, pa.Table | None]]:
    """At each SAE layer, the mean metrics of the direction against the features, as
    replacements of this corpus and split's rows (none at one level: the old ones go)."""
    extra = {
        "corpus": options.corpus,
        "split": options.split,
        "top_k": options.top_k,
        "emotions": len(plan.emotions),
        "mean_chance_average_precision": float(
            np.mean([r["chance_average_precision"] for r in results])
        ),
    }
    rows = readouts.sae_layer_comparisons(
        run_id,
        KIND,
        plan,
        lambda level, layer: {
            metric_name(m, options): value for m, value in _means(results, level, layer).items()
        },
        extra,
    )
    names = [metric_name(metric, options) for metric in METRICS]
    return [
        (
            "comparisons",
            {"kind": KIND, "model": plan.spec.name, "metric": name},
            readouts.table_or_none([row for row in rows if row["metric"] == name]),
        )
        for name in names
    ]


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level and layer: mean precision@10 and average precision against chance."""
    groups = sorted(
        {(r["level"], r["layer"], r["sae_id"]) for r in results}, key=lambda g: (g[0], g[1])
    )
    summary = []
    for level, layer, sae_id in groups:
        means = _means(results, level, layer)
        chance = np.mean(
            [
                r["chance_average_precision"]
                for r in results
                if r["level"] == level and r["layer"] == layer
            ]
        )
        summary.append(
            {
                "level": level,
                "layer": layer,
                "sae": sae_id or "",
                "mean P@10": means["mean_precision_at_10"],
                "MAP": means["mean_average_precision"],
                "chance MAP": float(chance),
                "p < 0.05": means["share_p_below_0.05"],
            }
        )
    return summary
