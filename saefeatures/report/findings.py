"""The report's headline: each claim with the null that could have rejected it, apart from
the numbers that only describe.

A claim is a finding when it passes its null at 5 %; a share of emotions passing a null
is a finding when it is larger than the null's own rate would give by chance (a binomial
test). Everything here reads the store's tables and views.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from saefeatures import compare, stats
from saefeatures.patching import patch
from saefeatures.report.page import fetch
from saefeatures.store.database import Store

FINDING_COLUMNS = ["model", "claim", "value", "null", "p", "finding"]
LEVEL = 0.05


def findings(store: Store, model: str) -> list[list[Any]]:
    """Every claim the store holds results for, for one model."""
    rows: list[list[Any]] = []
    for claim in (_geometry, _alignment, _retrieval, _quantity, _steering, _flips, _behaviour):
        rows += [[model, *row, bool(row[-1] < LEVEL)] for row in claim(store, model)]
    return rows


def _geometry(store: Store, model: str) -> list[list[Any]]:
    found = fetch(
        store,
        "SELECT corpus, emotion_set, layer, pearson_r, ci_low, ci_high, p_value FROM "
        "geometry_best WHERE model = ? AND method = 'denoised' ORDER BY corpus, emotion_set",
        [model],
    )
    return [
        [
            f"PC1 tracks valence ({r['corpus']}, {r['emotion_set']} emotions, best layer "
            f"{r['layer']})",
            f"r = {r['pearson_r']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]",
            "the largest r over all layers, ratings shuffled",
            r["p_value"],
        ]
        for r in found
    ]


def _share(passed: int, total: int, rate: float) -> tuple[str, float]:
    return f"{passed} of {total}", stats.binomial_upper_p(passed, total, rate)


def _alignment(store: Store, model: str) -> list[list[Any]]:
    found = fetch(
        store,
        "SELECT sae_id, layer, corpus, metric, sum(value)::INT AS passed, count(*) AS n "
        "FROM alignment_summary WHERE model = ? AND metric IN ('exceeds_shuffled_null', "
        "'omp_exceeds_shuffled') GROUP BY ALL ORDER BY ALL",
        [model],
    )
    what = {
        "exceeds_shuffled_null": (
            "emotions whose best decoder cosine beats shuffled-label contrasts",
            0.01,
        ),
        "omp_exceeds_shuffled": ("emotions whose OMP fit beats shuffled-label contrasts", 0.01),
    }
    rows = []
    for r in found:
        claim, rate = what[r["metric"]]
        value, p = _share(r["passed"], r["n"], rate)
        rows.append(
            [
                f"{claim} (layer {r['layer']}, {r['corpus']})",
                value,
                f"shuffled-label contrasts, {rate:.0%} pass by chance",
                p,
            ]
        )
    return rows


def _retrieval(store: Store, model: str) -> list[list[Any]]:
    found = fetch(
        store,
        "SELECT corpus, split, layer, level, count(*) FILTER (WHERE p_value < 0.05) AS passed, "
        "count(*) AS n FROM retrieval_results WHERE model = ? GROUP BY ALL ORDER BY ALL",
        [model],
    )
    rows = []
    for r in found:
        value, p = _share(r["passed"], r["n"], LEVEL)
        rows.append(
            [
                f"emotions retrieving their own unseen passages ({r['level']}, layer "
                f"{r['layer']}, {r['corpus']}, {r['split']} split)",
                value,
                "relevance labels shuffled, 5 % pass by chance",
                p,
            ]
        )
    return rows


def _quantity(store: Store, model: str) -> list[list[Any]]:
    found = fetch(
        store,
        "SELECT level, layer, emotion, mean_danger_rho, p_value FROM quantity_summary WHERE "
        "model = ? AND headline AND p_value IS NOT NULL ORDER BY level, emotion",
        [model],
    )
    return [
        [
            f"{r['emotion']} tracks danger, not the number ({r['level']}, layer {r['layer']})",
            f"mean danger rho = {r['mean_danger_rho']:+.2f}",
            "directions at random in the span of the emotion vectors",
            r["p_value"],
        ]
        for r in found
    ]


def _steering(store: Store, model: str) -> list[list[Any]]:
    """Does steering with an emotion raise its own word more than the others' words? At
    the smallest scale, every steering emotion against every target word."""
    cells = fetch(
        store,
        "SELECT layer, level, k, emotion, target, avg(value) AS value FROM steering_results s "
        "WHERE model = ? AND metric = 'delta_logprob' AND level IN ('direction', 'features') "
        "AND scale = (SELECT min(scale) FROM steering_results t WHERE t.model = s.model AND "
        "t.level = 'direction') GROUP BY ALL ORDER BY ALL",
        [model],
    )
    rows = []
    for key in dict.fromkeys((c["layer"], c["level"], c["k"]) for c in cells):
        mine = [c for c in cells if (c["layer"], c["level"], c["k"]) == key]
        emotions = sorted({c["emotion"] for c in mine})
        if len(emotions) < 3:
            continue
        grid = np.array(
            [
                [
                    next(c["value"] for c in mine if (c["emotion"], c["target"]) == (e, t))
                    for t in emotions
                ]
                for e in emotions
            ]
        )
        gap, p = stats.diagonal_p(grid)
        level = key[1] if key[2] is None else f"top-{key[2]} features"
        rows.append(
            [
                f"steering raises its own emotion's word most ({level}, layer {key[0]})",
                f"own - other = {gap:+.3f} log P",
                "target words permuted",
                p,
            ]
        )
    return rows


def _flips(store: Store, model: str) -> list[list[Any]]:
    """The flip test on the situations not used for choices: flips happen by chance about
    a quarter of the time (two signs)."""
    swept = fetch(
        store,
        "SELECT DISTINCT json_extract_string(extra, '$.score') AS score FROM patching_results "
        "WHERE model = ? AND level = 'resid'",
        [model],
    )
    rows = []
    for score in (r["score"] for r in swept):
        flips = patch.flip_test(store, model, compare.n_layers(store, model), score)
        if flips:
            value, p = _share(flips["flipped"], flips["n"], 0.25)
            rows.append(
                [
                    f"good news pushes up and bad news down ({score} score, layer "
                    f"{flips['layer']})",
                    value,
                    "two independent signs, 25 % by chance",
                    p,
                ]
            )
    return rows


def _behaviour(store: Store, model: str) -> list[list[Any]]:
    found = fetch(
        store,
        "SELECT level, emotion, scale, shift, shift_q FROM behaviour_summary WHERE model = ? "
        "AND shift_q IS NOT NULL ORDER BY shift_q LIMIT 3",
        [model],
    )
    return [
        [
            f"steering with {r['emotion']} ({r['level']}, scale {r['scale']:g}) moves P(unethical)",
            f"shift = {r['shift']:+.3f}",
            "signs of the per-scenario shifts flipped; q over every condition",
            r["shift_q"],
        ]
        for r in found
    ]
