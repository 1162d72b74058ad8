"""A feature's dashboard, read from the store alone: what it fires on and what it does.

A feature id and a cosine say nothing about what the feature reads. Its dashboard shows
the passages on which it fires most, token by token with its activation on each (from
`feature_activations` and `passage_tokens`, so no model is run), how its activations are
spread, the emotions it aligns with, and the tokens its decoder row promotes and
suppresses through the logit lens. The terminal view, the report and the Neuronpedia
export all read this one structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from saefeatures.errors import SaefeaturesError
from saefeatures.store.database import Store
from saefeatures.store.read import registered_sae

EXAMPLES = 10
BEFORE, AFTER = 12, 6  # tokens shown before and after an example's peak
BINS = 20
SHADE = (255, 140, 0)  # the colour of a token at the feature's peak, in every view
NAMED_LENS_VERSION = 18  # the schema version whose `features` names its logit-lens tokens


@dataclass(frozen=True)
class Example:
    """One passage the feature fires on, as a window of tokens around its peak."""

    corpus: str
    passage_id: int
    emotion: str | None  # the passage's emotion label; None for unlabelled text
    start: int  # the passage position of tokens[0]
    peak: int  # the index in `tokens` of the feature's largest activation
    tokens: list[str]
    values: list[float]  # the feature's activation on each token, 0 where it did not fire

    @property
    def max_value(self) -> float:
        return self.values[self.peak]


@dataclass(frozen=True)
class Histogram:
    """The feature's non-zero activations over every scanned token, in equal bins."""

    edges: list[float]  # len(counts) + 1 edges, from min(0, lowest) to the highest
    counts: list[int]


@dataclass(frozen=True)
class AlignedEmotion:
    """An emotion that ranks the feature among its top features by some method."""

    corpus: str
    emotion: str
    scores: dict[str, float]  # method (decoder_cosine, omp, mean_diff, auroc) -> score
    ranks: dict[str, int]  # method -> the feature's rank among the emotion's features
    heldout_auroc: float | None  # when the held-out test chose this feature for the emotion
    heldout_p: float | None


@dataclass(frozen=True)
class FeatureDashboard:
    sae_id: str
    model: str
    layer: int
    feature: int
    d_sae: int
    density: float | None  # share of scanned tokens it fires on
    max_activation: float | None
    mean_active: float | None  # mean activation where it fires
    activations: int  # non-zero activations stored, over every scanned corpus
    examples: list[Example]
    histogram: Histogram
    emotions: list[AlignedEmotion]
    promoted: list[str]  # tokens its decoder row promotes most (logit lens), as text
    promoted_logits: list[float] | None  # None in stores written before the logits were kept
    suppressed: list[str]
    suppressed_logits: list[float] | None


def visible(token: str) -> str:
    """A token as it can be shown inline: line breaks and tabs as symbols."""
    return token.replace("\r", "␍").replace("\n", "↵").replace("\t", "⇥")


def intensity(value: float, peak: float) -> float:
    """How strongly a token is shaded: its activation over the feature's peak, in [0, 1]."""
    return min(max(value / peak, 0.0), 1.0) if peak > 0 else 0.0


def dashboard(
    store: Store, sae_id: str, feature: int, examples: int = EXAMPLES
) -> FeatureDashboard:
    """One feature's dashboard; an unknown SAE or a feature out of range is an error."""
    sae = checked_sae(store, sae_id)
    if not 0 <= feature < sae["d_sae"]:
        raise SaefeaturesError(
            f"feature {feature} is out of range: SAE {sae_id} has {sae['d_sae']} features "
            f"(0 to {sae['d_sae'] - 1})"
        )
    return dashboards(store, sae_id, [feature], examples)[feature]


def checked_sae(store: Store, sae_id: str) -> dict:
    """The SAE's row, once its features have been described (by `saefeatures align`)."""
    if store.schema_version < NAMED_LENS_VERSION:
        raise SaefeaturesError(
            f"the store {store.path} has schema version {store.schema_version}; open it once "
            "with a command that writes (e.g. `saefeatures compare`) to migrate it"
        )
    sae = registered_sae(store, sae_id)
    if not store.query("SELECT 1 FROM features WHERE sae_id = ? LIMIT 1", [sae_id]).num_rows:
        raise SaefeaturesError(
            f"SAE {sae_id} has no feature statistics yet; run `saefeatures align --layer "
            f"{sae['layer']} --sae {sae_id}` first"
        )
    return sae


def dashboards(
    store: Store, sae_id: str, features: Sequence[int], examples: int = EXAMPLES
) -> dict[int, FeatureDashboard]:
    """The dashboards of several features of one SAE, each table read once for all."""
    if examples < 1:
        raise SaefeaturesError(f"examples must be at least 1, not {examples}")
    sae = checked_sae(store, sae_id)
    chosen = sorted({int(f) for f in features})
    stats = {
        row["feature"]: row
        for row in store.query(
            "SELECT * FROM features WHERE sae_id = ? AND list_contains(?::INTEGER[], feature)",
            [sae_id, chosen],
        ).to_pylist()
    }
    missing = [f for f in chosen if f not in stats]
    if missing:
        raise SaefeaturesError(
            f"SAE {sae_id} has no statistics for feature {missing[0]}; it has {sae['d_sae']} "
            f"features (0 to {sae['d_sae'] - 1})"
        )
    found = _examples(store, sae, chosen, examples)
    bins = _histograms(store, sae_id, chosen)
    aligned = _emotions(store, sae_id, chosen)
    return {
        f: FeatureDashboard(
            sae_id=sae_id,
            model=sae["model"],
            layer=sae["layer"],
            feature=f,
            d_sae=sae["d_sae"],
            density=stats[f]["density"],
            max_activation=stats[f]["max_activation"],
            mean_active=stats[f]["mean_active"],
            activations=sum(bins[f].counts),
            examples=found.get(f, []),
            histogram=bins[f],
            emotions=aligned.get(f, []),
            promoted=stats[f]["promoted_tokens"] or [],
            promoted_logits=stats[f]["promoted_logits"],
            suppressed=stats[f]["suppressed_tokens"] or [],
            suppressed_logits=stats[f]["suppressed_logits"],
        )
        for f in chosen
    }


# The feature's rows, read once: its top passages (by their peak activation) and the
# tokens around each peak with the feature's value on each, zero where it did not fire.
_EXAMPLES_SQL = """
WITH own AS MATERIALIZED (
    SELECT feature, corpus, passage_id, position, value FROM feature_activations
    WHERE sae_id = $sae AND list_contains($features::INTEGER[], feature)
), peaks AS (
    SELECT feature, corpus, passage_id, arg_max(position, value) AS peak, max(value) AS top
    FROM own GROUP BY feature, corpus, passage_id
    QUALIFY row_number() OVER (PARTITION BY feature ORDER BY max(value) DESC, corpus, passage_id)
        <= $examples
)
SELECT p.feature, p.corpus, p.passage_id, any_value(s.emotion) AS emotion,
       min(t.position) AS start, p.peak - min(t.position) AS peak,
       list(t.token ORDER BY t.position) AS tokens,
       list(coalesce(o.value, 0) ORDER BY t.position) AS "values"
FROM peaks p
JOIN passage_tokens t ON t.model = $model AND t.corpus = p.corpus
    AND t.passage_id = p.passage_id AND t.position BETWEEN p.peak - $before AND p.peak + $after
LEFT JOIN own o ON o.feature = p.feature AND o.corpus = p.corpus
    AND o.passage_id = p.passage_id AND o.position = t.position
LEFT JOIN passages s ON s.corpus = p.corpus AND s.passage_id = p.passage_id
GROUP BY p.feature, p.corpus, p.passage_id, p.peak, p.top
ORDER BY p.feature, p.top DESC, p.corpus, p.passage_id
"""


def _examples(
    store: Store, sae: dict, features: list[int], examples: int
) -> dict[int, list[Example]]:
    rows = store.query(
        _EXAMPLES_SQL,
        {
            "sae": sae["sae_id"],
            "features": features,
            "examples": examples,
            "model": sae["model"],
            "before": BEFORE,
            "after": AFTER,
        },
    ).to_pylist()
    found: dict[int, list[Example]] = {}
    for row in rows:
        feature = row.pop("feature")
        found.setdefault(feature, []).append(Example(**row))
    return found


_HISTOGRAM_SQL = """
WITH own AS MATERIALIZED (
    SELECT feature, value::DOUBLE AS value FROM feature_activations
    WHERE sae_id = $sae AND list_contains($features::INTEGER[], feature)
), ranges AS (
    SELECT feature, least(min(value), 0) AS low, greatest(max(value), 0) AS high
    FROM own GROUP BY feature
)
SELECT feature, low, high,
       least(floor((value - low) / (high - low) * $bins), $bins - 1)::INTEGER AS bin,
       count(*) AS n
FROM own JOIN ranges USING (feature)
GROUP BY ALL
"""


def _histograms(store: Store, sae_id: str, features: list[int]) -> dict[int, Histogram]:
    """Equal bins from min(0, lowest) to the highest activation; no bins if it never fired."""
    rows = store.query(
        _HISTOGRAM_SQL, {"sae": sae_id, "features": features, "bins": BINS}
    ).to_pylist()
    counts = {f: [0] * BINS for f in features}
    edges: dict[int, list[float]] = {}
    for row in rows:
        counts[row["feature"]][row["bin"]] = row["n"]
        low, width = row["low"], (row["high"] - row["low"]) / BINS
        edges[row["feature"]] = [low + i * width for i in range(BINS + 1)]
    return {
        f: Histogram(edges[f], counts[f]) if f in edges else Histogram([], []) for f in features
    }


def _emotions(store: Store, sae_id: str, features: list[int]) -> dict[int, list[AlignedEmotion]]:
    """Per feature, the emotions ranking it among their top features (by any method), and
    the held-out AUROC where the held-out test chose it; best decoder cosine first."""
    ranked = store.query(
        "SELECT feature, corpus, emotion, method, rank, score FROM alignments "
        "WHERE sae_id = ? AND list_contains(?::INTEGER[], feature)",
        [sae_id, features],
    ).to_pylist()
    heldout = store.query(
        "SELECT * FROM (SELECT corpus, emotion, "
        "CAST(any_value(value) FILTER (WHERE metric = 'heldout_feature') AS INTEGER) AS feature, "
        "any_value(value) FILTER (WHERE metric = 'heldout_feature_auroc') AS auroc, "
        "any_value(value) FILTER (WHERE metric = 'heldout_feature_auroc_p') AS p "
        "FROM alignment_summary WHERE sae_id = ? GROUP BY corpus, emotion) "
        "WHERE list_contains(?::INTEGER[], feature)",
        [sae_id, features],
    ).to_pylist()
    methods: dict[tuple, list[dict]] = {}
    for row in ranked:
        methods.setdefault((row["feature"], row["corpus"], row["emotion"]), []).append(row)
    tests = {(row["feature"], row["corpus"], row["emotion"]): row for row in heldout}
    found: dict[int, list[AlignedEmotion]] = {}
    for key in dict.fromkeys([*methods, *tests]):
        own, test = methods.get(key, []), tests.get(key, {})
        found.setdefault(key[0], []).append(
            AlignedEmotion(
                corpus=key[1],
                emotion=key[2],
                scores={r["method"]: r["score"] for r in own},
                ranks={r["method"]: r["rank"] for r in own},
                heldout_auroc=test.get("auroc"),
                heldout_p=test.get("p"),
            )
        )
    for items in found.values():
        items.sort(key=lambda a: (-abs(a.scores.get("decoder_cosine", 0.0)), a.corpus, a.emotion))
    return found
