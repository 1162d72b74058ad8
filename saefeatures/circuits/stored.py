"""A model's circuit as the `circuit` stage stored it, read back for figures, the report
and `compare`, which see the store only.

The circuit is the in-circuit nodes' integrated-gradients rows summed over positions;
a feature node is named by the tokens its decoder row promotes (`features`), where the
store describes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saefeatures.features.dashboard import visible
from saefeatures.patching.conclusions import CONDITIONS
from saefeatures.store.database import Store

CIRCUITS_VERSION = 19  # the schema version that holds the circuit tables
LABEL_TOKENS = 3  # promoted tokens named in a feature node's label
# What the direction view patches at each SAE layer (circuit_directions.intervention).
INTERVENTIONS = ("valence", "emotions", "circuit", "layer")


@dataclass(frozen=True)
class StoredCircuit:
    """One model's circuit rows: `nodes` are the in-circuit nodes (with `label` and the
    exact effect where it was checked), `layers` every SAE layer the run read."""

    model: str
    layers: list[int]
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    curves: list[dict[str, Any]]
    directions: list[dict[str, Any]]

    @property
    def conditions(self) -> list[str]:
        found = {row["condition"] for row in self.nodes + self.curves + self.directions}
        return [condition for condition in CONDITIONS if condition in found]


def in_condition(rows: list[dict[str, Any]], condition: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["condition"] == condition]


@dataclass(frozen=True)
class CurveAtSize:
    """One curve of one condition at the circuit's size: the circuit's value and the
    random sets' mean and standard deviation (None where the curve is undefined)."""

    curve: str
    nodes: int
    circuit: float | None
    random: float | None
    spread: float | None
    draws: int | None
    pairs: int


def circuit_models(store: Store) -> list[str]:
    """The models with circuit rows (none in a store older than the circuit tables)."""
    if store.schema_version < CIRCUITS_VERSION:
        return []
    found = store.query("SELECT DISTINCT model FROM circuit_nodes ORDER BY model")
    return found["model"].to_pylist()


def read_circuit(store: Store, model: str) -> StoredCircuit | None:
    """The model's circuit, or None when the store has no circuit rows for it."""
    if model not in circuit_models(store):
        return None
    layers = store.query(
        "SELECT DISTINCT layer FROM circuit_nodes WHERE model = ? ORDER BY layer", [model]
    )["layer"].to_pylist()
    nodes = store.query(
        "SELECT n.condition, n.layer, n.sae_id, n.node, n.feature, n.effect, "
        "n.normalized_effect, n.pairs, x.effect AS exact_effect, x.normalized_effect AS "
        "exact_normalized_effect, f.promoted, n.run_id FROM circuit_nodes n "
        "LEFT JOIN circuit_nodes x ON x.model = n.model AND x.condition = n.condition AND "
        "x.sae_id = n.sae_id AND x.feature IS NOT DISTINCT FROM n.feature AND x.method = "
        "'exact' AND x.position IS NULL "
        "LEFT JOIN (SELECT sae_id, feature, first(promoted_tokens) AS promoted FROM features "
        "GROUP BY ALL) f ON f.sae_id = n.sae_id AND f.feature = n.feature "
        "WHERE n.model = ? AND n.method = 'integrated_gradients' AND n.position IS NULL AND "
        "n.in_circuit ORDER BY n.condition, n.layer, abs(n.normalized_effect) DESC NULLS LAST",
        [model],
    ).to_pylist()
    edges = store.query(
        "SELECT * FROM circuit_edges WHERE model = ? ORDER BY condition, upstream_layer, "
        "abs(normalized_effect) DESC NULLS LAST",
        [model],
    ).to_pylist()
    curves = store.query(
        "SELECT * FROM circuit_curves WHERE model = ? ORDER BY condition, curve, selection, nodes",
        [model],
    ).to_pylist()
    directions = store.query(
        "SELECT * FROM circuit_directions WHERE model = ? ORDER BY condition, layer, intervention",
        [model],
    ).to_pylist()
    return StoredCircuit(
        model, layers, [{**n, "label": label(n)} for n in nodes], edges, curves, directions
    )


def label(node: dict[str, Any]) -> str:
    """`L<layer> error`, or `L<layer> #<feature>` and the first tokens it promotes."""
    if node["feature"] is None:
        return f"L{node['layer']} error"
    tokens = (node.get("promoted") or [])[:LABEL_TOKENS]
    named = " ".join(repr(visible(token)) for token in tokens)
    return f"L{node['layer']} #{node['feature']}" + (f" {named}" if named else "")


def at_circuit_size(circuit: StoredCircuit, condition: str) -> list[CurveAtSize]:
    """Faithfulness and completeness of the circuit at its size: at the stored size equal to
    its node count, else the largest stored size below it (whose nodes are all in it)."""
    size = len(in_condition(circuit.nodes, condition))
    points = [row for row in in_condition(circuit.curves, condition) if row["nodes"] <= size]
    found = []
    for curve in ("faithfulness", "completeness"):
        picked = [row for row in points if row["curve"] == curve]
        if not picked:
            continue
        nodes = max(row["nodes"] for row in picked)
        at = {row["selection"]: row for row in picked if row["nodes"] == nodes}
        mine, drawn = at.get("circuit"), at.get("random")
        found.append(
            CurveAtSize(
                curve,
                nodes,
                mine["value"] if mine else None,
                drawn["value"] if drawn else None,
                drawn["spread"] if drawn else None,
                drawn["draws"] if drawn else None,
                (mine or drawn)["pairs"],
            )
        )
    return found


def node_shares(circuit: StoredCircuit, condition: str) -> dict[int, tuple[int, float]]:
    """Per SAE layer: the circuit's nodes there, and their share of the circuit's nodes."""
    nodes = in_condition(circuit.nodes, condition)
    counts = {layer: sum(n["layer"] == layer for n in nodes) for layer in circuit.layers}
    return {layer: (count, count / len(nodes) if nodes else 0.0) for layer, count in counts.items()}
