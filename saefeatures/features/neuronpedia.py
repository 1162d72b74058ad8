"""An SAE's features in the layout Neuronpedia imports, read from the store alone.

Neuronpedia imports a source (one SAE) as gzipped JSON-lines batches of `Feature` and
`Activation` records under `<model id>/<layer>-<source set>/`. The records here carry the
fields their dashboards show, named as Neuronpedia names them: each example's tokens and
values with its maximum and where it is, the logit-lens tables, the share of tokens the
feature fires on and its activation histogram. docs/neuronpedia.md lists them, and the ones
left out: those that need the model run again (the logit histogram over the vocabulary,
neuron alignment, correlated features) and the uploader's own (creator, release).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from saefeatures.errors import SaefeaturesError
from saefeatures.features.dashboard import EXAMPLES, FeatureDashboard, checked_sae, dashboards
from saefeatures.store.database import Store

FEATURES_PER_BATCH = 128
SOURCE_SET = "saefeatures-res"
_SOURCE_SET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Exported:
    folder: str  # the source's folder: <model id>/<layer>-<source set>
    features: int
    activations: int
    batches: int


def export(
    store: Store,
    sae_id: str,
    folder: Path,
    examples: int = EXAMPLES,
    source_set: str = SOURCE_SET,
    model_id: str | None = None,
) -> Exported:
    """Every feature of the SAE that fired, with its top `examples` activations."""
    sae = checked_sae(store, sae_id)
    if not _SOURCE_SET_NAME.match(source_set):
        raise SaefeaturesError(
            f"source set {source_set!r} is not a Neuronpedia name: use lower-case letters, "
            "digits and dashes, e.g. saefeatures-res"
        )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SaefeaturesError(f"{folder} is not an empty folder; export into a new folder")
    model = model_id or Path(sae["model"]).name.lower()
    source = f"{sae['layer']}-{source_set}"
    root = folder / model / source
    fired = store.query(
        "SELECT feature FROM features WHERE sae_id = ? AND density > 0 ORDER BY feature",
        [sae_id],
    )["feature"].to_pylist()
    written, batches = 0, 0
    for start in range(0, len(fired), FEATURES_PER_BATCH):
        found = dashboards(store, sae_id, fired[start : start + FEATURES_PER_BATCH], examples)
        shown = [found[f] for f in sorted(found)]
        name = f"batch-{batches}.jsonl.gz"
        _write(root / "features" / name, [feature_record(d, model, source) for d in shown])
        records = [r for d in shown for r in activation_records(d, model, source)]
        _write(root / "activations" / name, records)
        written, batches = written + len(records), batches + 1
    return Exported(str(root), len(fired), written, batches)


def feature_record(dash: FeatureDashboard, model: str, source: str) -> dict[str, Any]:
    return {
        "modelId": model,
        "layer": source,
        "index": str(dash.feature),
        "maxActApprox": dash.max_activation,
        "pos_str": dash.promoted,
        "pos_values": dash.promoted_logits or [],
        "neg_str": dash.suppressed,
        "neg_values": dash.suppressed_logits or [],
        "frac_nonzero": dash.density,
        "freq_hist_data_bar_heights": dash.histogram.counts,
        "freq_hist_data_bar_values": [(a + b) / 2 for a, b in pairwise(dash.histogram.edges)],
    }


def activation_records(dash: FeatureDashboard, model: str, source: str) -> list[dict[str, Any]]:
    """One record per example: its tokens and the feature's value on each."""
    return [
        {
            "id": _record_id(model, source, dash.feature, e.corpus, e.passage_id),
            "modelId": model,
            "layer": source,
            "index": str(dash.feature),
            "tokens": e.tokens,
            "values": e.values,
            "maxValue": e.max_value,
            "maxValueTokenIndex": e.peak,
            "minValue": min(e.values),
            "dataSource": e.corpus,
            "dataIndex": str(e.passage_id),
        }
        for e in dash.examples
    ]


def _record_id(*parts: object) -> str:
    """A stable id per example, so that a re-export replaces rather than duplicates."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:25]


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    path.write_bytes(gzip.compress(lines.encode("utf-8"), compresslevel=5))
