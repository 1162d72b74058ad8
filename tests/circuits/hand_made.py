"""Circuit rows made by hand, shaped as the `circuit` stage writes them (db/schema.sql,
version 19), for the tests of what reads them back: figures, report and `compare`.

Per condition, eight nodes over two SAE layers ranked by |normalized IG effect| (one of
them negative), the first CIRCUIT_SIZE[condition] in the circuit; per-position and
attribution rows beside them that a reader of the circuit must skip; edges, one of them to
a node outside the circuit; curves at sizes 1, 2, 5 and 10 (so that one condition's
circuit size is a stored size and the other's is not); and the direction view.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from saefeatures.store.database import Store

GAP = 2.0  # every pair's clean - corrupted score, so effect = normalized effect x GAP
SIGN = {"good": 1.0, "bad": -1.0}
CIRCUIT_SIZE = {"good": 5, "bad": 4}
SIZES = (1, 2, 5, 10)
# (which of the two SAE layers, feature or None for the error node), largest effect first.
RANKED = [(0, 3), (1, None), (0, None), (1, 7), (0, 1), (1, 2), (0, 5), (1, 4)]
DESCRIBED = (0, 3, [" joy", " glad", "\n", " fun"])  # a node the `features` table names


def normalized(rank: int) -> float:
    """The rank-th node's normalized IG effect: decreasing in size, the fourth negative."""
    return (0.8 - 0.1 * rank) * (-1.0 if rank == 3 else 1.0)


def sae_id(model: str, layer: int) -> str:
    return f"{model}-L{layer}"


def insert_circuit(store: Store, run_id: str, model: str, layers: tuple[int, int]) -> None:
    """The four circuit tables' rows for `model` with SAEs at `layers`, and the `features`
    row of the described node."""
    rows: dict[str, list[dict[str, Any]]] = {
        "circuit_nodes": [],
        "circuit_edges": [],
        "circuit_curves": [],
        "circuit_directions": [],
    }
    common = {"run_id": run_id, "model": model}
    for condition, sign in SIGN.items():
        for rank, (at, feature) in enumerate(RANKED):
            node = {
                **common,
                "sae_id": sae_id(model, layers[at]),
                "layer": layers[at],
                "hook": f"blocks.{layers[at]}.hook_resid_post",
                "condition": condition,
                "node": "error" if feature is None else "feature",
                "feature": feature,
                "pairs": 6,
                "in_circuit": rank < CIRCUIT_SIZE[condition],
            }
            value = normalized(rank)
            for method, position, scale in (
                ("integrated_gradients", None, 1.0),
                ("attribution", None, 0.9),
                ("integrated_gradients", -1, 0.5),
            ):
                rows["circuit_nodes"].append(
                    {
                        **node,
                        "method": method,
                        "position": position,
                        "effect": value * scale * GAP * sign,
                        "normalized_effect": value * scale,
                    }
                )
            if rank < 2:
                rows["circuit_nodes"].append(
                    {
                        **node,
                        "method": "exact",
                        "position": None,
                        "effect": value * 1.1 * GAP * sign,
                        "normalized_effect": value * 1.1,
                    }
                )
        for (up, down), value in (((0, 1), 0.3), ((2, 3), -0.1), ((0, 5), 0.2)):
            upstream, downstream = RANKED[up], RANKED[down]
            rows["circuit_edges"].append(
                {
                    **common,
                    "condition": condition,
                    "upstream_sae_id": sae_id(model, layers[upstream[0]]),
                    "upstream_layer": layers[upstream[0]],
                    "upstream_feature": upstream[1],
                    "downstream_sae_id": sae_id(model, layers[downstream[0]]),
                    "downstream_layer": layers[downstream[0]],
                    "downstream_feature": downstream[1],
                    "effect": value * GAP * sign,
                    "normalized_effect": value,
                    "pairs": 6,
                }
            )
        for n in SIZES:
            kept = n / (n + 2)
            undefined = condition == "bad" and n == 2
            for curve, circuit, random in (
                ("faithfulness", kept, 0.02 * n),
                ("completeness", None if undefined else 1 - kept, 1 - 0.03 * n),
            ):
                rows["circuit_curves"] += [
                    {
                        **common,
                        "condition": condition,
                        "curve": curve,
                        "selection": "circuit",
                        "nodes": n,
                        "value": circuit,
                        "spread": None,
                        "draws": 1,
                        "pairs": 7,
                    },
                    {
                        **common,
                        "condition": condition,
                        "curve": curve,
                        "selection": "random",
                        "nodes": n,
                        "value": random,
                        "spread": 0.01 * n,
                        "draws": 10,
                        "pairs": 7,
                    },
                ]
        for at, layer in enumerate(layers):
            for intervention, value, dimensions in (
                ("valence", 0.3 + 0.2 * at, 1),
                ("emotions", 0.4 + 0.1 * at, 3),
                ("circuit", 0.6 - 0.2 * at, 2),
                ("layer", 1.0 - 0.1 * at, 8),
            ):
                rows["circuit_directions"].append(
                    {
                        **common,
                        "condition": condition,
                        "layer": layer,
                        "hook": f"blocks.{layer}.hook_resid_post",
                        "intervention": intervention,
                        "dimensions": dimensions,
                        "effect": value * GAP * sign,
                        "normalized_effect": value,
                        "pairs": 7,
                        **_null(intervention, at),
                    }
                )
    for table, chosen in rows.items():
        store.insert(table, pa.Table.from_pylist(chosen))
    at, feature, tokens = DESCRIBED
    store.insert(
        "features",
        {
            "run_id": [run_id],
            "sae_id": [sae_id(model, layers[at])],
            "feature": [feature],
            "density": [0.1],
            "promoted_tokens": [tokens],
        },
    )


def _null(intervention: str, at: int) -> dict[str, Any]:
    """The direction view's null columns: none for the whole layer, else 99 draws."""
    if intervention == "layer":
        return {"null_effect": None, "null_spread": None, "null_draws": 0, "p_value": None}
    return {"null_effect": 0.01, "null_spread": 0.02, "null_draws": 99, "p_value": 0.01 * (at + 1)}
