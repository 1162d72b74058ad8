"""The circuit stage (`saefeatures circuit`): which SAE features carry good vs bad news,
and how they connect across the residual-stream SAE layers (Marks et al. 2024).

The pairs' situations are split in two halves drawn with `--seed`, a situation's good
and bad pairs on one side: the selection pairs choose the circuit, the evaluation pairs
score it, so that a circuit is never scored on the text that chose it. Per condition:

- node effects on every selection pair, by attribution patching and by integrated
  gradients; the circuit is the `--nodes` nodes of largest |mean normalized integrated-
  gradients effect|;
- the estimates checked on a few selection pairs against exact single-node patches of
  the circuit's top nodes and of as many random nodes with an effect;
- edges between the circuit's nodes at consecutive SAE layers, kept above
  `--edge-threshold`;
- faithfulness and completeness of the ranking's first n nodes against random node sets,
  mean-ablating with means taken on the selection pairs, scored on the evaluation pairs;
- the direction view at each SAE layer: the valence axis, the emotion subspace, the
  circuit's nodes there and the whole residual, each patched on the evaluation pairs,
  the first three against random subspaces or node sets of their size
  (`direction_view`).

Everything is computed first and written in one transaction (`circuit_nodes`,
`circuit_edges`, `circuit_curves`, `circuit_directions`, defined in db/schema.sql),
replacing the model's earlier circuit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise, product
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from saefeatures import models, progress
from saefeatures.circuits import (
    curves,
    direction_view,
    directions,
    edges,
    figures,
    nodes,
)
from saefeatures.circuits import summary as circuit_summary
from saefeatures.circuits.averages import PairMean, filled, pair_means
from saefeatures.circuits.graph import CircuitSae, Node, PairEffects
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.options import CircuitOptions
from saefeatures.patching import conclusions, reply_scores, sweeps
from saefeatures.patching.attribution import within_pair_correlation
from saefeatures.patching.conclusions import CONDITIONS, Pair
from saefeatures.patching.patch import encode_pair
from saefeatures.sae import loading
from saefeatures.store.database import Store
from saefeatures.store.read import checked_layers, read_vectors, residual_saes, vector_emotions
from saefeatures.vectors.axes import valence_axis

METHODS = nodes.METHODS
RANKED_BY = "integrated_gradients"
SIZES = (1, 2, 5, 10, 20, 50, 100, 200)  # circuit sizes of the curves, clipped to the ranking
VECTOR_METHOD = "denoised"  # the emotion vectors of the direction view
TABLES = ("circuit_nodes", "circuit_edges", "circuit_curves", "circuit_directions")


@dataclass(frozen=True)
class Circuit:
    """One `circuit` run: the summary `tables` prints, and the figures."""

    run_id: str
    model: str
    summary: dict[str, Any]
    figures: list[str]


def circuit(
    store: Store, out: Path, options: CircuitOptions, model: LoadedModel | None = None
) -> Circuit:
    """Check the input, find and score each condition's circuit, store it, draw it."""
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    sae_rows = chosen_saes(store, spec, options)
    pairs = conclusions.first_situations(conclusions.read_pairs(options.pairs), options.limit)
    selection, evaluation = split_situations(pairs, options.seed)
    bases = emotion_bases(store, spec.name, options.corpus, [row["layer"] for row in sae_rows])
    if len(sae_rows) == 1:
        progress.warn(
            f"one SAE layer ({sae_rows[0]['layer']}): the circuit has no edges, which join "
            "nodes of consecutive SAE layers; register SAEs at more layers for them"
        )
    config = {
        **asdict(options),
        "model": spec.name,
        "pairs": str(options.pairs or "shipped"),
        "saes": [row["sae_id"] for row in sae_rows],
        "selection_pairs": [pair.id for pair in selection],
        "evaluation_pairs": [pair.id for pair in evaluation],
    }
    with store.run("circuit", config, atomic=True) as run_id:
        model = models.load(spec.name, dtype=options.dtype, device=options.device, loaded=model)
        store.register_model(run_id, model.describe())
        score = reply_scores.make(model, options.score)
        saes = [
            CircuitSae(
                row["layer"],
                row["sae_id"],
                row["hook"],
                loading.read_saelens(Path(row["path"]), options.device),
            )
            for row in sae_rows
        ]
        scored = _score_pairs(model, score, pairs)
        found = [
            _find(
                _Inputs(model, score, saes, options),
                condition,
                [scored[pair.id] for pair in selection if pair.condition == condition],
                [scored[pair.id] for pair in evaluation if pair.condition == condition],
                bases,
            )
            for condition in CONDITIONS
        ]
        tagged = {
            table: [
                {"run_id": run_id, "model": spec.name, "condition": one.condition, **row}
                for one in found
                for row in one.rows[table]
            ]
            for table in TABLES
        }
        store.replace_all(
            [
                (table, {"model": spec.name}, pa.Table.from_pylist(rows) if rows else None)
                for table, rows in tagged.items()
            ]
        )
    summary = {"conditions": [one.summary for one in found if one.summary["selection_pairs"]]}
    drawn = figures.circuit_figures(store, spec.name, out)
    return Circuit(run_id, spec.name, summary, drawn)


# -- the checks before anything loads ----------------------------------------------------


def chosen_saes(
    store: Store, spec: models.ModelSpec, options: CircuitOptions
) -> list[dict[str, Any]]:
    """One residual-stream SAE per layer of `--layers` (default: every layer with one), by
    layer: a layer's only SAE, or the one `--sae` names where it has several."""
    found = residual_saes(store, spec.name)
    if not found:
        raise SaefeaturesError(
            f"no SAE for {spec.name} on the residual stream; train one with `saefeatures train "
            f"--model {spec.name} --layer L` or register one with `saefeatures load`"
        )
    layers = sorted(found) if options.layers is None else checked_layers(options.layers, spec)
    named = set(options.saes or ())
    chosen = []
    for layer in layers:
        if layer not in found:
            raise SaefeaturesError(
                f"no SAE for {spec.name} at layer {layer} (its residual-stream SAEs are at "
                f"layers {', '.join(map(str, found))}); pick among them with --layers"
            )
        picked = [row for row in found[layer] if row["sae_id"] in named]
        if not picked and len(found[layer]) == 1:
            picked = found[layer]
        if len(picked) != 1:
            ids = ", ".join(row["sae_id"] for row in found[layer])
            raise SaefeaturesError(f"layer {layer} has SAEs {ids}; name one of them in --sae")
        chosen += picked
    unused = sorted(named - {row["sae_id"] for row in chosen})
    if unused:
        raise SaefeaturesError(
            f"--sae {', '.join(unused)} is not a residual-stream SAE of {spec.name} at layers "
            f"{', '.join(map(str, layers))}; `saefeatures saes` lists the registered ones"
        )
    return chosen


def split_situations(pairs: Sequence[Pair], seed: int) -> tuple[list[Pair], list[Pair]]:
    """The selection pairs and the evaluation pairs: half of the situations (rounded up),
    drawn with `seed`, and the others; a pair without a situation is its own."""
    situations = list(dict.fromkeys(_situation(pair) for pair in pairs))
    if len(situations) < 2:
        raise SaefeaturesError(
            f"a circuit needs pairs of at least 2 situations (half choose it, half score it); "
            f"these pairs have {len(situations)}: give more pairs or a larger --limit"
        )
    order = np.random.default_rng(seed).permutation(len(situations))
    chosen = {situations[i] for i in order[: (len(situations) + 1) // 2]}
    return (
        [pair for pair in pairs if _situation(pair) in chosen],
        [pair for pair in pairs if _situation(pair) not in chosen],
    )


def _situation(pair: Pair) -> str:
    return pair.situation or pair.id


def emotion_bases(
    store: Store, model: str, corpus: str, layers: Sequence[int]
) -> dict[int, dict[str, np.ndarray]]:
    """Per SAE layer with emotion vectors, the valence axis [d_model, 1] and the emotion
    subspace [d_model, r] of the direction view; the layers without any are named in
    one warning line."""
    vectors = (
        read_vectors(store, model, corpus, VECTOR_METHOD)
        if vector_emotions(store, model, corpus, VECTOR_METHOD)
        else None
    )
    have = [layer for layer in layers if vectors is not None and layer in vectors.layers]
    missing = [layer for layer in layers if layer not in have]
    bases = {}
    for layer in have:
        at = vectors.vectors[:, vectors.layers.index(layer)]
        bases[layer] = {
            "valence": valence_axis(store, model, corpus, VECTOR_METHOD, layer)[:, None],
            "emotions": directions.emotion_subspace(at),
        }
    if missing:
        progress.warn(
            f"no emotion vectors of {model} on corpus {corpus} at layers "
            f"{', '.join(map(str, missing))}: the direction view there has the circuit and "
            f"the whole layer only (`saefeatures vectors --model {model} --corpus {corpus}` "
            "makes them)"
        )
    return bases


# -- one condition's circuit -------------------------------------------------------------


@dataclass
class _Scored:
    """A pair tokenized and split at its shared prefix, with its score gap (clean -
    corrupted): what every effect is normalized by."""

    pair: Pair
    prepared: sweeps.PreparedPair
    gap: float


@dataclass(frozen=True)
class _Inputs:
    """What every step of a condition's circuit runs on."""

    model: LoadedModel
    score: reply_scores.Score
    saes: list[CircuitSae]
    options: CircuitOptions


@dataclass
class _Estimates:
    """Each method's node effects on every selection pair, their sums over positions and
    the means of those; the nodes with an effect, by |mean normalized IG effect|."""

    effects: dict[str, list[PairEffects]]
    summed: dict[str, list[dict[Node, float]]]
    means: dict[str, dict[Node, PairMean]]
    ranking: list[Node]


@dataclass
class _Found:
    """One condition's rows of every table and its summary."""

    condition: str
    rows: dict[str, list[dict[str, Any]]]
    summary: dict[str, Any]


@torch.no_grad()
def _score_pairs(
    model: LoadedModel, score: reply_scores.Score, pairs: Sequence[Pair]
) -> dict[str, _Scored]:
    """Every pair tokenized, split and scored on both prompts, by id."""
    scored = {}
    for pair in progress.track(pairs, "scoring pairs"):
        clean_ids, corrupted_ids = encode_pair(model, pair)
        prepared = sweeps.prepare(model, clean_ids.tolist(), corrupted_ids.tolist())
        clean, corrupted = (
            float(sweeps.scored_forward(model, prepared.prefix(model), tokens, score, 1)[0])
            for tokens in (prepared.clean, prepared.corrupted)
        )
        scored[pair.id] = _Scored(pair, prepared, clean - corrupted)
    return scored


def _find(
    inputs: _Inputs,
    condition: str,
    selected: list[_Scored],
    evaluated: list[_Scored],
    bases: dict[int, dict[str, np.ndarray]],
) -> _Found:
    """The condition's circuit chosen on `selected`, checked, connected, and scored on
    `evaluated`."""
    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLES}
    summary: dict[str, Any] = {
        "condition": condition,
        "selection_pairs": len(selected),
        "evaluation_pairs": len(evaluated),
    }
    if not selected:
        return _Found(condition, rows, summary)
    rng = np.random.default_rng([inputs.options.seed, CONDITIONS.index(condition)])
    estimates = _estimate(inputs, selected, condition)
    circuit = estimates.ranking[: inputs.options.nodes]
    exact, fits = _exact_check(inputs, selected, estimates, circuit, rng, condition)
    rows["circuit_nodes"] = _node_rows(inputs.saes, estimates, circuit, exact, selected)
    rows["circuit_edges"] = _edge_rows(inputs, selected, circuit, condition)
    rows["circuit_curves"] = _curve_rows(inputs, selected, evaluated, estimates, rng, condition)
    view = direction_view.DirectionView(
        bases, circuit, estimates.ranking, inputs.options.null_directions, int(rng.integers(2**32))
    )
    rows["circuit_directions"] = direction_view.direction_rows(
        inputs.model,
        inputs.score,
        inputs.saes,
        [one.prepared for one in evaluated],
        [one.gap for one in evaluated],
        view,
        condition,
    )
    summary.update(circuit_summary.of_condition(inputs.saes, circuit, fits, rows))
    return _Found(condition, rows, summary)


def _estimate(inputs: _Inputs, selected: list[_Scored], condition: str) -> _Estimates:
    """Both methods' node effects on every selection pair, and the nodes' ranking."""
    effects: dict[str, list[PairEffects]] = {method: [] for method in METHODS}
    with progress.bar(f"{condition}: node effects", len(selected), "pairs") as shown:
        for one in selected:
            found = nodes.estimated_effects(
                inputs.model,
                one.prepared,
                inputs.score,
                inputs.saes,
                METHODS,
                steps=inputs.options.steps,
            )
            for method in METHODS:
                effects[method].append(found[method])
            shown.advance()
    summed = {method: [e.summed() for e in found] for method, found in effects.items()}
    every = list(dict.fromkeys(node for found in summed.values() for s in found for node in s))
    gaps = [one.gap for one in selected]
    means = {
        method: pair_means([filled(s, every) for s in found], gaps)
        for method, found in summed.items()
    }
    effective = [node for node in every if any(means[m][node].effect for m in METHODS)]
    ranking = sorted(effective, key=lambda node: -abs(means[RANKED_BY][node].normalized or 0.0))
    return _Estimates(effects, summed, means, ranking)


def _exact_check(
    inputs: _Inputs,
    selected: list[_Scored],
    estimates: _Estimates,
    circuit: list[Node],
    rng: np.random.Generator,
    condition: str,
) -> tuple[dict[Node, PairMean], dict[str, dict[str, float] | None]]:
    """The circuit's top nodes and as many random other nodes with an effect, each patched
    alone on the first selection pairs: their mean exact effects, and how well each
    method's estimate predicts them (median within-pair r)."""
    top = circuit[: inputs.options.exact_nodes]
    others = [node for node in estimates.ranking if node not in set(top)]
    drawn = rng.choice(len(others), size=min(len(top), len(others)), replace=False)
    checked = top + [others[i] for i in sorted(drawn)]
    pairs = selected[: inputs.options.exact_pairs]
    per_pair = []
    # within_pair_correlation reads each method's estimate from the "attribution" key
    estimated: dict[str, list[dict[str, Any]]] = {method: [] for method in METHODS}
    for index, one in enumerate(progress.track(pairs, f"{condition}: exact single-node patches")):
        effects = nodes.exact_effects(
            inputs.model, one.prepared, inputs.score, inputs.saes, [[node] for node in checked]
        )
        per_pair.append(dict(zip(checked, effects, strict=True)))
        for method in METHODS:
            estimate = estimates.summed[method][index]
            estimated[method] += [
                {"pair_id": one.pair.id, "attribution": estimate.get(node, 0.0), "exact_effect": e}
                for node, e in zip(checked, effects, strict=True)
            ]
    means = pair_means(per_pair, [one.gap for one in pairs])
    return means, {method: within_pair_correlation(rows) for method, rows in estimated.items()}


def _node_rows(
    saes: list[CircuitSae],
    estimates: _Estimates,
    circuit: list[Node],
    exact: dict[Node, PairMean],
    selected: list[_Scored],
) -> list[dict[str, Any]]:
    """`circuit_nodes` rows: every node with an effect, summed over positions, by both
    estimates; the circuit's nodes per position; the exactly patched nodes."""
    sites = {site.layer: site for site in saes}
    members = set(circuit)

    def row(node: Node, method: str, position: int | None, mean: PairMean) -> dict[str, Any]:
        site = sites[node.layer]
        return {
            "sae_id": site.sae_id,
            "layer": node.layer,
            "hook": site.hook,
            "node": "error" if node.is_error else "feature",
            "feature": node.feature,
            "position": position,
            "method": method,
            "effect": mean.effect,
            "normalized_effect": mean.normalized,
            "pairs": mean.pairs,
            "in_circuit": node in members,
        }

    gaps = [one.gap for one in selected]
    rows = [
        row(node, method, None, estimates.means[method][node])
        for method in METHODS
        for node in estimates.ranking
    ]
    for method in METHODS:
        positioned = [_at_positions(found, circuit) for found in estimates.effects[method]]
        rows += [
            row(node, method, position, mean)
            for (node, position), mean in pair_means(positioned, gaps).items()
        ]
    return rows + [row(node, "exact", None, mean) for node, mean in exact.items()]


def _at_positions(effects: PairEffects, chosen: list[Node]) -> dict[tuple[Node, int], float]:
    """One pair's effects of the chosen nodes at each of its positions (from the end)."""
    found = {}
    for index, position in enumerate(effects.positions):
        for node in chosen:
            at = effects.layers[node.layer]
            value = at.error[index] if node.is_error else at.features[index, node.feature]
            found[(node, position)] = float(value)
    return found


def _edge_rows(
    inputs: _Inputs, selected: list[_Scored], circuit: list[Node], condition: str
) -> list[dict[str, Any]]:
    """`circuit_edges` rows: the circuit's edges between consecutive SAE layers, mean over
    the first `--edge-pairs` selection pairs, those above the threshold."""
    pairs = selected[: inputs.options.edge_pairs]
    sites = sorted(inputs.saes, key=lambda site: site.layer)
    rows = []
    with progress.bar(f"{condition}: edges", len(pairs) * (len(sites) - 1), "pairs") as shown:
        for up, down in pairwise(sites):
            upstream = [node for node in circuit if node.layer == up.layer]
            downstream = [node for node in circuit if node.layer == down.layer]
            if not (upstream and downstream):
                shown.advance(len(pairs))
                continue
            per_pair = []
            for one in pairs:
                found = edges.edge_effects(
                    inputs.model, one.prepared, inputs.score, inputs.saes, upstream, downstream
                )
                per_pair.append(filled(found, product(upstream, downstream)))
                shown.advance()
            means = pair_means(per_pair, [one.gap for one in pairs])
            rows += [
                {
                    "upstream_sae_id": up.sae_id,
                    "upstream_layer": up.layer,
                    "upstream_feature": source.feature,
                    "downstream_sae_id": down.sae_id,
                    "downstream_layer": down.layer,
                    "downstream_feature": target.feature,
                    "effect": mean.effect,
                    "normalized_effect": mean.normalized,
                    "pairs": mean.pairs,
                }
                for (source, target), mean in means.items()
                if mean.normalized is not None
                and abs(mean.normalized) >= inputs.options.edge_threshold
            ]
    return rows


def _curve_rows(
    inputs: _Inputs,
    selected: list[_Scored],
    evaluated: list[_Scored],
    estimates: _Estimates,
    rng: np.random.Generator,
    condition: str,
) -> list[dict[str, Any]]:
    """`circuit_curves` rows: the ranking's first n nodes and random sets of n, with
    means from the selection pairs, scored on the evaluation pairs."""
    ranking = estimates.ranking
    if not evaluated or not ranking:
        return []
    progress.say(f"  {condition}: faithfulness and completeness curves")
    means = curves.mean_values(inputs.model, [one.prepared for one in selected], inputs.saes)
    sizes = sorted({*SIZES, inputs.options.nodes})  # clipped to the ranking by `curves`
    points = curves.curves(
        inputs.model,
        [one.prepared for one in evaluated],
        inputs.score,
        inputs.saes,
        means,
        ranking,
        sizes,
        ranking,
        inputs.options.draws,
        int(rng.integers(2**32)),
    )
    return [asdict(point) for point in points]
