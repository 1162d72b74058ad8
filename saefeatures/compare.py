"""Comparisons across levels and models, computed from the store only.

- Levels (per model and layer): the steering self effect of an emotion's direction
  against its top-k aligned features at the same push, and their specificity.
- Models (per pair): profiles by relative depth, so models of different depth line up:
  PC1-valence r of the geometry (how alike the two curves are, and where each peaks),
  the patching peak depth per condition, and the steering self effect of the direction.

Rows go to `comparisons`: for levels, `direction_value` and `feature_value` are the two
levels' values; for model pairs, `direction_value` is the first model's value and
`extra.other_value` the second's (the profile correlation has a single value).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from saefeatures import models, plots
from saefeatures.errors import SaefeaturesError
from saefeatures.options import CompareOptions
from saefeatures.store.database import Store

KINDS = ("levels", "models")  # the comparisons rows this module writes
COLUMNS = (
    "kind",
    "model",
    "other_model",
    "layer",
    "metric",
    "direction_value",
    "feature_value",
    "extra",
)
DEPTHS = np.linspace(0, 1, 21)  # the common grid that depth profiles are resampled onto


def _model_names(store: Store, chosen: Sequence[str] | None) -> list[str]:
    stored = store.query(
        "SELECT DISTINCT model FROM (SELECT model FROM geometry UNION ALL SELECT model FROM "
        "steering_results UNION ALL SELECT model FROM patching_results) ORDER BY model"
    )["model"].to_pylist()
    if chosen is None:
        return stored
    names = [models.resolve(name).name for name in chosen]
    missing = [name for name in names if name not in stored]
    if missing:
        raise SaefeaturesError(
            f"no results for {', '.join(missing)} in the store (it has: "
            f"{', '.join(stored) or 'none'}); run `saefeatures run --model NAME` first"
        )
    return names


def level_rows(store: Store, model: str) -> list[dict[str, Any]]:
    """Direction vs top-k features: mean self effect and specificity per layer, k, scale."""
    words = store.query(
        "SELECT layer, level, k, scale, self_effect AS own, other_effect AS other "
        "FROM steering_effects WHERE model = ? ORDER BY ALL",
        [model],
    ).to_pylist()
    direction = {(r["layer"], r["scale"]): r for r in words if r["level"] == "direction"}
    rows = []
    for r in words:
        base = direction.get((r["layer"], r["scale"]))
        if r["level"] != "features" or base is None:
            continue
        for metric, pick in (
            ("self_effect", lambda x: x["own"]),
            ("specificity", lambda x: x["own"] - x["other"]),
        ):
            rows.append(
                {
                    "kind": "levels",
                    "model": model,
                    "other_model": None,
                    "layer": r["layer"],
                    "metric": f"steering_{metric}@k={r['k']},scale={r['scale']:g}",
                    "direction_value": pick(base),
                    "feature_value": pick(r),
                    "extra": None,
                }
            )
    return rows + _faithfulness_rows(store, model)


def _faithfulness_rows(store: Store, model: str) -> list[dict[str, Any]]:
    """Patching at a layer: the whole residual's normalized effect (direction_value) against
    that of its top-k features by attribution (feature_value), per condition and k."""
    table = store.query(
        "SELECT layer, condition, k, avg(layer_effect / gap) AS whole, avg(effect / gap) AS top "
        "FROM patching_faithfulness WHERE model = ? AND gap <> 0 GROUP BY ALL ORDER BY ALL",
        [model],
    ).to_pylist()
    return [
        {
            "kind": "levels",
            "model": model,
            "other_model": None,
            "layer": r["layer"],
            "metric": f"patching_effect@{r['condition']},k={r['k']}",
            "direction_value": r["whole"],
            "feature_value": r["top"],
            "extra": None,
        }
        for r in table
    ]


def depth_profile(store: Store, model: str, corpus: str) -> tuple[np.ndarray, np.ndarray] | None:
    """PC1-valence r of the denoised vectors by relative depth, or None without geometry."""
    table = store.query(
        "SELECT rel_depth, pearson_r FROM geometry WHERE model = ? AND corpus = ? "
        "AND method = 'denoised' AND component = 'PC1' AND emotion_set = 'all' "
        "ORDER BY rel_depth",
        [model, corpus],
    )
    if table.num_rows < 2:
        return None
    return np.asarray(table["rel_depth"]), np.asarray(table["pearson_r"])


def patching_peaks(store: Store, model: str) -> dict[str, float]:
    """Mean relative depth of each pair's peak residual patch over the positions where its
    prompts differ, per condition (`patching_peaks`)."""
    rows = store.query(
        "SELECT condition, avg(peak_depth) AS depth FROM patching_peaks WHERE model = ? "
        "GROUP BY condition",
        [model],
    ).to_pylist()
    return {row["condition"]: row["depth"] for row in rows}


def n_layers(store: Store, model: str) -> int:
    """The model's depth as registered in the store, else from its spec."""
    registered = store.query("SELECT n_layers FROM models WHERE model = ?", [model])
    if registered.num_rows:
        return registered["n_layers"][0].as_py()
    return models.shape_of(models.resolve(model))["n_layers"]


def steering_self_effect(store: Store, model: str) -> float | None:
    """The direction's mean self effect at the smallest scale used (the least distorting),
    over the layers steered (`steering_self_effect`)."""
    return store.query(
        "SELECT avg(self_effect) AS own FROM steering_self_effect WHERE model = ?", [model]
    )["own"][0].as_py()


def model_rows(store: Store, a: str, b: str, corpus: str) -> tuple[list[dict], dict]:
    """One model pair: the values side by side, and the resampled profiles for a figure.
    The profiles are drawn, not correlated: neighbouring layers are far from independent,
    so a correlation over interpolated depths would claim more than they show."""
    rows, profiles = [], {}

    def add(metric: str, first: float | None, second: float | None) -> None:
        if first is not None and second is not None:
            rows.append(
                {
                    "kind": "models",
                    "model": a,
                    "other_model": b,
                    "layer": None,
                    "metric": metric,
                    "direction_value": float(first),
                    "feature_value": None,
                    "extra": json.dumps({"other_value": float(second)}),
                }
            )

    found = {name: depth_profile(store, name, corpus) for name in (a, b)}
    if all(profile is not None for profile in found.values()):
        profiles = {name: np.interp(DEPTHS, *found[name]) for name in (a, b)}
        best = {name: int(np.argmax(found[name][1])) for name in (a, b)}
        for index, metric in ((0, "best_depth"), (1, "best_r")):
            add(
                f"pc1_valence_{metric} ({corpus})",
                found[a][index][best[a]],
                found[b][index][best[b]],
            )
    peaks = {name: patching_peaks(store, name) for name in (a, b)}
    for condition in sorted(set(peaks[a]) & set(peaks[b])):
        add(f"patching_peak_depth ({condition})", peaks[a][condition], peaks[b][condition])
    add(
        "steering_self_effect (direction, smallest scale)",
        steering_self_effect(store, a),
        steering_self_effect(store, b),
    )
    return rows, profiles


@dataclass(frozen=True)
class Compared:
    """One `compare` run: its `comparisons` rows and the profile figures."""

    run_id: str
    rows: list[dict[str, Any]]
    figures: list[str]


def compare(store: Store, out: Path, options: CompareOptions) -> Compared:
    """Every comparison the store allows; write them to `comparisons` and draw the profiles."""
    names = _model_names(store, options.models)
    if not names:
        raise SaefeaturesError("the store has no model results yet; run `saefeatures run` first")
    rows, figures = [], []
    for name in names:
        rows += level_rows(store, name)
    for a, b in combinations(names, 2):
        pair_rows, profiles = model_rows(store, a, b, options.corpus)
        rows += pair_rows
        if profiles:
            figures += plots.lines(
                {name: (DEPTHS, profile) for name, profile in profiles.items()},
                f"PC1-valence r by depth ({options.corpus})",
                ("relative depth", "Pearson r"),
                out / "compare" / f"profile-{a}-{b}",
            )
    if not rows:
        raise SaefeaturesError(
            "nothing to compare yet: steer at both levels (`saefeatures steer`) or run two "
            "models (`saefeatures run --model NAME`)"
        )
    with store.run("compare", {"models": names, "corpus": options.corpus}, atomic=True) as run_id:
        # Only the kinds compare writes: the validation experiments' rows stay.
        by_part: dict[tuple[str, str], list[dict]] = {
            (name, kind): [] for name in {row["model"] for row in rows} for kind in KINDS
        }
        for row in rows:
            by_part[row["model"], row["kind"]].append({"run_id": run_id, **row})
        store.replace_all(
            [
                (
                    "comparisons",
                    {"model": name, "kind": kind},
                    pa.Table.from_pylist(chosen) if chosen else None,
                )
                for (name, kind), chosen in by_part.items()
            ]
        )
    return Compared(run_id, rows, [str(path) for path in figures])
