"""The direction view's rows (`circuit_directions`): at each SAE layer, how much of the
pairs' score gap the valence axis, the emotion subspace and the circuit's nodes carry,
each patched alone on the evaluation pairs, and each against a null of its own size.

The null of a basis of rank r is `draws` uniformly random subspaces of rank r; the null
of the circuit's n nodes at a layer is `draws` random sets of n nodes with an effect
there. A draw's statistic is its mean effect over the pairs, like the observation's, and
the p-value is two-sided. The whole residual at the layer is the reference the others
are read against, and has no null.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from saefeatures import progress, stats
from saefeatures.circuits import curves, directions, nodes
from saefeatures.circuits.averages import pair_means
from saefeatures.circuits.graph import CircuitSae, Node
from saefeatures.circuits.stored import INTERVENTIONS
from saefeatures.models import LoadedModel
from saefeatures.patching.reply_scores import Score
from saefeatures.patching.sweeps import PreparedPair


@dataclass(frozen=True)
class Null:
    """The draws' mean effects summarised: their mean and standard deviation, and the
    share at least as far from 0 as the observation (None: no null drawn)."""

    effect: float | None
    spread: float | None
    draws: int
    p_value: float | None


def null_of(observed: float, drawn: np.ndarray) -> Null:
    """The null of a mean effect from the draws' effects [pairs, draws]."""
    if drawn.size == 0:
        return Null(None, None, 0, None)
    means = drawn.mean(axis=0)
    spread = float(means.std(ddof=1)) if len(means) > 1 else None
    return Null(float(means.mean()), spread, len(means), stats.two_sided_p(observed, means))


@dataclass(frozen=True)
class DirectionView:
    """What the direction view patches and against what: per SAE layer its named bases
    [d_model, r] (valence, emotions), the circuit's nodes, the candidate nodes the
    circuit's null draws from, and the number of draws of every null."""

    bases: dict[int, dict[str, np.ndarray]]
    circuit: list[Node]
    candidates: list[Node]
    draws: int
    seed: int


def direction_rows(
    model: LoadedModel,
    score: Score,
    saes: Sequence[CircuitSae],
    pairs: Sequence[PreparedPair],
    gaps: Sequence[float],
    view: DirectionView,
    label: str,
) -> list[dict[str, Any]]:
    """`circuit_directions` rows of every SAE layer."""
    rows: list[dict[str, Any]] = []
    if not pairs:
        return rows
    with progress.bar(f"{label}: direction view", len(pairs) * len(saes), "pairs") as shown:
        for site in saes:
            rows += _layer_rows(model, score, site, pairs, gaps, view, shown.advance)
    return rows


def _layer_rows(
    model: LoadedModel,
    score: Score,
    site: CircuitSae,
    pairs: Sequence[PreparedPair],
    gaps: Sequence[float],
    view: DirectionView,
    advance: Callable[[], Any],
) -> list[dict[str, Any]]:
    """One SAE layer's rows: every intervention and its null patched on every pair."""
    given = {
        name: torch.as_tensor(basis, dtype=torch.float32)
        for name, basis in view.bases.get(site.layer, {}).items()
    }
    patched = {**given, "layer": torch.eye(model.d_model)}
    drawn = {
        name: directions.random_bases(model.d_model, basis.shape[1], view.draws, view.seed)
        for name, basis in given.items()
    }
    here = [node for node in view.circuit if node.layer == site.layer]
    sets: list[Collection[Node]] = []
    if here:
        pool = [node for node in view.candidates if node.layer == site.layer]
        sets = [
            here,
            *curves.random_sets(pool, [len(here)], view.draws, view.seed).get(len(here), []),
        ]
    per_pair, null_effects = [], {name: [] for name in [*drawn, "circuit"]}
    for pair in pairs:
        bases = [*patched.values(), *(b for found in drawn.values() for b in found)]
        found = iter(directions.projection_effects(model, pair, score, site.hook, bases))
        effects = {name: next(found) for name in patched}
        for name, draws in drawn.items():
            null_effects[name].append([next(found) for _ in draws])
        if sets:
            effects["circuit"], *random = nodes.exact_effects(model, pair, score, [site], sets)
            null_effects["circuit"].append(random)
        per_pair.append(effects)
        advance()
    means = pair_means(per_pair, gaps)
    dimensions = {name: basis.shape[1] for name, basis in patched.items()} | {"circuit": len(here)}
    rows = []
    for name in INTERVENTIONS:
        if name not in means:
            continue
        null = null_of(
            means[name].effect, np.array(null_effects.get(name, [])).reshape(len(pairs), -1)
        )
        rows.append(
            {
                "layer": site.layer,
                "hook": site.hook,
                "intervention": name,
                "dimensions": dimensions[name],
                "effect": means[name].effect,
                "normalized_effect": means[name].normalized,
                "pairs": means[name].pairs,
                "null_effect": null.effect,
                "null_spread": null.spread,
                "null_draws": null.draws,
                "p_value": null.p_value,
            }
        )
    return rows
