"""The circuit's figures drawn from hand-made store rows, checked against those rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from saefeatures.circuits import figures
from saefeatures.circuits.stored import read_circuit
from saefeatures.store.database import Store
from tests.circuits.hand_made import CIRCUIT_SIZE, DESCRIBED, RANKED, insert_circuit

MODEL = "smollm2-135m-instruct"
LAYERS = (4, 16)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def stored(tmp_path) -> Path:
    path = tmp_path / "w.duckdb"
    with Store(path) as store, store.run("seed", {}) as run_id:
        insert_circuit(store, run_id, MODEL, LAYERS)
    return path


def test_a_stored_circuit_draws_its_three_figures(stored, tmp_path):
    out = tmp_path / "out"
    with Store(stored) as store:
        paths = [Path(p) for p in figures.circuit_figures(store, MODEL, out)]
    expected = {f"{name}.{suffix}" for name in figures.PARTS for suffix in ("png", "html")}
    assert {p.name for p in paths} == expected and len(paths) == 6
    assert {p.parent for p in paths} == {out / "circuits" / MODEL}
    for path in paths:
        assert path.stat().st_size > 1000, path
    for path in (p for p in paths if p.suffix == ".png"):
        assert path.read_bytes().startswith(PNG)


def _expected_labels(condition: str) -> set[str]:
    """The circuit's nodes as the graph must name them, from the hand-made ranking."""
    labels = set()
    for at, feature in RANKED[: CIRCUIT_SIZE[condition]]:
        layer = LAYERS[at]
        if feature is None:
            labels.add(f"L{layer} error")
        elif (at, feature) == DESCRIBED[:2]:
            labels.add(f"L{layer} #{feature} ' joy' ' glad' '↵'")
        else:
            labels.add(f"L{layer} #{feature}")
    return labels


def test_the_graph_draws_the_circuit_nodes_and_their_edges(stored):
    with Store(stored, read_only=True) as store:
        circuit = read_circuit(store, MODEL)
    assert circuit is not None
    graph = figures.PARTS["circuit_graph"].interactive(circuit)
    for axis, condition in (("x", "good"), ("x2", "bad")):
        traces = [t for t in graph.data if t.xaxis == axis]
        nodes = [t for t in traces if t.mode == "markers+text"]
        assert {label for t in nodes for label in t.text} == _expected_labels(condition)
        (squares,) = [t for t in nodes if t.marker.symbol == "square"]
        assert all(label.endswith("error") for label in squares.text)
        # the edge to a node outside the circuit (rank 5) is not drawn
        assert len([t for t in traces if t.mode == "lines"]) == 2
        # the largest |effect| gets the largest marker, the negative node the negative colour
        sizes = {
            label: size for t in nodes for label, size in zip(t.text, t.marker.size, strict=True)
        }
        colors = {label: c for t in nodes for label, c in zip(t.text, t.marker.color, strict=True)}
        largest = max(sizes, key=sizes.get)
        assert largest.startswith(f"L{LAYERS[0]} #3")
        assert sizes[largest] == pytest.approx(figures.NODE_DIAMETER[1])
        assert colors[f"L{LAYERS[1]} #7"] < 0 < colors[largest]


def test_without_circuit_rows_nothing_is_drawn(tmp_path):
    out = tmp_path / "out"
    with Store(tmp_path / "w.duckdb") as store, store.run("seed", {}) as run_id:
        assert figures.circuit_figures(store, MODEL, out) == []
        insert_circuit(store, run_id, "gemma-3-270m", (2, 6))  # another model's circuit
        assert figures.circuit_figures(store, MODEL, out) == []
    assert not out.exists()


def test_each_direction_view_line_has_its_null_band_and_the_layer_none(stored):
    with Store(stored, read_only=True) as store:
        circuit = read_circuit(store, MODEL)
        rows = store.query(
            "SELECT * FROM circuit_directions WHERE condition = 'good' ORDER BY layer"
        ).to_pylist()
    drawn = figures.PARTS["effects_by_layer"].interactive(circuit)
    bands = {t.name: t for t in drawn.data if t.fill == "toself" and t.xaxis == "x"}
    assert set(bands) == {"valence null", "emotions null", "circuit null"}
    for name in ("valence", "circuit"):
        mine = [r for r in rows if r["intervention"] == name]
        scale = [r["normalized_effect"] / r["effect"] for r in mine]
        high = [
            (r["null_effect"] + 2 * r["null_spread"]) * k for r, k in zip(mine, scale, strict=True)
        ]
        low = [
            (r["null_effect"] - 2 * r["null_spread"]) * k for r, k in zip(mine, scale, strict=True)
        ]
        edges = [sorted(pair) for pair in zip(low, high, strict=True)]
        band = bands[f"{name} null"]
        assert list(band.x) == [r["layer"] for r in mine] + [r["layer"] for r in mine][::-1]
        expected = [top for _, top in edges] + [bottom for bottom, _ in edges][::-1]
        assert list(band.y) == pytest.approx(expected)
