"""The main job (`saefeatures run`): every stage in order, each writing to the store.

Today the job registers the model and shows its residual stream on a sample
prompt; has the model write emotion stories (instruct models only); builds
contrast vectors from the template passages and from those stories; analyses
their geometry; aligns the vectors with the model's SAEs already in the store,
with a UMAP of each; steers with the directions (and the aligned features where
an SAE is aligned); patches the first good- and bad-news situations; compares
what the store allows; and writes the HTML report. Each capability joins here as
it lands, so that `make demo` always runs the whole pipeline there is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saefeatures import (
    activations,
    alignment,
    compare,
    feature_map,
    geometry,
    models,
    patching,
    reply_scores,
    report,
    steering,
    stories,
    vectors,
)
from saefeatures.errors import SaefeaturesError
from saefeatures.store import Store

SAMPLE_PROMPT = "I just got accepted into my dream PhD program today!"
# Template passages are short (about 60 tokens), so they are pooled from token 10;
# model-written stories from token 30 (the 50 of long external stories would leave little).
OFFSETS = {"templates": 10, "stories": 30}
# Patching every shipped pair takes minutes per pair on 2 cores; the job patches the first
# few situations (good and bad news each) and `saefeatures patch` does the rest.
DEMO_SITUATIONS = 3
REPORT_NAME = "report.html"
EXAMPLE_QUERIES = (
    "SELECT corpus, layer, round(pearson_r, 3) AS r, ci_low, ci_high FROM geometry "
    "WHERE component = 'PC1' AND method = 'denoised' ORDER BY r DESC LIMIT 5",
    "SELECT emotion_a, emotion_b, expected_sign, round(cosine, 3) AS cosine FROM vector_pairs "
    "WHERE layer = 10 AND method = 'denoised'",
    "SELECT run_id, command, status, started, finished FROM runs ORDER BY started",
)


@dataclass(frozen=True)
class Workspace:
    db: Path
    out: Path

    def open_store(self, read_only: bool = False) -> Store:
        return Store(self.db, read_only=read_only)


def register_model(store: Store, run_id: str, model: models.LoadedModel) -> dict[str, Any]:
    """Write (or refresh) the model's row in `models`."""
    row = {"run_id": run_id, **model.describe()}
    store.replace("models", {"model": model.name}, {key: [value] for key, value in row.items()})
    return row


def run(
    workspace: Workspace, model_name: str, layers: str, dtype: str, device: str
) -> dict[str, Any]:
    """Run the pipeline for one model and return what it did, for printing.

    Every option is checked before the store is opened, so bad input changes nothing.
    """
    models.check_options(dtype, device)
    spec = models.resolve(model_name)
    chosen = activations.select_layers(layers, models.shape_of(spec)["n_layers"], spec.name)
    workspace.out.mkdir(parents=True, exist_ok=True)
    config = {"model": spec.name, "layers": chosen, "dtype": dtype, "device": device}
    with workspace.open_store() as store, store.run("run", config) as run_id:
        model = models.load(model_name, dtype=dtype, device=device)
        described = register_model(store, run_id, model)
        batch = model.encode([model.format_prompt(SAMPLE_PROMPT)], chat_formatted=True)
        acts = activations.harvest(model, batch, chosen)
        corpora_used = {"templates": OFFSETS["templates"]}
        if model.is_chat:
            name = f"stories-{spec.slug}"
            stories.generate(
                store, stories.StoryOptions(spec.name, name, dtype=dtype, device=device)
            )
            corpora_used[name] = OFFSETS["stories"]
        best = {}
        for corpus, offset in corpora_used.items():
            vectors.extract(
                store,
                vectors.VectorOptions(
                    spec.name, corpus, layers=layers, offset=offset, device=device
                ),
            )
            found = geometry.analyze(
                store,
                workspace.out,
                geometry.GeometryOptions(spec.name, corpus, dtype=dtype, device=device),
            )
            best[corpus] = {**found["best"], "figures": found["figures"]}
        aligned = _align_with_registered_saes(store, workspace, spec.name, chosen, corpora_used,
                                              dtype, device)  # fmt: skip
        steered = _steer(store, workspace, spec.name, chosen, sorted({row[0] for row in aligned}),
                         list(corpora_used)[-1], dtype, device)  # fmt: skip
        patched = _patch(store, workspace, model, dtype, device)
        compared = _compare(store, workspace)
    with workspace.open_store(read_only=True) as store:
        reported = report.write(store, workspace.out / REPORT_NAME)
    residuals = [
        (layer, tuple(act.shape), float(act.float().norm(dim=-1).mean()))
        for layer, act in acts.items()
    ]
    return {
        "run_id": run_id,
        "model": described,
        "residuals": residuals,
        "geometry": best,
        "alignment": aligned,
        "steering": steered,
        "patching": patched,
        "comparisons": compared,
        "report": reported,
    }


def _compare(store: Store, workspace: Workspace) -> dict[str, Any]:
    """Every comparison the store allows so far, or why there is none yet."""
    try:
        return compare.compare(store, workspace.out, compare.CompareOptions())
    except SaefeaturesError as error:
        return {"skipped": str(error)}


def _patch(
    store: Store, workspace: Workspace, model: models.LoadedModel, dtype: str, device: str
) -> dict[str, Any]:
    """Patch the first situations, or say why not (a tokenizer whose anchor words share a
    first token, as byte-level test tokenizers do, has no anchor score)."""
    try:
        reply_scores.anchor_score(model)
    except SaefeaturesError as error:
        return {"skipped": str(error)}
    options = patching.PatchOptions(model.spec.name, limit=DEMO_SITUATIONS, dtype=dtype,
                                    device=device)  # fmt: skip
    return patching.patch(store, workspace.out, options)


def _steer(
    store: Store,
    workspace: Workspace,
    model: str,
    layers: list[int],
    sae_layers: list[int],
    corpus: str,
    dtype: str,
    device: str,
) -> dict[str, Any]:
    """Steer at the first layer with an aligned SAE (both levels), else at the chosen layer
    nearest a third of the depth (direction only), with the last corpus's vectors."""
    third = round(models.shape_of(models.resolve(model))["n_layers"] / 3)
    layer = sae_layers[0] if sae_layers else min(layers, key=lambda chosen: abs(chosen - third))
    options = steering.SteerOptions(model, layer, "both" if sae_layers else "direction",
                                    corpus=corpus, dtype=dtype, device=device)  # fmt: skip
    result = steering.steer(store, workspace.out, options)
    return {"layer": layer, "corpus": corpus, "summary": steering.summarize(result["rows"])}


def _align_with_registered_saes(
    store: Store,
    workspace: Workspace,
    model: str,
    layers: list[int],
    corpora_used: dict[str, int],
    dtype: str,
    device: str,
) -> list[list[Any]]:
    """Align and map every corpus's vectors with the model's SAEs at the chosen layers.

    SAE training is not part of the job yet (about 20 minutes per layer on 2 cores), so
    this runs for SAEs trained or loaded before: `saefeatures train --layer 10` first.
    """
    found = store.query(
        "SELECT DISTINCT layer FROM saes WHERE model = ? AND hook = 'blocks.' || layer || "
        "'.hook_resid_post' ORDER BY layer",
        [model],
    )["layer"].to_pylist()
    rows = []
    for layer in (layer for layer in found if layer in layers):
        for corpus in corpora_used:
            options = alignment.AlignOptions(
                layer, model, corpus=corpus, dtype=dtype, device=device
            )
            result = alignment.align(store, options)
            figure = feature_map.draw(
                store, workspace.out, feature_map.UmapOptions(layer, model, corpus=corpus)
            )
            rows += [
                [layer, corpus, sae["sae_id"], f"{sae['fraction_above_null']:.0%}",
                 f"{sae['fraction_above_shuffled_null']:.0%}", figure["files"][0]]
                for sae in result["saes"]
            ]  # fmt: skip
    return rows
