"""The report's circuit section from hand-made circuit rows: its reading says the numbers a
direct query of those rows gives, and the section is left out without circuit rows."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest

from saefeatures.circuits.stored import read_circuit
from saefeatures.report import build
from saefeatures.report import circuits as section_of
from saefeatures.store.database import Store
from tests.circuits.hand_made import insert_circuit
from tests.report.test_report import BROWSER, _render

MODEL = "smollm2-135m-instruct"
LAYERS = (4, 16)
IN_CIRCUIT = "in_circuit AND method = 'integrated_gradients' AND position IS NULL"


@pytest.fixture
def stored(tmp_path) -> Path:
    path = tmp_path / "w.duckdb"
    with Store(path) as store, store.run("seed", {}) as run_id:
        insert_circuit(store, run_id, MODEL, LAYERS)
    return path


def _curves_at_size(store: Store, condition: str) -> tuple[int, dict[tuple[str, str], Any]]:
    """The circuit's size, and the curve rows at the largest stored size not above it."""
    size = store.query(
        f"SELECT count(*) AS n FROM circuit_nodes WHERE condition = ? AND {IN_CIRCUIT}",
        [condition],
    )["n"][0].as_py()
    rows = store.query(
        "SELECT * FROM circuit_curves WHERE condition = $c AND nodes = (SELECT max(nodes) "
        "FROM circuit_curves WHERE condition = $c AND nodes <= $size)",
        {"c": condition, "size": size},
    ).to_pylist()
    return size, {(r["curve"], r["selection"]): r for r in rows}


def _best_layers(store: Store, condition: str) -> dict[str, dict[str, Any]]:
    """Per intervention, the layer of its largest normalized effect, that effect, and the
    whole residual's there."""
    rows = store.query(
        "SELECT d.intervention, arg_max(d.layer, d.normalized_effect) AS layer, "
        "max(d.normalized_effect) AS best, arg_max(d.p_value, d.normalized_effect) AS p, "
        "arg_max(d.dimensions, d.normalized_effect) AS dimensions FROM circuit_directions d "
        "WHERE d.condition = ? "
        "GROUP BY d.intervention",
        [condition],
    ).to_pylist()
    whole = {
        r["layer"]: r["normalized_effect"]
        for r in store.query(
            "SELECT layer, normalized_effect FROM circuit_directions WHERE condition = ? AND "
            "intervention = 'layer'",
            [condition],
        ).to_pylist()
    }
    return {r["intervention"]: {**r, "whole": whole[r["layer"]]} for r in rows}


def test_the_reading_says_the_stored_numbers(stored):
    with Store(stored, read_only=True) as store:
        circuit = read_circuit(store, MODEL)
        assert circuit is not None
        section = section_of.circuits(store)
        for condition in ("good", "bad"):
            said = section_of.reading(circuit, condition)
            size, at = _curves_at_size(store, condition)
            assert f"{condition} news: the circuit has {size} nodes" in said
            faithful, drawn = at["faithfulness", "circuit"], at["faithfulness", "random"]
            n = faithful["nodes"]
            kept = f"its {n} largest nodes" if n < size else f"its {n} nodes"
            assert f"With {kept} kept and every other node mean-ablated" in said
            assert f"the model keeps {faithful['value']:.2f} of the score" in said
            assert (
                f"random sets of {n} nodes: {drawn['value']:.2f} ± {drawn['spread']:.2f} over "
                f"{drawn['draws']} draws; {faithful['pairs']} evaluation pairs" in said
            )
            complete = at["completeness", "circuit"]["value"]
            shown = (
                f"the completeness is {section_of.UNDEFINED}"
                if complete is None
                else f"{complete:.2f} of that score remains"
            )
            assert f"mean-ablated and every other node kept, {shown}" in said
            for intervention, what, drawn in (
                ("valence", "the valence axis", "random subspaces of rank"),
                ("circuit", "nodes", "random sets of"),
            ):
                best = _best_layers(store, condition)[intervention]
                assert (
                    f"{what}, layer {best['layer']} ({best['best']:.2f} of the gap, "
                    f"p = {best['p']:.2g} against 99 {drawn} {best['dimensions']}" in said
                )
                assert f"; the whole residual there: {best['whole']:.2f})" in said
            assert html.escape(said) in "".join(section.blocks)
        circuit_nodes = store.query(f"SELECT count(*) AS n FROM circuit_nodes WHERE {IN_CIRCUIT}")
    (table,) = [block for block in section.blocks if block.startswith("<table>")]
    assert table.count("<tr>") == 1 + circuit_nodes["n"][0].as_py()
    assert "L4 #3 &#x27; joy&#x27;" in table  # a label from the features table
    assert '<td class="num">0.88</td>' in table  # the exact effect where it was checked


def _circuits_section(page: str) -> str:
    found = re.search(r'<section id="circuits">.*?</section>', page, flags=re.S)
    return found.group(0) if found else ""


def test_the_report_shows_the_section_only_with_circuit_rows(stored, tmp_path):
    with Store(stored, read_only=True) as store:
        report = build.write(store, tmp_path / "report.html")
    shown = _circuits_section(Path(report.path).read_text(encoding="utf-8"))
    assert "Feature circuits" in report.sections
    assert shown.count('<div class="figure">') == 3
    assert f"<h3>{MODEL}</h3>" in shown
    bare = tmp_path / "bare.duckdb"
    with Store(bare) as store, store.run("seed", {}):
        pass
    with Store(bare, read_only=True) as store:
        report = build.write(store, tmp_path / "bare.html")
    assert "Feature circuits" not in report.sections
    assert not _circuits_section(Path(report.path).read_text(encoding="utf-8"))


@pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (make test installs it)")
def test_a_headless_browser_draws_the_circuit_figures(stored, tmp_path):
    with Store(stored, read_only=True) as store:
        report = build.write(store, tmp_path / "report.html")
    dom, console = _render(Path(report.path))
    figures = re.findall(r'<div id="[^"]+" class="plotly-graph-div[^>]*>', _circuits_section(dom))
    assert len(figures) == 3 and all('data-rendered="yes"' in tag for tag in figures), figures
    assert "data-errors" not in dom.split(">", 2)[1]
    assert not console, console
