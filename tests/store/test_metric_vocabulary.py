"""Every metric name in the (metric, value) tables has a documented meaning and unit in
`metrics`, and every layer a writer stores carries its hook."""

from __future__ import annotations

import re

import pytest

from saefeatures.store import hooks, metric_names
from saefeatures.store.database import Store


def test_a_placeholder_stands_for_any_text_and_nothing_else_varies():
    found = metric_names.pattern("mean_danger_rho:{emotion}")
    assert found.fullmatch("mean_danger_rho:happy")
    assert found.fullmatch("mean_danger_rho:at ease")
    assert not found.fullmatch("mean_danger_rho:")
    assert not found.fullmatch("mean_danger_rhoXhappy")
    shifted = metric_names.pattern("p_unethical shift ({emotion}, scale {scale})")
    assert shifted.fullmatch("p_unethical shift (afraid, scale 0.5)")
    assert not shifted.fullmatch("p_unethical shift afraid, scale 0.5")


def test_an_unknown_name_is_reported_with_its_table(tmp_path):
    with Store(tmp_path / "w.duckdb") as store:
        store.insert(
            "sae_metrics",
            {
                "run_id": ["r", "r"],
                "sae_id": ["s", "s"],
                "split": ["heldout", "heldout"],
                "metric": ["l0", "l0_per_token"],
                "value": [3.0, 3.0],
            },
        )
        assert metric_names.undocumented(store) == [("sae_metrics", "l0_per_token")]


@pytest.fixture(scope="module")
def populated(populated_workspace):
    with Store(populated_workspace["db"], read_only=True) as store:
        yield store


def test_every_table_with_metrics_has_a_vocabulary(populated):
    documented = {
        r["stored_in"] for r in populated.query("SELECT stored_in FROM metrics").to_pylist()
    }
    assert set(populated.tables_with_column("metric")) == documented


def test_every_stored_metric_name_is_documented(populated):
    tables = populated.tables_with_column("metric")
    stored = {t: populated.query(f"SELECT count(*) AS n FROM {t}")["n"][0].as_py() for t in tables}
    assert sum(stored.values()) > 0, stored  # the workspace holds metric names to check
    assert metric_names.undocumented(populated) == []


def _expected_hook(table: str, row: dict) -> str | None:
    """The hook a stored layer means, written out here independently of `hooks`."""
    if row["layer"] is None:
        return None
    if table == "patching_results":
        return {
            "resid": f"blocks.{row['layer']}.hook_resid_pre",
            "heads": f"blocks.{row['layer']}.attn.hook_z",
        }[row["level"]]
    return f"blocks.{row['layer']}.hook_resid_post"


def test_every_written_layer_carries_its_hook(populated):
    checked = 0
    for table in hooks.HOOK_OF_LAYER:
        level = ", level" if table == "patching_results" else ""
        rows = populated.query(f"SELECT DISTINCT layer, hook{level} FROM {table}").to_pylist()
        for row in rows:
            assert row["hook"] == _expected_hook(table, row), (table, row)
        checked += len(rows)
    assert checked > 20
    sae_hooks = populated.query("SELECT DISTINCT layer, hook FROM saes").to_pylist()
    assert all(re.fullmatch(rf"blocks\.{r['layer']}\.hook_\w+", r["hook"]) for r in sae_hooks)
