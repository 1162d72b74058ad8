"""The main job (`saefeatures run`): every stage in order, each writing to the store.

For each model in turn the job registers it and shows its residual stream on a
sample prompt; has it write emotion stories (instruct models only); builds contrast
vectors from the template passages and from those stories; analyses their geometry;
trains SAEs at the SAE config's layers; aligns the last corpus's vectors with every
SAE of the model at the chosen layers, with a UMAP of each; steers with the directions
(and the aligned features where an SAE is aligned); patches the first good- and
bad-news situation; and runs the validation experiments. Then it compares what the
store allows, across the models too, and writes the HTML report. Each capability joins
here as it lands, so that `make demo` always runs the whole pipeline there is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from saefeatures import (
    activations,
    alignment,
    behaviour,
    compare,
    corpora,
    feature_map,
    geometry,
    models,
    patching,
    preferences,
    quantity,
    reply_scores,
    report,
    retrieval,
    sae,
    stages,
    steering,
    stories,
    vectors,
)
from saefeatures.errors import SaefeaturesError
from saefeatures.sae import config as sae_presets
from saefeatures.store import Store

SAMPLE_PROMPT = "I just got accepted into my dream PhD program today!"
# Template passages are short (about 60 tokens), so they are pooled from token 10;
# model-written stories from token 30 (the 50 of long external stories would leave little).
OFFSETS = {"templates": 10, "stories": 30}
# The job runs every stage, sized so that the demo fits its budget on 2 CPU cores: two
# stories of up to 120 tokens per emotion (two topics, so that retrieval can hold one
# out); alignment and steering with the last corpus only (the one the validations read),
# steering with four emotions; the first situation's good- and bad-news pairs patched
# (each pair is a minute of forwards); behaviour steered with one emotion and preferences
# with three, on half the pairs and two activities, all at one scale. The stages' own
# commands (`corpus generate`, `align`, `steer`, `patch`, `validate NAME`) run their full
# defaults on any corpus.
JOB_SIZES: dict[str, dict[str, Any]] = {
    "stories": {"topics": 2, "max_new_tokens": 120},
    "steer": {"emotions": "happy,sad,afraid,calm"},
    "patch": {"limit": 1},
    "behaviour": {"emotions": "desperate", "scales": "0.2"},
    "preferences": {"emotions": "happy,calm,afraid", "scales": "0.2", "pairs": 120,
                    "steer_activities": 2},
}  # fmt: skip
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
    workspace: Workspace, model_names: list[str], layers: str, dtype: str, device: str,
    force: frozenset[str] = frozenset(), sae_config: str | None = None, train: bool = True,
    sae_tokens: int | None = None, sae_overrides: tuple[str, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    """Run the pipeline for each model in turn, then compare them and write the report;
    return what it did, for printing.

    Every option of every model is checked before the store is opened, so bad input
    changes nothing. Each stage is skipped when it already ran on the same inputs (see
    `stages`), unless `force` names it.
    """
    models.check_options(dtype, device)
    if not model_names:
        raise SaefeaturesError("no model given: pass --model NAME or --models a,b")
    options = sae.TrainOptions(
        config=sae_config, tokens=sae_tokens, dtype=dtype, device=device, overrides=sae_overrides
    )
    training = options if train else None
    plans = [_plan(name, layers, training) for name in model_names]
    workspace.out.mkdir(parents=True, exist_ok=True)
    config = {"models": [plan.spec.name for plan in plans], "layers": layers, "dtype": dtype,
              "device": device, "force": sorted(force), "sae_config": sae_config,
              "train": train, "sae_tokens": sae_tokens,
              "sae_overrides": list(sae_overrides)}  # fmt: skip
    with workspace.open_store() as store, store.run("run", config) as run_id:
        stage = stages.Stages(store, run_id, force)
        done = [_run_model(stage, store, workspace, plan, layers, dtype, device) for plan in plans]
        stage.model = "all models"
        compared, _ = stage("compare", "", {}, [_results_digest(store)], _compare,
                            store, workspace)  # fmt: skip
    with workspace.open_store(read_only=True) as store:
        reported = stage.timed("report", REPORT_NAME, report.write, store,
                               workspace.out / REPORT_NAME)  # fmt: skip
    return {"run_id": run_id, "models": done, "comparisons": compared, "report": reported,
            "timings": stage.timings}  # fmt: skip


@dataclass(frozen=True)
class ModelPlan:
    """One model's part of a run, checked before anything runs: its layers and SAE training
    (options, or why the job trains none)."""

    spec: models.ModelSpec
    layers: list[int]
    training: sae.TrainOptions | str


def _plan(name: str, layers: str, training: sae.TrainOptions | None) -> ModelPlan:
    spec = models.resolve(name)
    chosen = activations.select_layers(layers, models.shape_of(spec)["n_layers"], spec.name)
    if training is None:
        return ModelPlan(spec, chosen, "SAE training is off (--no-train)")
    return ModelPlan(spec, chosen, _training(spec, chosen, replace(training, model=spec.name)))


def _training(
    spec: models.ModelSpec, chosen: list[int], training: sae.TrainOptions
) -> sae.TrainOptions | str:
    """Train at the SAE config's layers among the chosen ones: the model's preset unless
    `--config` names another. A model without a preset trains none (unless asked)."""
    if training.config is None and sae_presets.preset_path(None, spec.slug) is None:
        return f"no SAE preset for {spec.name}; pass --config FILE to train in the job"
    configured = sae.plan_training(training).layers
    wanted = [layer for layer in configured if layer in chosen]
    if not wanted:
        return f"the SAE config trains layers {configured}, none of them among --layers"
    options = replace(training, layers=",".join(map(str, wanted)))
    sae.plan_training(options)  # every check of the train command, now
    return options


def _run_model(
    stage: stages.Stages, store: Store, workspace: Workspace, plan: ModelPlan, layers: str,
    dtype: str, device: str,
) -> dict[str, Any]:  # fmt: skip
    """Every stage of one model, in order."""
    stage.model = plan.spec.name
    model = models.load(plan.spec.name, dtype=dtype, device=device)
    with models.shared(model):  # every stage below loads it by name
        described = register_model(store, stage.run_id, model)
        model_key = stages.content_key("model", {**described, "run_id": None}, [])
        batch = model.encode([model.format_prompt(SAMPLE_PROMPT)], chat_formatted=True)
        acts = activations.harvest(model, batch, plan.layers)
        job = Job(stage, store, workspace, model, model_key, plan.layers, layers, dtype, device)
        vector_keys, best = _representations(job)
        trained = _train_stage(job, plan.training)
        corpus = list(vector_keys)[-1]  # the stories where there are any, else the templates
        aligned, sae_keys = _align_with_registered_saes(job, corpus, vector_keys[corpus])
        sae_layers = sorted({row[0] for row in aligned})
        steered, _ = stage("steer", f"{plan.spec.name}, {corpus}", {"layers": plan.layers,
                           "dtype": dtype, **JOB_SIZES["steer"]}, [vector_keys[corpus], *sae_keys],
                           _steer, job, sae_layers, corpus)  # fmt: skip
        patched, _ = stage("patch", plan.spec.name, {**JOB_SIZES["patch"], "dtype": dtype},
                           [model_key, *sae_keys], _patch, job)  # fmt: skip
        validated = _validate(job, steered["layer"], bool(sae_layers), corpus,
                              [vector_keys[corpus], *sae_keys])  # fmt: skip
        residuals = [
            (layer, tuple(act.shape), float(act.float().norm(dim=-1).mean()))
            for layer, act in acts.items()
        ]
        return {"model": described, "residuals": residuals, "training": trained, "geometry": best,
                "alignment": aligned, "steering": steered, "patching": patched,
                "validation": validated}  # fmt: skip


def _train_stage(job: Job, training: sae.TrainOptions | str) -> dict[str, Any]:
    """Train the planned SAEs (resuming or skipping what is trained), or say why none."""
    if isinstance(training, str):
        return {"skipped": training}
    planned = sae.plan_training(training)
    config = {"sae_ids": sorted(planned.ids.values()), "device": job.device}
    summary, _ = job.stage("train", f"{planned.spec.name}, layers {planned.layers}", config,
                           [job.model_key], _train, job, training)  # fmt: skip
    return summary


def _train(job: Job, training: sae.TrainOptions) -> dict[str, Any]:
    done = sae.train(job.store, job.workspace.out, training)
    return {"saes": done["saes"], "train_seconds": done.get("train_seconds")}


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
        options = stories.StoryOptions(spec.name, name, dtype=job.dtype, device=job.device,
                                       **JOB_SIZES["stories"])  # fmt: skip
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
    options = patching.PatchOptions(job.model.spec.name, dtype=job.dtype, device=job.device,
                                    **JOB_SIZES["patch"])  # fmt: skip
    return patching.patch(job.store, job.workspace.out, options)


def _steer(job: Job, sae_layers: list[int], corpus: str) -> dict[str, Any]:
    """Steer at the first layer with an aligned SAE (both levels), else at the chosen layer
    nearest a third of the depth (direction only), with the last corpus's vectors."""
    third = round(job.model.n_layers / 3)
    layer = sae_layers[0] if sae_layers else min(job.layers, key=lambda at: abs(at - third))
    options = steering.SteerOptions(job.model.spec.name, layer,
                                    "both" if sae_layers else "direction", corpus=corpus,
                                    dtype=job.dtype, device=job.device,
                                    **JOB_SIZES["steer"])  # fmt: skip
    result = steering.steer(job.store, job.workspace.out, options)
    return {"layer": layer, "corpus": corpus, "summary": steering.summarize(result["rows"])}


# Each validation experiment: its options and its entry point. The job runs each at the
# steering layer, behaviour and preferences at their JOB_SIZES.
VALIDATIONS: dict[str, tuple[Callable[..., Any], Callable[[Store, Any], dict[str, Any]]]] = {
    "retrieval": (retrieval.RetrievalOptions, retrieval.retrieve),
    "quantity": (quantity.QuantityOptions, quantity.run_test),
    "behaviour": (behaviour.BehaviourOptions, behaviour.behaviour),
    "preferences": (preferences.PreferenceOptions, preferences.preferences),
}


def _validate(
    job: Job, layer: int, with_features: bool, corpus: str, inputs: list[str]
) -> dict[str, Any]:
    """The four validation experiments at the steering layer, with the corpus's vectors
    and, where an SAE is aligned there, its features: each one's row count or why not."""
    level = "both" if with_features else "direction"
    done = {}
    for name, (make_options, experiment) in VALIDATIONS.items():
        where = {"layers": str(layer)} if name in ("retrieval", "quantity") else {"layer": layer}
        options = make_options(model=job.model.spec.name, corpus=corpus, level=level,
                               dtype=job.dtype, device=job.device, **where,
                               **JOB_SIZES.get(name, {}))  # fmt: skip
        done[name], _ = job.stage("validate", f"{name}, layer {layer}", asdict(options), inputs,
                                  _validation, experiment, job.store, options)  # fmt: skip
    return done


def _validation(experiment: Callable[..., dict[str, Any]], store: Store, options: Any) -> Any:
    """Run one experiment, or say why it cannot run here (e.g. too few emotions)."""
    try:
        result = experiment(store, options)
    except SaefeaturesError as error:
        return {"skipped": str(error)}
    return {"run_id": result.get("run_id")}


def _align_with_registered_saes(
    job: Job, corpus: str, vector_key: str
) -> tuple[list[list[Any]], list[str]]:
    """Align and map the corpus's vectors with every SAE of the model at the chosen layers
    (trained by the job or trained and loaded before); the rows to print and the stages'
    keys."""
    model = job.model.spec.name
    found = job.store.query(
        "SELECT layer, sae_id, path FROM saes WHERE model = ? AND hook = 'blocks.' || layer || "
        "'.hook_resid_post' ORDER BY layer, sae_id",
        [model],
    ).to_pylist()
    rows, keys = [], []
    for found_sae in (row for row in found if row["layer"] in job.layers):
        layer = found_sae["layer"]
        options = alignment.AlignOptions(layer, model, corpus=corpus, dtype=job.dtype,
                                         device=job.device)  # fmt: skip
        done, key = job.stage("align", f"layer {layer}, {corpus}", asdict(options),
                              [vector_key, found_sae["sae_id"], found_sae["path"]], _align,
                              job, options)  # fmt: skip
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
        [options.layer, options.corpus, row["sae_id"], f"{row['fraction_above_null']:.0%}",
         f"{row['fraction_above_shuffled_null']:.0%}", figure["files"][0]]
        for row in result["saes"]
    ]  # fmt: skip
