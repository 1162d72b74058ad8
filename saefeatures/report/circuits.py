"""The report's circuit section, for the models the `circuit` stage ran on: the circuit's
figures, a plain reading of how much of the score it carries against random node sets
and of where the valence axis acts against where the circuit does, and its nodes."""

from __future__ import annotations

import html
from typing import Any

from saefeatures.circuits.figures import interactive_figures
from saefeatures.circuits.stored import (
    CurveAtSize,
    StoredCircuit,
    at_circuit_size,
    circuit_models,
    in_condition,
    node_shares,
    read_circuit,
)
from saefeatures.report.page import Section
from saefeatures.store.database import Store

NODE_COLUMNS = [
    "condition",
    "layer",
    "feature",
    "label",
    "normalized IG effect",
    "IG effect",
    "normalized exact effect",
    "pairs",
    "run_id",
]
UNDEFINED = "undefined (ablating every node leaves the mean score unchanged)"
ABLATIONS = {
    "faithfulness": "kept and every other node mean-ablated",
    "completeness": "mean-ablated and every other node kept",
}


def circuits(store: Store) -> Section | None:
    """The section, or None (left out of the report) when no model has circuit rows."""
    found = [c for model in circuit_models(store) if (c := read_circuit(store, model))]
    if not found:
        return None
    section = Section("circuits", "Feature circuits")
    section.text(
        "A circuit (after Marks et al. 2024, Sparse Feature Circuits) is the set of SAE "
        "features and SAE error nodes, at the residual-stream SAE layers, with the largest "
        "integrated-gradients effect on the pair score: the change from giving a node its "
        "clean value in the corrupted run, over the pair's clean - corrupted score gap "
        "(normalized), mean over the selection pairs. Faithfulness and completeness are "
        "scored on the other pairs (evaluation), every ablated node taking its mean value; "
        "their baseline is random node sets of the same size drawn among the nodes whose "
        "activation differs between the prompts. The exact effect patches a node alone, "
        "for the nodes that were checked."
    )
    for circuit in found:
        section.html(f"<h3>{html.escape(circuit.model)}</h3>")
        for figure in interactive_figures(circuit):
            section.figure(figure)
        for condition in circuit.conditions:
            section.text(html.escape(reading(circuit, condition)))
        section.table(NODE_COLUMNS, [_node_row(node) for node in circuit.nodes])
    return section


def reading(circuit: StoredCircuit, condition: str) -> str:
    """What the circuit of one condition does, in words, with the store's numbers."""
    size = len(in_condition(circuit.nodes, condition))
    shares = node_shares(circuit, condition)
    parts = [
        f"{condition} news: the circuit has {size} nodes ("
        + ", ".join(f"layer {layer}: {count}" for layer, (count, _) in shares.items())
        + ")."
    ]
    parts += [_curve_sentence(point, size) for point in at_circuit_size(circuit, condition)]
    parts += _direction_sentences(circuit, condition)
    return " ".join(parts)


def _baseline(point: CurveAtSize) -> str:
    if point.random is None:
        return "no random baseline at that size"
    spread = "" if point.spread is None else f" ± {point.spread:.2f}"
    return (
        f"random sets of {point.nodes} nodes: {point.random:.2f}{spread} over {point.draws} draws"
    )


def _curve_sentence(point: CurveAtSize, size: int) -> str:
    kept = f"its {point.nodes} largest nodes" if point.nodes < size else f"its {point.nodes} nodes"
    if point.circuit is None:
        outcome = f"the {point.curve} is {UNDEFINED}"
    elif point.curve == "faithfulness":
        outcome = (
            f"the model keeps {point.circuit:.2f} of the score it has over the fully ablated model"
        )
    else:
        outcome = f"{point.circuit:.2f} of that score remains"
    return (
        f"With {kept} {ABLATIONS[point.curve]}, {outcome} ({_baseline(point)}; "
        f"{point.pairs} evaluation pairs)."
    )


def _direction_sentences(circuit: StoredCircuit, condition: str) -> list[str]:
    """Where each part of the residual, patched alone, moves the score furthest toward the
    clean prompt's, beside the whole residual's effect at that layer."""
    rows = [
        r for r in in_condition(circuit.directions, condition) if r["normalized_effect"] is not None
    ]
    whole = {r["layer"]: r["normalized_effect"] for r in rows if r["intervention"] == "layer"}
    said = []
    for intervention, what in (
        ("valence", "the valence axis"),
        ("emotions", "the emotion subspace"),
        ("circuit", "the circuit's nodes"),
    ):
        mine = [r for r in rows if r["intervention"] == intervention]
        if not mine:
            continue
        best = max(mine, key=lambda r: r["normalized_effect"])
        residual = whole.get(best["layer"])
        context = "" if residual is None else f"; the whole residual there: {residual:.2f}"
        said.append(
            f"{what}, layer {best['layer']} ({best['normalized_effect']:.2f} of the gap"
            f"{_against_null(best)}{context})"
        )
    if not said:
        return []
    return [
        "Patched alone at one SAE layer, each moves the score furthest toward the clean "
        f"prompt's at: {'; '.join(said)}."
    ]


def _against_null(row: dict[str, Any]) -> str:
    """The p-value of a direction-view row against its null, where it has one."""
    if not row.get("null_draws"):
        return ""
    drawn = (
        f"random sets of {row['dimensions']} nodes"
        if row["intervention"] == "circuit"
        else f"random subspaces of rank {row['dimensions']}"
    )
    return f", p = {row['p_value']:.2g} against {row['null_draws']} {drawn}"


def _node_row(node: dict[str, Any]) -> list[Any]:
    return [
        node["condition"],
        node["layer"],
        node["feature"],
        node["label"],
        node["normalized_effect"],
        node["effect"],
        node["exact_normalized_effect"],
        node["pairs"],
        node["run_id"],
    ]
