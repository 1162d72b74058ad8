"""The Neuronpedia export: written from the planted alignment store through the command
line, read back, every documented field present and equal to what the store holds."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from saefeatures.features import dashboard
from saefeatures.store.database import Store
from tests.alignment import test_align
from tests.conftest import assert_user_error, run_cli_here

aligned = test_align.aligned  # the store: vectors, a planted SAE, one alignment run
DOC = Path(__file__).resolve().parents[2] / "docs" / "neuronpedia.md"


def _documented(heading: str) -> list[str]:
    """The fields of the table under a heading of docs/neuronpedia.md."""
    section = DOC.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", section, flags=re.M)


def _read(folder: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("batch-*.jsonl.gz"))
        for line in gzip.decompress(path.read_bytes()).decode().splitlines()
    ]


@pytest.fixture(scope="module")
def exported(aligned, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("np") / "out"
    with Store(aligned["db"], read_only=True) as store:
        sae = store.query("SELECT * FROM saes WHERE sae_id IN (SELECT sae_id FROM features)")
        sae = sae.to_pylist()[0]
    result = run_cli_here(
        "export-neuronpedia",
        sae["sae_id"],
        "--to",
        str(folder),
        "--examples",
        "4",
        "--model-id",
        "tiny-llama",
        env=aligned["env"],
    )
    assert result.code == 0, result.stderr
    source = folder / "tiny-llama" / f"{test_align.LAYER}-saefeatures-res"
    return {
        "sae": sae,
        "folder": folder,
        "features": _read(source / "features"),
        "activations": _read(source / "activations"),
    }


def test_every_documented_field_is_written(exported):
    feature_fields, activation_fields = _documented("Features"), _documented("Activations")
    assert "pos_str" in feature_fields and "maxValueTokenIndex" in activation_fields
    assert exported["features"] and exported["activations"]
    for record in exported["features"]:
        assert sorted(record) == sorted(feature_fields)
    for record in exported["activations"]:
        assert sorted(record) == sorted(activation_fields)


def test_the_records_equal_the_store(exported, aligned):
    sae_id = exported["sae"]["sae_id"]
    with Store(aligned["db"], read_only=True) as store:
        rows = store.query(
            "SELECT * FROM features WHERE sae_id = ? AND density > 0 ORDER BY feature", [sae_id]
        ).to_pylist()
        shown = dashboard.dashboards(store, sae_id, [r["feature"] for r in rows], 4)
    features = exported["features"]
    assert [int(f["index"]) for f in features] == [r["feature"] for r in rows]
    for record, row in zip(features, rows, strict=True):
        assert record["modelId"] == "tiny-llama"
        assert record["layer"] == f"{test_align.LAYER}-saefeatures-res"
        assert record["frac_nonzero"] == row["density"]
        assert record["maxActApprox"] == row["max_activation"]
        assert record["pos_str"] == row["promoted_tokens"]
        assert record["pos_values"] == row["promoted_logits"]
        assert record["neg_str"] == row["suppressed_tokens"]
        assert record["neg_values"] == row["suppressed_logits"]
        histogram = shown[row["feature"]].histogram
        assert record["freq_hist_data_bar_heights"] == histogram.counts
        edges = histogram.edges
        assert record["freq_hist_data_bar_values"] == pytest.approx(
            [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
        )
    activations = exported["activations"]
    assert len(activations) == sum(len(d.examples) for d in shown.values())
    assert len({a["id"] for a in activations}) == len(activations)
    for record in activations:
        example = next(
            e
            for e in shown[int(record["index"])].examples
            if (e.corpus, str(e.passage_id)) == (record["dataSource"], record["dataIndex"])
        )
        assert record["tokens"] == example.tokens and record["values"] == example.values
        assert record["maxValue"] == max(record["values"])
        assert record["values"][record["maxValueTokenIndex"]] == record["maxValue"]
        assert record["minValue"] == min(record["values"])


def test_bad_input_is_one_line(exported, aligned):
    env, sae_id = aligned["env"], exported["sae"]["sae_id"]
    cases = [
        (("nope", "--to", str(exported["folder"].parent / "a")), ("no SAE 'nope'",)),
        ((sae_id, "--to", str(exported["folder"])), ("not an empty folder",)),
        ((sae_id, "--to", "x", "--source-set", "Bad Name"), ("not a Neuronpedia name",)),
    ]
    for args, fragments in cases:
        assert_user_error(run_cli_here("export-neuronpedia", *args, env=env), *fragments)
    assert not (exported["folder"].parent / "a").exists()
