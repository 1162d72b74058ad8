"""What `saefeatures circuit` prints: each condition's circuit in a few numbers (its size
and layers, its curves at its size beside the random sets', the estimates against exact
patches) and the direction view, each effect with its null's p-value."""

from __future__ import annotations

from typing import Any

from saefeatures.circuits.graph import CircuitSae, Node
from saefeatures.circuits.stored import INTERVENTIONS


def of_condition(
    saes: list[CircuitSae],
    circuit: list[Node],
    fits: dict[str, dict[str, float] | None],
    rows: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """The circuit's size and layers, its curves at its size beside the random sets', the
    estimates against exact patches, and the direction view (lists: it goes through JSON)."""
    at_size = {
        (r["curve"], r["selection"]): r["value"]
        for r in rows["circuit_curves"]
        if r["nodes"] == len(circuit)
    }
    directions_at = {}
    for r in rows["circuit_directions"]:
        directions_at.setdefault(r["layer"], {})[r["intervention"]] = [
            r["effect"],
            r["normalized_effect"],
            r["p_value"],
        ]
    return {
        "size": len(circuit),
        "layers": [
            [site.layer, sum(node.layer == site.layer for node in circuit)] for site in saes
        ],
        "curves": {
            curve: [at_size.get((curve, "circuit")), at_size.get((curve, "random"))]
            for curve in ("faithfulness", "completeness")
        },
        "attribution_vs_exact": fits["attribution"],
        "ig_vs_exact": fits["integrated_gradients"],
        "edges": len(rows["circuit_edges"]),
        "directions": sorted(directions_at.items()),
    }


def tables(summary: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The summary as printable tables: (title, columns, rows)."""
    found = summary["conditions"]
    circuits = [
        [
            s["condition"],
            f"{s['selection_pairs']} / {s['evaluation_pairs']}",
            s["size"],
            ", ".join(f"L{layer}: {n}" for layer, n in s["layers"]),
            _beside(*s["curves"]["faithfulness"]),
            _beside(*s["curves"]["completeness"]),
            _r(s["attribution_vs_exact"]),
            _r(s["ig_vs_exact"]),
            s["edges"],
        ]
        for s in found
    ]
    shown = [
        (
            "circuits (chosen on the selection pairs, scored on the evaluation pairs)",
            [
                "condition",
                "pairs (selection / evaluation)",
                "nodes",
                "nodes per layer",
                "faithfulness (random)",
                "completeness (random)",
                "attribution vs exact r",
                "IG vs exact r",
                "edges",
            ],
            circuits,
        )
    ]
    views = [
        [s["condition"], layer, *(_effect(effects.get(name)) for name in INTERVENTIONS)]
        for s in found
        for layer, effects in s["directions"]
    ]
    if views:
        shown.append(
            (
                "direction view on the evaluation pairs: effect (normalized) of patching, and "
                "its p against random subspaces or node sets of the same size",
                ["condition", "layer", "valence axis", "emotion subspace", "circuit", "layer"],
                views,
            )
        )
    return shown


def _beside(value: float | None, random: float | None) -> str:
    shown = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    return f"{shown(value)} ({shown(random)})"


def _r(fit: dict[str, float] | None) -> str:
    return "n/a" if fit is None else f"{fit['r']:.2f} ({fit['pairs']} pairs)"


def _effect(found: list[float | None] | None) -> str:
    if found is None:
        return "-"
    effect, normalized, p_value = found
    shown = f"{effect:+.3f} ({'n/a' if normalized is None else f'{normalized:+.2f}'})"
    return shown if p_value is None else f"{shown} p={p_value:.2g}"
