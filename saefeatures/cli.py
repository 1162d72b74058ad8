"""The `saefeatures` command line: each command parses options and calls one library function."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

# Typer vendors its own click; its exception types live there (typer is pinned).
from typer._click.exceptions import ClickException, UsageError

from saefeatures import (
    __version__,
    behaviour,
    corpora,
    geometry,
    models,
    patching,
    pipeline,
    preferences,
    present,
    quantity,
    queries,
    retrieval,
    stories,
    validation,
    vectors,
)
from saefeatures.config import DB_ENV, DEFAULT_DB, DEFAULT_MODEL, DEFAULT_OUT, OUT_ENV
from saefeatures.errors import SaefeaturesError

app = typer.Typer(
    help="Emotion directions and SAE features in open language models, in one DuckDB store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="The model registry: list, inspect, convert.")
db_app = typer.Typer(help="The DuckDB store.", no_args_is_help=True)
corpus_app = typer.Typer(help="Text corpora: list, show, import.", no_args_is_help=True)
validate_app = typer.Typer(
    help="The original study's validation experiments, with directions and SAE features.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
app.add_typer(db_app, name="db")
app.add_typer(corpus_app, name="corpus")
app.add_typer(validate_app, name="validate")

DbOption = Annotated[
    Path, typer.Option("--db", envvar=DB_ENV, help="DuckDB file of the workspace.")
]
OutOption = Annotated[
    Path, typer.Option("--out", envvar=OUT_ENV, help="Folder for artifacts (SAEs, figures).")
]
ModelOption = Annotated[
    str,
    typer.Option("--model", help="Embedded model name, Hugging Face name or local directory."),
]
DtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype", help="auto (bfloat16 where the hardware computes in it), float32, bfloat16."
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda or mps.")]


@app.command("run")
def run_command(
    model: ModelOption = DEFAULT_MODEL,
    models_: Annotated[
        str | None,
        typer.Option(
            "--models", help="Several models in turn, e.g. smollm2-135m-instruct,gemma-3-270m."
        ),
    ] = None,
    layers: Annotated[str, typer.Option("--layers", help="'all' or e.g. 4,8,10.")] = "all",
    config: Annotated[
        str | None,
        typer.Option(
            "--config", help="SAE config (YAML file or preset); default: the model's preset."
        ),
    ] = None,
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Train SAEs at the config's layers.")
    ] = True,
    sae_tokens: Annotated[
        int | None,
        typer.Option("--sae-tokens", help="Training tokens per SAE (default: the config's)."),
    ] = None,
    sae_overrides: Annotated[
        list[str] | None,
        typer.Option("--sae-set", help="KEY=VALUE override of the SAE config (repeatable)."),
    ] = None,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    force: Annotated[
        list[str] | None,
        typer.Option(
            "--force",
            help="Rerun a stage done before on the same inputs (repeatable): stories, "
            "vectors, geometry, train, align, steer, patch, validate, compare, or all.",
        ),
    ] = None,
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Run the main job on one model or several (stages done before on the same inputs are
    skipped)."""
    from saefeatures import stages

    names = [name.strip() for name in models_.split(",") if name.strip()] if models_ else [model]
    result = pipeline.run(pipeline.Workspace(db, out), names, layers, dtype, device,
                          stages.check_force(force or []), config, train, sae_tokens,
                          tuple(sae_overrides or ()))  # fmt: skip
    for done in result["models"]:
        _print_model_run(done)
    if "skipped" in result["comparisons"]:
        print(f"comparisons skipped: {result['comparisons']['skipped']}")
    with pipeline.Workspace(db, out).open_store(read_only=True) as store:
        present.print_rows(["table", "rows"], store.table_counts(), title="store tables")
    present.print_rows(
        ["model", "stage", "part", "status", "seconds"],
        ([t["model"], t["stage"], t["part"], t["status"], f"{t['seconds']:.1f}"]
         for t in result["timings"]),
        title="stages (skipped: done before on the same inputs; --force STAGE reruns)",
    )  # fmt: skip
    print(f"run {result['run_id']}: database {db}, figures under {out}")
    print(f"report: {result['report']['path']} (open it in a browser)")
    print("try:")
    for query in pipeline.EXAMPLE_QUERIES:
        print(f'  saefeatures sql "{query}"')


def _print_model_run(done: dict) -> None:
    """What the main job did for one model."""
    described = done["model"]
    name = described["model"]
    present.print_rows(["fact", "value"], described.items(), title=f"model {name}")
    present.print_rows(
        ["layer", "resid_post shape", "mean norm"],
        done["residuals"],
        title=f"residual stream on: {pipeline.SAMPLE_PROMPT}",
    )
    present.print_rows(
        ["corpus", "best layer", "depth", "PC1-valence r", "95% CI", "q"],
        (
            [corpus, b["layer"], f"{b['rel_depth']:.2f}", f"{b['pearson_r']:.3f}",
             f"[{b['ci_low']:.2f}, {b['ci_high']:.2f}]", f"{b['q_value']:.3g}"]
            for corpus, b in done["geometry"].items()
        ),
        title=f"geometry of the denoised emotion vectors ({name})",
    )  # fmt: skip
    trained = done["training"]
    if "skipped" in trained:
        print(f"SAE training skipped: {trained['skipped']}")
    else:
        saes = trained["saes"]
        present.print_rows(list(saes[0]), (row.values() for row in saes), title="SAEs trained")
    if done["alignment"]:
        present.print_rows(
            ["layer", "corpus", "SAE", "best |cos| > random p99", "> shuffled p99", "UMAP"],
            done["alignment"],
            title="emotion vectors aligned with SAE features",
        )
    else:
        print("no SAE at these layers: pass --config to train one, or `saefeatures load`")
    steered = done["steering"]
    present.print_rows(
        list(steered["summary"][0]),
        (row.values() for row in steered["summary"]),
        title=f"steering at layer {steered['layer']} with the {steered['corpus']} vectors",
    )
    patched = done["patching"]
    if "skipped" in patched:
        print(f"patching skipped: {patched['skipped']}")
    else:
        for title, columns, rows in patching.tables(patched["summary"]):
            present.print_rows(columns, rows, title=f"patching ({patched['pairs']} pairs): {title}")
    for name, outcome in done["validation"].items():
        said = outcome.get("skipped") or f"in the store, run {outcome['run_id']}"
        print(f"validate {name}: {said}")


@models_app.callback(invoke_without_command=True)
def models_list(ctx: typer.Context) -> None:
    """List the embedded models: source, layers, widths, heads, vocabulary, cache state."""
    if ctx.invoked_subcommand is None:
        rows = models.registry()
        present.print_rows(list(rows[0]), (row.values() for row in rows), title="models")


@models_app.command("info")
def models_info(
    name: Annotated[str, typer.Argument(help="Model name, Hugging Face name or directory.")],
    dtype: DtypeOption = "float32",
    device: DeviceOption = "cpu",
) -> None:
    """Load a model and print its full spec and hook names."""
    model = models.load(name, dtype=dtype, device=device)
    present.print_rows(["fact", "value"], model.describe().items(), title=name)
    templates = models.hook_templates(model.hook_names())
    present.print_rows(
        ["hook"], ([t] for t in templates), title=f"hooks (L = 0..{model.n_layers - 1})"
    )


@models_app.command("convert")
def models_convert(
    name: Annotated[str, typer.Argument(help="Embedded model name.")],
    force: Annotated[bool, typer.Option("--force", help="Convert again over the cache.")] = False,
) -> None:
    """De-quantize an embedded GGUF model into the cache (done on first use anyway)."""
    print(models.convert(models.resolve(name), force=force))


@app.command("sql")
def sql_command(
    query: Annotated[
        str,
        typer.Argument(help="One read-only SQL statement, a .sql file, or a shipped query's name."),
    ],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Query the store read-only (`saefeatures queries` lists the shipped examples)."""
    if fmt not in present.FORMATS:
        raise SaefeaturesError(f"unknown format {fmt!r}; use one of {', '.join(present.FORMATS)}")
    sql = queries.resolve(query)
    with pipeline.Workspace(db, DEFAULT_OUT).open_store(read_only=True) as store:
        present.print_arrow(store.query(sql), fmt)


@app.command("queries")
def queries_command() -> None:
    """The example queries shipped with saefeatures; run one with `saefeatures sql NAME`."""
    present.print_rows(
        ["name", "what it answers"],
        ([name, queries.description(path)] for name, path in queries.shipped().items()),
        title="example queries",
    )


@db_app.command("info")
def db_info(db: DbOption = DEFAULT_DB) -> None:
    """Print the schema version, the tables and their row counts."""
    with pipeline.Workspace(db, DEFAULT_OUT).open_store(read_only=True) as store:
        print(f"{db}: schema version {store.schema_version} (saefeatures {__version__})")
        present.print_rows(["table", "rows"], store.table_counts())


CorpusOption = Annotated[
    str, typer.Option("--corpus", help="Corpus name: templates, or one you imported.")
]
EmotionsOption = Annotated[
    str, typer.Option("--emotions", help="default, all, a file (one word a line) or a,b,c.")
]


@corpus_app.command("list")
def corpus_list(db: DbOption = DEFAULT_DB) -> None:
    """The corpora in the store and the built-in ones."""
    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        present.print_arrow(corpora.listing(store), title="corpora")


@corpus_app.command("show")
def corpus_show(
    name: Annotated[str, typer.Argument(help="Corpus name.")],
    model: ModelOption = DEFAULT_MODEL,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Passages per emotion, token statistics (with the model's tokenizer) and a sample."""
    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        summary = corpora.describe(store, name, model)
    present.print_rows(["emotion", "passages"], summary["counts"], title=f"corpus {name}")
    present.print_rows(
        ["statistic", "value"], summary["tokens"].items(), title="tokens per passage"
    )
    present.print_rows(["emotion", "sample"], summary["sample"], title="sample")


@corpus_app.command("import")
def corpus_import(
    source: Annotated[str, typer.Argument(help="A JSONL file, or hf:DATASET.")],
    name: Annotated[str, typer.Option("--name", help="Name of the corpus in the store.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Import passages: JSONL lines with `emotion` and `stories` (a list) or `text`."""
    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        count = corpora.import_corpus(store, source, name)
    print(f"imported {count} passages into corpus {name}")


@corpus_app.command("generate")
def corpus_generate(
    model: ModelOption = DEFAULT_MODEL,
    name: Annotated[str, typer.Option("--name", help="Name of the corpus in the store.")] = (
        "generated"
    ),
    emotions: EmotionsOption = "default",
    topics: Annotated[int, typer.Option("--topics", help="How many shipped topics.")] = 3,
    per_topic: Annotated[int, typer.Option("--stories-per-topic")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size")] = stories.StoryOptions.batch_size,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 200,
    temperature: Annotated[float, typer.Option("--temperature")] = 0.8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Have an instruct model write stories that convey each emotion without naming it."""
    options = stories.StoryOptions(
        model, name, emotions, topics, per_topic, batch_size, max_new_tokens, temperature,
        seed=seed, dtype=dtype, device=device,
    )  # fmt: skip
    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        summary = stories.generate(store, options)
    present.print_rows(["fact", "value"], summary.items(), title="generated stories")


@app.command("vectors")
def vectors_command(
    model: ModelOption = DEFAULT_MODEL,
    corpus: CorpusOption = "templates",
    emotions: EmotionsOption = "default",
    layers: Annotated[str, typer.Option("--layers", help="'all' or e.g. 4,8,10.")] = "all",
    offset: Annotated[int, typer.Option("--offset", help="Pool tokens from here on.")] = 50,
    denoise_var: Annotated[
        float, typer.Option("--denoise-var", help="Neutral variance share projected out.")
    ] = 0.5,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Emotion contrast vectors at every layer, raw and denoised, into the store."""
    options = vectors.VectorOptions(
        model, corpus, emotions, layers, offset, denoise_var, batch_size, dtype, device
    )
    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        summary = vectors.extract(store, options)
    present.print_rows(["fact", "value"], summary.items(), title="emotion vectors")


@app.command("geometry")
def geometry_command(
    model: ModelOption = DEFAULT_MODEL,
    corpus: CorpusOption = "templates",
    ratings: Annotated[
        Path | None, typer.Option("--ratings", help="CSV: emotion, valence, arousal.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail when an emotion has no rating.")
    ] = False,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap/permutations.")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """PCA of the vectors against valence/arousal by layer, sanity pairs, logit lens, figures."""
    options = geometry.GeometryOptions(
        model, corpus, ratings, strict, resamples, seed, dtype=dtype, device=device
    )
    with pipeline.Workspace(db, out).open_store() as store:
        result = geometry.analyze(store, out, options)
    columns = geometry.TABLE_COLUMNS
    present.print_rows(
        columns,
        ([row[column] for column in columns] for row in result["geometry"]),
        title="geometry (each PC's sign fixed so that r >= 0)",
    )
    present.print_rows(
        ["method", "layer", "a", "b", "expected", "cosine"],
        ([p["method"], p["layer"], p["emotion_a"], p["emotion_b"], p["expected_sign"], p["cosine"]]
         for p in result["pairs"] if p["layer"] == result["best"]["layer"]),
        title=f"sanity pairs at the best layer {result['best']['layer']}",
    )  # fmt: skip
    best = result["best"]
    print(
        f"best layer {best['layer']} (depth {best['rel_depth']:.2f}): PC1-valence r = "
        f"{best['pearson_r']:.3f} [95% CI {best['ci_low']:.3f}, {best['ci_high']:.3f}], "
        f"q = {best['q_value']:.3g}; excluded for lack of ratings: "
        f"{', '.join(result['excluded']) or 'none'}"
    )
    print("figures: " + ", ".join(result["figures"]))


# -- sparse autoencoders (saefeatures.sae) ---------------------------------------------

SaeIdArgument = Annotated[str, typer.Argument(help="An SAE id, as listed by `saefeatures saes`.")]


@app.command("train")
def train_command(
    layer: Annotated[int | None, typer.Option("--layer", help="One layer.")] = None,
    layers: Annotated[
        str | None, typer.Option("--layers", help="'all' or e.g. 4,8,10 (one forward per batch).")
    ] = None,
    model: ModelOption = DEFAULT_MODEL,
    config: Annotated[
        str | None, typer.Option("--config", help="YAML file or preset; default: the model's.")
    ] = None,
    hook: Annotated[str | None, typer.Option("--hook", help="resid_post, mlp_out or attn_out.")] = (
        None
    ),
    tokens: Annotated[int | None, typer.Option("--tokens", help="Training tokens.")] = None,
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="Harvest dtype: float32 or bfloat16.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Hugging Face dataset, or local .txt/.jsonl/.parquet."),
    ] = None,
    cache_activations: Annotated[
        bool, typer.Option("--cache-activations", help="Keep activations on disk for reruns.")
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start clean instead of resuming.")
    ] = False,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="KEY=VALUE config override (repeatable).")
    ] = None,
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Train one SAE per layer with SAELens' trainer, evaluate it on held-out text, register it."""
    from saefeatures import sae

    options = sae.TrainOptions(
        model, layers, layer, config, hook, tokens, dtype, seed, dataset, cache_activations,
        restart, device, tuple(overrides or ()),
    )  # fmt: skip
    with pipeline.Workspace(db, out).open_store() as store:
        summary = sae.train(store, out, options)
    saes = summary.pop("saes")
    present.print_rows(["fact", "value"], summary.items(), title="SAE training")
    present.print_rows(list(saes[0]), (row.values() for row in saes), title="SAEs")


@app.command("evaluate")
def evaluate_command(
    sae_id: SaeIdArgument,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Held-out text source; default: training's.")
    ] = None,
    eval_tokens: Annotated[int | None, typer.Option("--eval-tokens")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="float32 or bfloat16.")] = None,
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Recompute an SAE's held-out metrics (L0, explained variance, CE loss recovered, ...)."""
    from saefeatures import sae

    options = sae.EvaluateOptions(sae_id, dataset, eval_tokens, batch_size, dtype, device)
    with pipeline.Workspace(db, out).open_store() as store:
        summary = sae.evaluate(store, out, options)
    present.print_rows(["metric", "value"], summary.items(), title=f"SAE {sae_id}")


@app.command("saes")
def saes_command(
    model: Annotated[str | None, typer.Option("--model", help="Only this model's SAEs.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    db: DbOption = DEFAULT_DB,
) -> None:
    """List the registered SAEs with their headline metrics."""
    from saefeatures import sae

    if fmt not in present.FORMATS:
        raise SaefeaturesError(f"unknown format {fmt!r}; use one of {', '.join(present.FORMATS)}")
    with pipeline.Workspace(db, DEFAULT_OUT).open_store(read_only=True) as store:
        present.print_arrow(sae.list_saes(store, model), fmt, title="SAEs")


@app.command("load")
def load_command(
    path: Annotated[Path | None, typer.Option("--path", help="An SAE folder.")] = None,
    sae_format: Annotated[
        str, typer.Option("--format", help="Folder layout: saelens or sparsify.")
    ] = "saelens",
    release: Annotated[
        str | None, typer.Option("--release", help="SAELens pretrained release.")
    ] = None,
    hub_sae_id: Annotated[
        str | None, typer.Option("--sae-id", help="SAE id within the release.")
    ] = None,
    model: ModelOption = DEFAULT_MODEL,
    hook: Annotated[
        str | None, typer.Option("--hook", help="Hook name or site, overriding the SAE's.")
    ] = None,
    layer: Annotated[int | None, typer.Option("--layer", help="Layer, with --hook SITE.")] = None,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Register an SAE from a folder or SAELens' registry, after checking it fits the model."""
    from saefeatures import sae

    options = sae.LoadOptions(
        model, path, sae_format, release, hub_sae_id, hook, layer, dtype, device
    )
    with pipeline.Workspace(db, out).open_store() as store:
        summary = sae.load(store, out, options)
    present.print_rows(["fact", "value"], summary.items(), title="SAE loaded")


# -- features aligned with emotion vectors (saefeatures.alignment) ----------------------

LayerOption = Annotated[int, typer.Option("--layer", help="The layer of the vectors and SAEs.")]
SaeOption = Annotated[
    str | None, typer.Option("--sae", help="One SAE id; default: every SAE at the layer.")
]


@app.command("align")
def align_command(
    layer: LayerOption,
    model: ModelOption = DEFAULT_MODEL,
    sae_id: SaeOption = None,
    corpus: CorpusOption = "templates",
    method: Annotated[str, typer.Option("--method", help="denoised or raw vectors.")] = "denoised",
    emotions: Annotated[
        str | None, typer.Option("--emotions", help="a,b,c or a file; default: all with vectors.")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Features kept per emotion and method.")] = 50,
    k_max: Annotated[int, typer.Option("--k-max", help="OMP steps (R² for k = 1..k-max).")] = 32,
    null_samples: Annotated[int, typer.Option("--null-samples")] = 1000,
    text_source: Annotated[
        str | None,
        typer.Option("--text", help="Sample text for feature statistics; default: the SAE's."),
    ] = None,
    sample_rows: Annotated[int, typer.Option("--sample-rows", help="Held-out text rows.")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Which SAE features carry each emotion vector: decoder cosine, OMP, activation selectivity."""
    from saefeatures import alignment

    options = alignment.AlignOptions(
        layer, model, sae_id, corpus, method, emotions, top, k_max, null_samples,
        text=text_source, sample_rows=sample_rows, batch_size=batch_size, dtype=dtype,
        device=device, seed=seed,
    )  # fmt: skip
    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        summary = alignment.align(store, options)
    for result in summary.pop("saes"):
        rows = result["per_emotion"]
        present.print_rows(list(rows[0]), (r.values() for r in rows), title=result["sae_id"])
        nulls = result["nulls"]
        print(
            f"best |cos| above the p99 of random unit vectors ({nulls['empirical_null_p99']:.3f}; "
            f"analytic {nulls['analytic_null']:.3f}): {result['fraction_above_null']:.0%} of "
            f"emotions; above the p99 of shuffled-label contrasts "
            f"({nulls['shuffled_null_p99']:.3f}): {result['fraction_above_shuffled_null']:.0%}"
        )
        ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= k_max]
        present.print_rows(
            ["k", "OMP R² (mean)", "random R² (mean)"],
            ([k, result["mean_omp_r2"][k - 1], result["mean_random_r2"][k - 1]] for k in ks),
            title="sparse reconstruction of the vectors",
        )
    present.print_rows(["fact", "value"], summary.items(), title="alignment")


@app.command("steer")
def steer_command(
    model: ModelOption = DEFAULT_MODEL,
    layer: Annotated[int | None, typer.Option("--layer", help="Default: a third of the depth.")] = (
        None
    ),
    level: Annotated[str, typer.Option("--level", help="direction, features or both.")] = "both",
    emotions: Annotated[str, typer.Option("--emotions", help="Steering and target words.")] = (
        "happy,sad,angry,afraid,calm,proud,loving,disgusted"
    ),
    scales: Annotated[
        str, typer.Option("--scales", help="Comma-separated, x the layer's mean residual norm.")
    ] = "0.05,0.1,0.2,0.4",
    gen_scale: Annotated[
        float, typer.Option("--gen-scale", help="Scale of the generations.")
    ] = 0.1,
    corpus: CorpusOption = "templates",
    method: Annotated[str, typer.Option("--method", help="denoised or raw vectors.")] = "denoised",
    sae_id: SaeOption = None,
    gen_tokens: Annotated[int, typer.Option("--gen-tokens", help="Tokens per generation.")] = 24,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Steer with emotion directions and their aligned SAE features; score words and text."""
    from saefeatures import steering

    options = steering.SteerOptions(
        model, layer, level, emotions, scales, gen_scale, corpus, method, sae_id, gen_tokens,
        dtype, device,
    )  # fmt: skip
    with pipeline.Workspace(db, out).open_store() as store:
        result = steering.steer(store, out, options)
    summary = steering.summarize(result["rows"])
    present.print_rows(list(summary[0]), (row.values() for row in summary),
                       title=f"steering {result['model']} at layer {result['layer']}")  # fmt: skip
    examples = steering.examples(result["rows"])
    present.print_rows(["level", "emotion", "valence (words)", "valence (axis)", "generation"],
                       examples, title="generations under steering")  # fmt: skip
    print(f"mean residual norm at layer {result['layer']}: {result['norm']:.2f}")
    print("figures: " + ", ".join(result["figures"]))


@app.command("compare")
def compare_command(
    models_list: Annotated[
        str | None, typer.Option("--models", help="e.g. a,b; default: every model in the store.")
    ] = None,
    corpus: CorpusOption = "templates",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Direction vs features and model vs model, from the store only."""
    from saefeatures import compare

    with pipeline.Workspace(db, out).open_store() as store:
        result = compare.compare(store, out, compare.CompareOptions(models_list, corpus))
    columns = ["kind", "model", "other_model", "layer", "metric", "direction_value",
               "feature_value", "extra"]  # fmt: skip
    present.print_rows(columns, ([row[c] for c in columns] for row in result["rows"]),
                       title="comparisons")  # fmt: skip
    if result["figures"]:
        print("figures: " + ", ".join(result["figures"]))


@app.command("export")
def export_command(
    to: Annotated[Path, typer.Option("--to", help="A new folder for the Parquet files.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Every table as Parquet, partitioned by model and layer, for other engines and machines."""
    from saefeatures import exchange

    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        written = exchange.export(store, to)
    present.print_rows(["table", "rows"], written.items(), title=f"exported to {to}")


@app.command("import-results")
def import_results_command(
    folder: Annotated[Path, typer.Argument(help="A folder written by `saefeatures export`.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Merge exported results (e.g. from other machines) into this store, without duplicates."""
    from saefeatures import exchange

    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        added = exchange.import_results(store, folder)
    present.print_rows(["table", "rows added"], added.items(), title=f"merged {folder}")


@app.command("umap")
def umap_command(
    layer: LayerOption,
    model: ModelOption = DEFAULT_MODEL,
    sae_id: SaeOption = None,
    corpus: CorpusOption = "templates",
    method: Annotated[str, typer.Option("--method", help="denoised or raw vectors.")] = "denoised",
    top: Annotated[int, typer.Option("--top", help="Aligned features per emotion.")] = 10,
    background: Annotated[
        int, typer.Option("--background", help="Random other features for context.")
    ] = 1000,
    neighbors: Annotated[int, typer.Option("--neighbors", help="UMAP n_neighbors.")] = 15,
    min_dist: Annotated[float, typer.Option("--min-dist", help="UMAP min_dist.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File name (.png and .html are written).")
    ] = None,
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """UMAP of the SAE's emotion-aligned decoder directions, with the emotion vectors."""
    from saefeatures import feature_map

    options = feature_map.UmapOptions(
        layer, model, sae_id, corpus, method, top, background, seed, neighbors, min_dist, output
    )
    with pipeline.Workspace(db, out).open_store() as store:
        result = feature_map.draw(store, out, options)
    facts = {"sae_id": result["sae_id"], **result["points"],
             "umap seconds": round(result["umap_seconds"], 1)}  # fmt: skip
    present.print_rows(["fact", "value"], facts.items(), title="UMAP")
    print("figures: " + ", ".join(result["files"]))


@app.command("patch")
def patch_command(
    model: ModelOption = DEFAULT_MODEL,
    pairs: Annotated[
        Path | None, typer.Option("--pairs", help="JSONL: id, condition, clean, corrupted.")
    ] = None,
    level: Annotated[
        str, typer.Option("--level", help="resid, heads, features (SAE attribution) or all.")
    ] = "all",
    score: Annotated[
        str, typer.Option("--score", help="Score the sweeps patch: anchors or replies.")
    ] = "anchors",
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only the first N situations.")
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option("--layers", help="Feature level: e.g. 6,10 (default: every SAE layer)."),
    ] = None,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """Activation patching of good- vs bad-news prompts: residual stream, heads, SAE features."""
    options = patching.PatchOptions(model, pairs, level, score, limit, layers, dtype, device)
    with pipeline.Workspace(db, out).open_store() as store:
        result = patching.patch(store, out, options)
    for title, columns, rows in patching.tables(result["summary"]):
        present.print_rows(columns, rows, title=f"{result['model']}: {title}")
    print("figures: " + ", ".join(result["figures"]))


@app.command("report")
def report_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    db: DbOption = DEFAULT_DB,
) -> None:
    """One self-contained HTML report (tables, figures, provenance) from the store alone."""
    from saefeatures import report

    with pipeline.Workspace(db, DEFAULT_OUT).open_store(read_only=True) as store:
        result = report.write(store, output)
    print(f"report: {result['path']} ({len(result['sections'])} sections, "
          f"{result['figures']} figures)")  # fmt: skip


# -- validation experiments (saefeatures.retrieval, saefeatures.quantity) ---------------

LevelOption = Annotated[str, typer.Option("--level", help="direction, features or both.")]
TopKOption = Annotated[int, typer.Option("--top-k", help="Aligned features summed per emotion.")]
PermutationsOption = Annotated[int, typer.Option("--permutations", help="Null draws.")]
ReadoutLayersOption = Annotated[
    str, typer.Option("--layers", help="'all' (every layer with vectors) or e.g. 4,8,10.")
]
MethodOption = Annotated[str, typer.Option("--method", help="denoised or raw vectors.")]
BatchOption = Annotated[int, typer.Option("--batch-size")]
SeedOption = Annotated[int, typer.Option("--seed")]


def _read_out(
    db: Path, options: validation.ReadoutOptions, experiment: Callable[..., dict[str, Any]],
    shown: Callable[[dict[str, Any]], tuple[list[dict[str, Any]], str, str]],
) -> None:  # fmt: skip
    """Run a read-out experiment; print the rows, title and tables that `shown` gives."""
    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        result = experiment(store, options)
    rows, title, tables = shown(result)
    present.print_rows(list(rows[0]), (row.values() for row in rows), title=title)
    print(f"run {result['run_id']}: {tables}")


@validate_app.command("retrieval")
def validate_retrieval(
    model: ModelOption = DEFAULT_MODEL,
    corpus: CorpusOption = "templates",
    emotions: Annotated[
        str | None, typer.Option("--emotions", help="a,b,c or a file; default: all with vectors.")
    ] = None,
    layers: ReadoutLayersOption = "all",
    level: LevelOption = "both",
    split: Annotated[str, typer.Option("--split", help="passage or topic (seeded halves).")] = (
        "passage"
    ),
    method: MethodOption = "denoised",
    sae_id: SaeOption = None,
    top_k: TopKOption = 10,
    permutations: PermutationsOption = 1000,
    batch_size: BatchOption = 8,
    seed: SeedOption = 0,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Vectors from half a corpus rank the other half and neutral text: P@10, MAP, null."""
    options = retrieval.RetrievalOptions(
        model=model, corpus=corpus, emotions=emotions, layers=layers, level=level, split=split,
        method=method, sae=sae_id, top_k=top_k, permutations=permutations,
        batch_size=batch_size, seed=seed, dtype=dtype, device=device,
    )  # fmt: skip
    _read_out(db, options, retrieval.retrieve, lambda result: (
        retrieval.summarize(result["results"]),
        f"retrieval on unseen text ({result['model']}, {result['candidates']} candidates)",
        "per-emotion rows in retrieval_results, the top passages in retrieval_top_passages",
    ))  # fmt: skip


@validate_app.command("quantity")
def validate_quantity(
    model: ModelOption = DEFAULT_MODEL,
    prompts: Annotated[
        Path | None,
        typer.Option("--prompts", help="JSONL families; default: corpora/quantity.jsonl."),
    ] = None,
    corpus: CorpusOption = "templates",
    emotions: EmotionsOption = quantity.DEFAULT_EMOTIONS,
    layers: ReadoutLayersOption = "all",
    level: LevelOption = "both",
    method: MethodOption = "denoised",
    sae_id: SaeOption = None,
    top_k: TopKOption = 10,
    permutations: PermutationsOption = 1000,
    batch_size: BatchOption = 16,
    seed: SeedOption = 0,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
) -> None:
    """As only a number in a prompt rises, does afraid rise and calm fall? Spearman, null."""
    options = quantity.QuantityOptions(
        model=model, prompts=prompts, corpus=corpus, emotions=emotions, layers=layers,
        level=level, method=method, sae=sae_id, top_k=top_k, permutations=permutations,
        batch_size=batch_size, seed=seed, dtype=dtype, device=device,
    )  # fmt: skip
    _read_out(db, options, quantity.run_test, lambda result: (
        quantity.summarize(result["summary"]),
        f"the quantity test ({result['model']}, {result['prompts']} prompts; direction: its "
        "strongest layer)",
        "per family in quantity_results, over families in quantity_summary, read-outs in "
        "quantity_scores",
    ))  # fmt: skip


# -- validation experiments (saefeatures.preferences, saefeatures.behaviour) ------------

SteerLayerOption = Annotated[
    int | None, typer.Option("--layer", help="Steered layer; default: a third of the depth.")
]
SteerEmotionsOption = Annotated[str, typer.Option("--emotions", help="Steering emotions, a,b,c.")]
ScalesOption = Annotated[
    str, typer.Option("--scales", help="Comma-separated, x the layer's mean residual norm.")
]
ResamplesOption = Annotated[int, typer.Option("--resamples", help="Bootstrap resamples.")]
SHOWN_ACTIVITIES = 5  # most and least preferred


@validate_app.command("behaviour")
def validate_behaviour(
    model: ModelOption = DEFAULT_MODEL,
    layer: SteerLayerOption = None,
    level: LevelOption = "both",
    emotions: SteerEmotionsOption = behaviour.DEFAULT_EMOTIONS,
    scales: ScalesOption = "0.1,0.2",
    top_k: TopKOption = 20,
    scenarios: Annotated[
        Path | None,
        typer.Option("--scenarios", help="JSONL: id, scenario, option_a, option_b, unethical."),
    ] = None,
    corpus: CorpusOption = "templates",
    method: MethodOption = "denoised",
    sae_id: SaeOption = None,
    resamples: ResamplesOption = 1000,
    seed: SeedOption = 0,
    batch_size: BatchOption = 16,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
) -> None:
    """P(unethical option) of pressure scenarios, unsteered and steered with emotions."""
    options = behaviour.BehaviourOptions(
        model=model, layer=layer, level=level, emotions=emotions, scales=scales, top_k=top_k,
        scenarios=scenarios, corpus=corpus, method=method, sae=sae_id, resamples=resamples,
        seed=seed, batch_size=batch_size, dtype=dtype, device=device,
    )  # fmt: skip
    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        result = behaviour.behaviour(store, options)
    columns = ["level", "emotion", "k", "scale", "p_unethical", "ci_low", "ci_high", "shift",
               "shift_ci_low", "shift_ci_high", "p_a"]  # fmt: skip
    present.print_rows(columns, ([row[c] for c in columns] for row in result["summary"]),
                       title=f"behaviour of {result['model']} steered at layer {result['layer']} "
                       f"({result['scenarios']} scenarios x 2 orders)")  # fmt: skip
    print(f"run {result['run_id']}: mean residual norm {result['norm']:.2f}; rows in "
          "behaviour_results, behaviour_summary, comparisons")  # fmt: skip


@validate_app.command("preferences")
def validate_preferences(
    model: ModelOption = DEFAULT_MODEL,
    layer: SteerLayerOption = None,
    level: LevelOption = "both",
    emotions: SteerEmotionsOption = preferences.DEFAULT_EMOTIONS,
    scales: ScalesOption = "0.1,0.2",
    top_k: TopKOption = 20,
    activities: Annotated[
        Path | None, typer.Option("--activities", help="CSV with header activity,category.")
    ] = None,
    pairs: Annotated[
        int, typer.Option("--pairs", help="Ordered pairs asked (seeded sample; all if enough).")
    ] = 240,
    steer_activities: Annotated[
        int, typer.Option("--steer-activities", help="Activities steered, one at a time.")
    ] = 4,
    corpus: CorpusOption = "templates",
    method: MethodOption = "denoised",
    sae_id: SaeOption = None,
    resamples: ResamplesOption = 1000,
    seed: SeedOption = 0,
    batch_size: BatchOption = 16,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "cpu",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Preferences between activities: Elo, its correlation with emotion vectors, steering."""
    options = preferences.PreferenceOptions(
        model=model, layer=layer, level=level, emotions=emotions, scales=scales, top_k=top_k,
        activities=activities, pairs=pairs, steer_activities=steer_activities, corpus=corpus,
        method=method, sae=sae_id, resamples=resamples, seed=seed, batch_size=batch_size,
        dtype=dtype, device=device,
    )  # fmt: skip
    with pipeline.Workspace(db, DEFAULT_OUT).open_store() as store:
        result = preferences.preferences(store, options)
    ranked = sorted(result["scores"], key=lambda row: -row["elo"])
    columns = ["activity", "category", "comparisons", "elo", "ci_low", "ci_high"]
    present.print_rows(columns, ([row[c] for c in columns]
                                 for row in present.ends(ranked, SHOWN_ACTIVITIES)),
                       title=f"{result['model']}: most and least preferred of "
                       f"{len(ranked)} activities ({result['pairs']} pairs; first-position "
                       f"bias {result['bias']:+.2f} logits)")  # fmt: skip
    columns = ["layer", "positive", "positive_r", "negative", "negative_r"]
    present.print_rows(columns, ([row[c] for c in columns] for row in result["strongest"]),
                       title="emotion projection on the activity's tokens vs its Elo")  # fmt: skip
    columns = ["metric", "direction_value", "feature_value"]
    present.print_rows(
        columns,
        ([row[c] for c in columns] for row in result["effects"]),
        title=f"steering at layer {result['layer']} on the activity's tokens",
    )
    print(f"run {result['run_id']}: rows in preference_comparisons, preference_scores, "
          "preference_correlations, preference_steering, comparisons")  # fmt: skip


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except SaefeaturesError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except UsageError as error:
        if not error.format_message():  # help was shown for a bare group: not an error
            sys.exit(0)
        command = error.ctx.command_path if error.ctx else "saefeatures"
        print(f"error: {error.format_message()} (see `{command} --help`)", file=sys.stderr)
        sys.exit(2)
    except ClickException as error:
        print(f"error: {error.format_message()}", file=sys.stderr)
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    # Outside standalone mode typer turns Ctrl-C into a returned exit code 130.
    if code == 130:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
