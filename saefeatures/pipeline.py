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

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from saefeatures import (
    activations,
    alignment,
    compare,
    corpora,
    feature_map,
    geometry,
    models,
    patching,
    reply_scores,
    report,
    stages,
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
    workspace: Workspace, model_name: str, layers: str, dtype: str, device: str,
    force: frozenset[str] = frozenset(),
) -> dict[str, Any]:  # fmt: skip
    """Run the pipeline for one model and return what it did, for printing.

    Every option is checked before the store is opened, so bad input changes nothing.
    Each stage is skipped when it already ran on the same inputs (see `stages`), unless
    `force` names it.
    """
    models.check_options(dtype, device)
    spec = models.resolve(model_name)
    chosen = activations.select_layers(layers, models.shape_of(spec)["n_layers"], spec.name)
    workspace.out.mkdir(parents=True, exist_ok=True)
    config = {"model": spec.name, "layers": chosen, "dtype": dtype, "device": device,
              "force": sorted(force)}  # fmt: skip
    with workspace.open_store() as store, store.run("run", config) as run_id:
        stage = stages.Stages(store, run_id, force)
        model = models.load(model_name, dtype=dtype, device=device)
        described = register_model(store, run_id, model)
        model_key = stages.content_key("model", {**described, "run_id": None}, [])
        batch = model.encode([model.format_prompt(SAMPLE_PROMPT)], chat_formatted=True)
        acts = activations.harvest(model, batch, chosen)
        job = Job(stage, store, workspace, model, model_key, chosen, layers, dtype, device)
        vector_keys, best = _representations(job)
        aligned, sae_keys = _align_with_registered_saes(job, vector_keys)
        corpus = list(vector_keys)[-1]
        sae_layers = sorted({row[0] for row in aligned})
        steered, _ = stage(
            "steer",
            corpus,
            {"layers": chosen, "dtype": dtype},
            [vector_keys[corpus], *sae_keys],
            _steer,
            job,
            sae_layers,
            corpus,
        )
        patched, _ = stage(
            "patch",
            spec.name,
            {"situations": DEMO_SITUATIONS, "dtype": dtype},
            [model_key, *sae_keys],
            _patch,
            job,
        )
        compared, _ = stage("compare", "all models", {}, [_results_digest(store)], _compare,
                            store, workspace)  # fmt: skip
    with workspace.open_store(read_only=True) as store:
        reported = stage.timed("report", REPORT_NAME, report.write, store,
                               workspace.out / REPORT_NAME)  # fmt: skip
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
        "timings": stage.timings,
    }


@dataclass(frozen=True)
class Job:
    """What every stage of one `run` shares."""

    stage: stages.Stages
    store: Store
    workspace: Workspace
    model: models.LoadedModel
    model_key: str
    layers: list[int]
    layers_text: str  # as given: 'all' or e.g. '4,8'
    dtype: str
    device: str


def _representations(job: Job) -> tuple[dict[str, str], dict[str, Any]]:
    """Stories (instruct models), then vectors and geometry per corpus: the vectors'
    stage keys and the best layer of each corpus."""
    spec = job.model.spec
    corpora_used = {"templates": OFFSETS["templates"]}
    if job.model.is_chat:
        name = f"stories-{spec.slug}"
        options = stories.StoryOptions(spec.name, name, dtype=job.dtype, device=job.device)
        job.stage("stories", name, asdict(options), [job.model_key], _quietly, stories.generate,
                  job.store, options)  # fmt: skip
        corpora_used[name] = OFFSETS["stories"]
    vector_keys, best = {}, {}
    for corpus, offset in corpora_used.items():
        made = vectors.VectorOptions(spec.name, corpus, layers=job.layers_text, offset=offset,
                                     device=job.device)  # fmt: skip
        for name in (corpus, "neutral"):  # stored first, so that their digests are real
            corpora.ensure_builtin(job.store, job.stage.run_id, name)
        inputs = [job.model_key, *(stages.corpus_digest(job.store, c) for c in (corpus, "neutral"))]
        _, vector_keys[corpus] = job.stage("vectors", corpus, asdict(made), inputs, _quietly,
                                           vectors.extract, job.store, made)  # fmt: skip
        analysed = geometry.GeometryOptions(spec.name, corpus, dtype=job.dtype,
                                            device=job.device)  # fmt: skip
        best[corpus], _ = job.stage("geometry", corpus, asdict(analysed), [vector_keys[corpus]],
                                    _geometry, job, analysed)  # fmt: skip
    return vector_keys, best


def _quietly(work: Callable[..., Any], *args: Any) -> None:
    """Run a stage whose summary the job does not print."""
    work(*args)


def _geometry(job: Job, options: geometry.GeometryOptions) -> dict[str, Any]:
    found = geometry.analyze(job.store, job.workspace.out, options)
    return {**found["best"], "figures": found["figures"]}


def _results_digest(store: Store) -> str:
    """Changes whenever any command other than `run` and `compare` finishes anew."""
    return store.query(
        "SELECT md5(coalesce(string_agg(run_id, ',' ORDER BY run_id), '')) AS digest FROM runs "
        "WHERE status = 'ok' AND command NOT IN ('run', 'compare')"
    )["digest"][0].as_py()


def _compare(store: Store, workspace: Workspace) -> dict[str, Any]:
    """Every comparison the store allows so far, or why there is none yet."""
    try:
        return compare.compare(store, workspace.out, compare.CompareOptions())
    except SaefeaturesError as error:
        return {"skipped": str(error)}


def _patch(job: Job) -> dict[str, Any]:
    """Patch the first situations, or say why not (a tokenizer whose anchor words share a
    first token, as byte-level test tokenizers do, has no anchor score)."""
    try:
        reply_scores.anchor_score(job.model)
    except SaefeaturesError as error:
        return {"skipped": str(error)}
    options = patching.PatchOptions(job.model.spec.name, limit=DEMO_SITUATIONS, dtype=job.dtype,
                                    device=job.device)  # fmt: skip
    return patching.patch(job.store, job.workspace.out, options)


def _steer(job: Job, sae_layers: list[int], corpus: str) -> dict[str, Any]:
    """Steer at the first layer with an aligned SAE (both levels), else at the chosen layer
    nearest a third of the depth (direction only), with the last corpus's vectors."""
    third = round(job.model.n_layers / 3)
    layer = sae_layers[0] if sae_layers else min(job.layers, key=lambda at: abs(at - third))
    options = steering.SteerOptions(job.model.spec.name, layer,
                                    "both" if sae_layers else "direction", corpus=corpus,
                                    dtype=job.dtype, device=job.device)  # fmt: skip
    result = steering.steer(job.store, job.workspace.out, options)
    return {"layer": layer, "corpus": corpus, "summary": steering.summarize(result["rows"])}


def _align_with_registered_saes(
    job: Job, vector_keys: dict[str, str]
) -> tuple[list[list[Any]], list[str]]:
    """Align and map every corpus's vectors with the model's SAEs at the chosen layers;
    the rows to print and the stages' keys.

    SAE training is not part of the job yet (about 20 minutes per layer on 2 cores), so
    this runs for SAEs trained or loaded before: `saefeatures train --layer 10` first.
    """
    model = job.model.spec.name
    found = job.store.query(
        "SELECT layer, sae_id, path FROM saes WHERE model = ? AND hook = 'blocks.' || layer || "
        "'.hook_resid_post' ORDER BY layer, sae_id",
        [model],
    ).to_pylist()
    rows, keys = [], []
    for sae in (sae for sae in found if sae["layer"] in job.layers):
        for corpus, vector_key in vector_keys.items():
            options = alignment.AlignOptions(sae["layer"], model, corpus=corpus, dtype=job.dtype,
                                             device=job.device)  # fmt: skip
            done, key = job.stage("align", f"layer {sae['layer']}, {corpus}", asdict(options),
                                  [vector_key, sae["sae_id"], sae["path"]], _align, job,
                                  options)  # fmt: skip
            rows += done
            keys.append(key)
    return rows, keys


def _align(job: Job, options: alignment.AlignOptions) -> list[list[Any]]:
    result = alignment.align(job.store, options)
    figure = feature_map.draw(
        job.store, job.workspace.out,
        feature_map.UmapOptions(options.layer, options.model, corpus=options.corpus),
    )  # fmt: skip
    return [
        [options.layer, options.corpus, sae["sae_id"], f"{sae['fraction_above_null']:.0%}",
         f"{sae['fraction_above_shuffled_null']:.0%}", figure["files"][0]]
        for sae in result["saes"]
    ]  # fmt: skip
