"""The main job (`saefeatures run`): every stage in order, each writing to the store.

For each model in turn the job registers it and shows its residual stream on a sample
prompt; has it write emotion stories (instruct models, unless asked not to); builds
contrast vectors from each corpus and analyses their geometry; trains SAEs at the SAE
config's layers; aligns the last corpus's vectors with every SAE of the model at the
chosen layers, with a UMAP of each; steers with the directions (and the aligned features
where an SAE is aligned); patches the first good- and bad-news situation; and runs the
validation experiments. Then it compares what the store allows, across the models too,
and writes the HTML report, whatever failed before it.

Each stage is skipped when it ran before on the same inputs; a stage that fails is
recorded and only the stages that need its output are left out (see `stages`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from saefeatures import compare, models, options, steering
from saefeatures.alignment import align, feature_map
from saefeatures.config import REPORT_NAME
from saefeatures.corpora import catalog, stories
from saefeatures.errors import SaefeaturesError, writable_folder
from saefeatures.options import RunOptions, TrainOptions
from saefeatures.patching import patch, reply_scores
from saefeatures.pipeline import stages
from saefeatures.pipeline.stages import Outcome
from saefeatures.report import build
from saefeatures.sae import api as sae
from saefeatures.sae import config as sae_presets
from saefeatures.store import read
from saefeatures.store.database import Store
from saefeatures.store.workspace import Workspace
from saefeatures.validation import behaviour, preferences, quantity, retrieval
from saefeatures.vectors import extraction, geometry

SAMPLE_PROMPT = "I just got accepted into my dream PhD program today!"
# The job runs every stage at sizes that keep the demo short on 2 CPU cores: with
# --model-stories, two model stories of up to 120 tokens per emotion (two topics, so that
# retrieval can hold one out); steering with four emotions; the first situation's good-
# and bad-news pairs patched (each pair is a minute of forwards); behaviour steered with
# one emotion and preferences with three, on half the pairs and two activities, all at
# one scale. The stages' own commands run their full defaults on any corpus.
JOB_SIZES: dict[str, dict[str, Any]] = {
    "stories": {"topics": 2, "max_new_tokens": 120},
    "steer": {"emotions": ("happy", "sad", "afraid", "calm")},
    "patch": {"limit": 1},
    "behaviour": {"emotions": ("desperate",), "scales": (0.2,)},
    "preferences": {
        "emotions": ("happy", "calm", "afraid"),
        "scales": (0.2,),
        "pairs": 120,
        "steer_activities": 2,
    },
}
EXAMPLE_QUERIES = (
    "SELECT model, corpus, emotion_set, layer, round(pearson_r, 3) AS r, ci_low, ci_high, "
    "round(heldout_r, 3) AS heldout_r, round(split_r, 3) AS split_r FROM geometry_best "
    "WHERE method = 'denoised'",
    "SELECT emotion_a, emotion_b, expected_sign, round(cosine, 3) AS cosine FROM vector_pairs "
    "WHERE layer = 10 AND method = 'denoised'",
    "SELECT run_id, command, status, started, finished FROM runs ORDER BY started",
)


@dataclass(frozen=True)
class ModelPlan:
    """One model's part of a run, checked before anything runs: its layers and SAE training
    (options, or why the job trains none)."""

    spec: models.ModelSpec
    layers: list[int]
    training: TrainOptions | str


@dataclass
class ModelResult:
    """What the job did for one model, for printing."""

    facts: dict[str, Any]
    residuals: list[tuple[int, tuple[int, ...], float]] = field(default_factory=list)
    geometry: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    alignment: list[list[Any]] = field(default_factory=list)
    steering: dict[str, Any] = field(default_factory=dict)
    patching: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class JobResult:
    run_id: str
    models: list[ModelResult]
    comparisons: dict[str, Any]
    report: build.Report | None
    outcomes: list[Outcome]

    @property
    def failed(self) -> list[Outcome]:
        return stages.with_status(self.outcomes, "failed")

    @property
    def blocked(self) -> list[Outcome]:
        return stages.with_status(self.outcomes, "blocked")


def run(workspace: Workspace, chosen: RunOptions) -> JobResult:
    """Run the pipeline for each model in turn, then compare them and write the report.

    Every option of every model is checked before the store is opened, so bad input
    changes nothing. A stage that fails does not stop the job: the stages that need its
    output are left out, the rest run, and the report shows what exists.
    """
    models.check_options(chosen.dtype, chosen.device)
    plans = [_plan(name, chosen) for name in chosen.models]
    writable_folder(workspace.out, "the run's artifacts")
    config = {**asdict(chosen), "models": [plan.spec.name for plan in plans]}
    with workspace.open_store() as store, store.run("run", config) as run_id:
        stage = stages.Stages(store, run_id, chosen.forced, workspace.logs)
        done = [_run_model(Job(stage, store, workspace, plan, chosen)) for plan in plans]
        stage.model = "all models"
        compared = stage("compare", "", {}, [_results_digest(store)], _compare, store, workspace)
        if stage.failed:
            names = ", ".join(f"{o.name} [{o.model}]" for o in stage.failed)
            store.fail_when_done(run_id, f"stages failed: {names}")
    _, report = stage.always("report", REPORT_NAME, _report, workspace)
    comparisons = compared.summary if compared.ok else {"skipped": compared.error}
    return JobResult(run_id, done, comparisons, report, stage.outcomes)


def _plan(name: str, chosen: RunOptions) -> ModelPlan:
    spec = models.resolve(name)
    layers = read.checked_layers(chosen.layers, spec)
    if not chosen.train:
        return ModelPlan(spec, layers, "SAE training is off (--no-train)")
    training = TrainOptions(
        model=spec.name,
        config=chosen.sae_config,
        tokens=chosen.sae_tokens,
        dtype=None if chosen.dtype == "auto" else chosen.dtype,
        device=chosen.device,
        overrides=chosen.sae_overrides,
    )
    return ModelPlan(spec, layers, _training(spec, layers, training))


def _training(
    spec: models.ModelSpec, chosen: list[int], training: TrainOptions
) -> TrainOptions | str:
    """Train at the SAE config's layers among the chosen ones: the model's preset unless
    `--config` names another. A model without a preset trains none (unless asked)."""
    if training.config is None and sae_presets.preset_path(None, spec.slug) is None:
        return f"no SAE preset for {spec.name}; pass --config FILE to train in the job"
    configured = sae.plan_training(training).layers
    wanted = tuple(layer for layer in configured if layer in chosen)
    if not wanted:
        return f"the SAE config trains layers {configured}, none of them among --layers"
    options_ = replace(training, layers=wanted)
    sae.plan_training(options_)  # every check of the train command, now
    return options_


@dataclass(frozen=True)
class Job:
    """What every stage of one model in one `run` shares."""

    stage: stages.Stages
    store: Store
    workspace: Workspace
    plan: ModelPlan
    options: RunOptions
    model_key: str = ""  # a digest of the loaded model's description
    model: models.LoadedModel | None = None  # loaded once, for every stage

    @property
    def spec(self) -> models.ModelSpec:
        return self.plan.spec

    def sized(self, make: Callable[..., Any], **fields: Any) -> Any:
        """Options for one of the job's stages: the job's model, dtype and device."""
        return make(
            model=self.spec.name, dtype=self.options.dtype, device=self.options.device, **fields
        )


def _run_model(job: Job) -> ModelResult:
    """Every stage of one model, in order."""
    job.stage.model = job.spec.name
    loaded, model = job.stage.always("load", job.spec.name, _load, job)
    if not loaded.ok:
        return ModelResult({"model": job.spec.name, "error": loaded.error})
    result = ModelResult(_register(job.store, job.stage.run_id, model))
    job = replace(job, model=model, model_key=stages.content_key("model", result.facts, []))
    result.residuals = _sample_residuals(model, job.plan.layers)
    vectors, result.geometry = _representations(job, model)
    main = list(vectors)[-1]
    result.training = _train_stage(job)
    aligned = _align_with_registered_saes(job, main, vectors[main])
    result.alignment = [row for outcome in aligned if outcome.ok for row in outcome.summary]
    sae_layers = sorted({row[0] for row in result.alignment})
    emotions = read.vector_emotions(job.store, job.spec.name, main)
    steered = _steer_stage(job, sae_layers, main, emotions, [vectors[main], *aligned])
    result.steering = steered.summary if steered.ok else {"skipped": steered.error}
    result.patching = _patch_stage(job, aligned)
    layer = steered.summary["layer"] if steered.ok else _steer_layer(job, sae_layers)
    result.validation = _validate(job, layer, sae_layers, main, emotions, [vectors[main], *aligned])
    return result


def _load(job: Job) -> models.LoadedModel:
    return models.load(job.spec.name, dtype=job.options.dtype, device=job.options.device)


def _register(store: Store, run_id: str, model: models.LoadedModel) -> dict[str, Any]:
    store.register_model(run_id, model.describe())
    return model.describe()


def _sample_residuals(
    model: models.LoadedModel, layers: list[int]
) -> list[tuple[int, tuple[int, ...], float]]:
    """The residual stream on a sample prompt at the chosen layers: one forward."""
    from saefeatures import activations

    batch = model.encode([model.format_prompt(SAMPLE_PROMPT)], chat_formatted=True)
    acts = activations.harvest(model, batch, layers)
    return [
        (layer, tuple(act.shape), float(act.float().norm(dim=-1).mean()))
        for layer, act in acts.items()
    ]


# -- corpora, vectors, geometry ------------------------------------------------------


def _representations(job: Job, model: models.LoadedModel) -> tuple[dict[str, Outcome], dict]:
    """Stories (instruct models), then vectors and geometry per corpus: the vectors' stage
    outcomes by corpus (the last one is the job's main corpus) and the best layers."""
    corpora = {name: [] for name in job.options.corpora}
    if job.options.model_stories and model.is_chat:
        name = f"stories-{job.spec.slug}"
        made = job.sized(
            options.StoryOptions, name=name, emotions=job.options.emotions, **JOB_SIZES["stories"]
        )
        inputs = [stages.shipped_digest("topics.txt")]
        written = job.stage(
            "stories", name, asdict(made), inputs, stories.generate, job.store, made
        )
        corpora[name] = [written]
    vector_outcomes, best = {}, {}
    for corpus, needs in corpora.items():
        vector_outcomes[corpus] = _vectors(job, corpus, needs)
        analysed = job.sized(options.GeometryOptions, corpus=corpus)
        found = job.stage(
            "geometry",
            corpus,
            asdict(analysed),
            [vector_outcomes[corpus].key, stages.shipped_digest("ratings.csv")],
            _geometry,
            job,
            analysed,
            needs=[vector_outcomes[corpus]],
        )
        if found.ok:
            best[corpus] = found.summary
    return vector_outcomes, best


def _vectors(job: Job, corpus: str, needs: list[Outcome]) -> Outcome:
    made = job.sized(
        options.VectorOptions,
        corpus=corpus,
        emotions=job.options.emotions,
        layers=job.options.layers,
    )
    if not needs or needs[0].ok:
        for name in (corpus, catalog.neutral_of(corpus)):  # stored first: real digests
            catalog.ensure_builtin(job.store, job.stage.run_id, name)
    read_corpora = (corpus, catalog.neutral_of(corpus))
    inputs = [job.model_key, *(read.corpus_digest(job.store, c) for c in read_corpora)]
    return job.stage(
        "vectors",
        corpus,
        asdict(made),
        inputs,
        extraction.extract,
        job.store,
        made,
        job.model,
        needs=needs,
    )


def _geometry(job: Job, analysed: options.GeometryOptions) -> dict[str, Any]:
    found = geometry.analyze(job.store, job.workspace.out, analysed, job.model)
    return {**found.best_row(), "figures": found.figures}


# -- SAEs and alignment --------------------------------------------------------------


def _train_stage(job: Job) -> dict[str, Any]:
    """Train the planned SAEs (resuming or skipping what is trained), or say why none."""
    training = job.plan.training
    if isinstance(training, str):
        return {"skipped": training}
    planned = sae.plan_training(training)
    config = {"sae_ids": sorted(planned.ids.values()), "device": job.options.device}
    trained = job.stage(
        "train", f"layers {planned.layers}", config, [job.model_key], _train, job, training
    )
    return trained.summary if trained.ok else {"skipped": trained.error}


def _train(job: Job, training: TrainOptions) -> dict[str, Any]:
    done = sae.train(job.store, job.workspace.out, training, model=job.model)
    return {"saes": done.saes, "train_seconds": done.train_seconds}


def _align_with_registered_saes(job: Job, corpus: str, vectors: Outcome) -> list[Outcome]:
    """Align and map the corpus's vectors with every SAE of the model at the chosen layers
    (trained by the job or trained and loaded before)."""
    found = read.residual_saes(job.store, job.spec.name)
    outcomes = []
    for layer in (layer for layer in found if layer in job.plan.layers):
        for row in found[layer]:
            made = job.sized(options.AlignOptions, layer=layer, sae=row["sae_id"], corpus=corpus)
            outcomes.append(
                job.stage(
                    "align",
                    f"layer {layer}, {corpus}",
                    asdict(made),
                    [vectors.key, row["sae_id"], row["path"]],
                    _align,
                    job,
                    made,
                    needs=[vectors],
                )
            )
    return outcomes


def _align(job: Job, made: options.AlignOptions) -> list[list[Any]]:
    result = align.align(job.store, made, job.model)
    figure = feature_map.draw(
        job.store,
        job.workspace.out,
        options.UmapOptions(layer=made.layer, model=made.model, sae=made.sae, corpus=made.corpus),
    )
    return [
        [
            made.layer,
            made.corpus,
            row.sae_id,
            f"{row.fraction_above_shuffled_null:.0%}",
            f"{row.fraction_omp_above_shuffled:.0%}",
            f"{row.fraction_heldout_auroc_p05:.0%}",
            figure.files[0],
        ]
        for row in result.saes
    ]


# -- interventions -------------------------------------------------------------------


def _steer_layer(job: Job, sae_layers: list[int]) -> int:
    """The first layer with an aligned SAE, else the chosen layer nearest a third of the
    depth: where the job steers and runs its validations."""
    if sae_layers:
        return sae_layers[0]
    third = round(models.shape_of(job.spec)["n_layers"] / 3)
    return min(job.plan.layers, key=lambda at: abs(at - third))


def covered(wanted: tuple[str, ...], emotions: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The wanted emotions that have vectors, and those that do not."""
    return tuple(e for e in wanted if e in emotions), [e for e in wanted if e not in emotions]


def _steer_stage(
    job: Job, sae_layers: list[int], corpus: str, emotions: list[str], needs: list[Outcome]
) -> Outcome:
    layer = _steer_layer(job, sae_layers)
    made = job.sized(
        options.SteerOptions,
        layer=layer,
        corpus=corpus,
        level="both" if sae_layers else "direction",
        **JOB_SIZES["steer"],
    )
    return job.stage(
        "steer",
        f"layer {layer}, {corpus}",
        asdict(made),
        [n.key for n in needs],
        _steer,
        job,
        made,
        emotions,
        needs=needs[:1],
    )


def _steer(job: Job, made: options.SteerOptions, emotions: list[str]) -> dict[str, Any]:
    """Steer with the chosen emotions that have vectors, or say why none can be steered."""
    chosen, missing = covered(made.emotions, emotions)
    summary = {
        "layer": made.layer,
        "corpus": made.corpus,
        "emotions": list(chosen),
        "left_out": missing,
    }
    if not chosen:
        return {**summary, "skipped": "no steering emotion has a vector"}
    result = steering.steer(job.store, job.workspace.out, replace(made, emotions=chosen), job.model)
    return {**summary, "summary": steering.summarize(result.summary)}


def _patch_stage(job: Job, aligned: list[Outcome]) -> dict[str, Any]:
    made = job.sized(options.PatchOptions, **JOB_SIZES["patch"])
    saes = [
        row["sae_id"]
        for rows in read.residual_saes(job.store, job.spec.name).values()
        for row in rows
    ]
    patched = job.stage(
        "patch",
        job.spec.name,
        asdict(made),
        [job.model_key, *saes, stages.shipped_digest("news_pairs.jsonl")],
        _patch,
        job,
        made,
    )
    return patched.summary if patched.ok else {"skipped": patched.error}


def _patch(job: Job, made: options.PatchOptions) -> dict[str, Any]:
    """Patch the first situations, or say why not (a tokenizer whose anchor words share a
    first token, as byte-level test tokenizers do, has no anchor score)."""
    assert job.model is not None
    try:
        reply_scores.anchor_score(job.model)
    except SaefeaturesError as error:
        return {"skipped": str(error)}
    return patch.patch(job.store, job.workspace.out, made, job.model)


# -- validation experiments ----------------------------------------------------------

# Each validation experiment: its options, its entry point and the shipped files it reads.
VALIDATIONS: dict[str, tuple[Callable[..., Any], Callable[..., Any], tuple[str, ...]]] = {
    "retrieval": (options.RetrievalOptions, retrieval.retrieve, ()),
    "quantity": (options.QuantityOptions, quantity.run_test, ("quantity.jsonl",)),
    "behaviour": (options.BehaviourOptions, behaviour.behaviour, ("pressure_scenarios.jsonl",)),
    "preferences": (options.PreferenceOptions, preferences.preferences, ("activities.csv",)),
}


def _validate(
    job: Job,
    layer: int,
    sae_layers: list[int],
    corpus: str,
    emotions: list[str],
    needs: list[Outcome],
) -> dict[str, dict[str, Any]]:
    """The four validation experiments at the steering layer, with the corpus's vectors
    and, where an SAE is aligned there, its features: each one's run or why not."""
    level = "both" if layer in sae_layers else "direction"
    done = {}
    for name, (make, experiment, shipped) in VALIDATIONS.items():
        where = {"layers": (layer,)} if name in ("retrieval", "quantity") else {"layer": layer}
        if name == "quantity":
            where["headline_layer"] = layer
        sizes = dict(JOB_SIZES.get(name, {}))
        made = job.sized(make, corpus=corpus, level=level, **where, **sizes)
        inputs = [n.key for n in needs] + [stages.shipped_digest(*shipped)]
        outcome = job.stage(
            "validate",
            f"{name}, layer {layer}",
            asdict(made),
            inputs,
            _validation,
            experiment,
            job,
            made,
            emotions,
            needs=needs[:1],
        )
        done[name] = outcome.summary if outcome.ok else {"skipped": outcome.error}
    return done


def _validation(
    experiment: Callable[..., Any], job: Job, made: Any, emotions: list[str]
) -> dict[str, Any]:
    """Run one experiment with the chosen emotions that have vectors, or say why it cannot
    run here (e.g. too few emotions)."""
    missing: list[str] = []
    if made.emotions is not None:
        chosen, missing = covered(made.emotions, emotions)
        if not chosen:
            return {
                "skipped": f"none of its emotions has a vector (left out: {', '.join(missing)})"
            }
        made = replace(made, emotions=chosen)
    try:
        result = experiment(job.store, made, job.model)
    except SaefeaturesError as error:
        return {"skipped": str(error)}
    return {"run_id": result.run_id, "left_out": missing}


# -- across models ---------------------------------------------------------------------


def _results_digest(store: Store) -> str:
    """Changes whenever any command other than `run` and `compare` finishes anew."""
    return store.query(
        "SELECT md5(coalesce(string_agg(run_id, ',' ORDER BY run_id), '')) AS digest FROM runs "
        "WHERE status = 'ok' AND command NOT IN ('run', 'compare')"
    )["digest"][0].as_py()


def _compare(store: Store, workspace: Workspace) -> compare.Compared | dict[str, str]:
    """Every comparison the store allows so far, or why there is none yet."""
    try:
        return compare.compare(store, workspace.out, options.CompareOptions())
    except SaefeaturesError as error:
        return {"skipped": str(error)}


def _report(workspace: Workspace) -> build.Report:
    with workspace.open_store(read_only=True) as store:
        return build.write(store, workspace.out / REPORT_NAME)
