"""Comparisons across levels and models, computed from the store only.

- Levels (per model and layer): the steering self effect of an emotion's direction
  against its top-k aligned features at the same push, and their specificity.
- Models (per pair): profiles by relative depth, so models of different depth line up:
  PC1-valence r of the geometry (how alike the two curves are, and where each peaks),
  the patching peak depth per condition, and the steering self effect of the direction.
- Circuits (per model, by relative depth): each circuit's faithfulness and completeness at
  its size against random node sets, and per SAE layer its share of the circuit's nodes and
  what patching the valence axis, the circuit's nodes or the whole layer there does.

Rows go to `comparisons`: for levels, `direction_value` and `feature_value` are the two
levels' values; for model pairs, `direction_value` is the first model's value and
`extra.other_value` the second's (the profile correlation has a single value); for
circuits, `feature_value` is the circuit's value, `direction_value` the valence axis's
patching effect, and `extra` the random baseline, the whole layer's effect and the
relative depth.
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
from saefeatures.circuits.stored import (
    INTERVENTIONS,
    StoredCircuit,
    at_circuit_size,
    in_condition,
    node_shares,
    read_circuit,
)
from saefeatures.errors import SaefeaturesError
from saefeatures.options import CompareOptions
from saefeatures.patching.conclusions import CONDITIONS
from saefeatures.store.database import Store

KINDS = ("levels", "models", "circuits")  # the comparisons rows this module writes
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
        "steering_results UNION ALL SELECT model FROM patching_results UNION ALL SELECT model FROM "
        "circuit_nodes) ORDER BY model"
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


def relative_depth(layer: int, layers: int) -> float:
    """Where a layer sits in its model, from 0 (the first block) to 1 (the last), as the
    geometry and the patching peaks place it."""
    return layer / max(layers - 1, 1)


@dataclass(frozen=True)
class CircuitLayer:
    """One SAE layer of a model's circuit for one condition, placed by relative depth: the
    circuit's nodes there, their share of its nodes, and the normalized effect of each
    direction-view patch there with its p against its null (None where not stored,
    undefined or without a null)."""

    model: str
    condition: str
    layer: int
    depth: float
    nodes: int
    share: float
    effects: dict[str, float | None]
    p_values: dict[str, float | None]


def _circuit_layers(store: Store, circuit: StoredCircuit) -> list[CircuitLayer]:
    depth = n_layers(store, circuit.model)
    found = {(r["condition"], r["layer"], r["intervention"]): r for r in circuit.directions}

    def column(condition: str, layer: int, name: str) -> dict[str, float | None]:
        return {
            intervention: (found.get((condition, layer, intervention)) or {}).get(name)
            for intervention in INTERVENTIONS
        }

    return [
        CircuitLayer(
            circuit.model,
            condition,
            layer,
            relative_depth(layer, depth),
            nodes,
            share,
            column(condition, layer, "normalized_effect"),
            column(condition, layer, "p_value"),
        )
        for condition in circuit.conditions
        for layer, (nodes, share) in node_shares(circuit, condition).items()
    ]


def _circuit_row(
    model: str,
    layer: int | None,
    metric: str,
    values: tuple[float | None, float | None],
    extra: dict[str, Any],
) -> dict[str, Any]:
    return {
        "kind": "circuits",
        "model": model,
        "other_model": None,
        "layer": layer,
        "metric": metric,
        "direction_value": values[0],
        "feature_value": values[1],
        "extra": json.dumps(extra),
    }


def _size_rows(circuit: StoredCircuit, condition: str) -> list[dict[str, Any]]:
    """Faithfulness and completeness of the circuit at its size: the circuit's value as
    `feature_value`, the random node sets' mean and sd in `extra`."""
    size = len(in_condition(circuit.nodes, condition))
    return [
        _circuit_row(
            circuit.model,
            None,
            f"circuit_{point.curve}@{condition},nodes={point.nodes}",
            (None, point.circuit),
            {
                "random": point.random,
                "random_sd": point.spread,
                "draws": point.draws,
                "circuit_nodes": size,
                "pairs": point.pairs,
            },
        )
        for point in at_circuit_size(circuit, condition)
    ]


def _layer_rows(at: CircuitLayer) -> list[dict[str, Any]]:
    """A circuit layer's node share (`feature_value`), and the valence axis's
    (`direction_value`) against the circuit nodes' (`feature_value`) patching effect, the
    whole layer's and the emotion subspace's in `extra`."""
    where = f"{at.condition},depth={at.depth:.2f}"
    return [
        _circuit_row(
            at.model,
            at.layer,
            f"circuit_node_share@{where}",
            (None, at.share),
            {"nodes": at.nodes, "rel_depth": at.depth},
        ),
        _circuit_row(
            at.model,
            at.layer,
            f"circuit_patch_effect@{where}",
            (at.effects["valence"], at.effects["circuit"]),
            {
                "layer": at.effects["layer"],
                "emotions": at.effects["emotions"],
                "valence_p": at.p_values["valence"],
                "emotions_p": at.p_values["emotions"],
                "circuit_p": at.p_values["circuit"],
                "rel_depth": at.depth,
            },
        ),
    ]


def circuit_rows(
    store: Store, names: Sequence[str]
) -> tuple[list[dict[str, Any]], list[CircuitLayer]]:
    """The circuits of the compared models side by side (none for a model without one),
    per condition: each circuit's faithfulness and completeness at its size, then the SAE
    layers of all of them by relative depth, so that models of different depth
    interleave; and those layers, for the figure."""
    circuits = [c for name in names if (c := read_circuit(store, name))]
    layers = sorted(
        (at for circuit in circuits for at in _circuit_layers(store, circuit)),
        key=lambda at: (CONDITIONS.index(at.condition), at.depth, at.model),
    )
    rows = []
    for condition in CONDITIONS:
        rows += [row for circuit in circuits for row in _size_rows(circuit, condition)]
        rows += [row for at in layers if at.condition == condition for row in _layer_rows(at)]
    return rows, layers


def _circuit_profiles(layers: list[CircuitLayer], out: Path) -> list[Path]:
    """Per condition, each model's node share and direction-view effects by relative depth."""
    drawn = []
    for condition in CONDITIONS:
        series: dict[str, tuple[list[float], list[float]]] = {}
        for model in dict.fromkeys(at.model for at in layers):
            mine = [at for at in layers if at.model == model and at.condition == condition]
            if not mine:
                continue
            depths = [at.depth for at in mine]
            series[f"{model}: circuit's node share"] = (depths, [at.share for at in mine])
            for name in ("valence", "circuit", "layer"):
                series[f"{model}: {name} patch"] = (
                    depths,
                    [np.nan if at.effects[name] is None else at.effects[name] for at in mine],
                )
        if series:
            drawn += plots.lines(
                series,
                f"Circuits by relative depth, {condition} news",
                ("relative depth", "share of the circuit's nodes / normalized effect"),
                out / "compare" / f"circuits-{condition}",
            )
    return drawn


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
    found, layers = circuit_rows(store, names)
    rows += found
    figures += _circuit_profiles(layers, out)
    if not rows:
        raise SaefeaturesError(
            "nothing to compare yet: steer at both levels (`saefeatures steer`), run two "
            "models (`saefeatures run --model NAME`) or find a circuit (`saefeatures circuit`)"
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
