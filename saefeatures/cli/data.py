"""Commands on models, corpora, vectors and their geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from saefeatures import options as opts
from saefeatures.cli import render
from saefeatures.cli.common import (
    BatchOption,
    CorpusOption,
    DbOption,
    DeviceOption,
    DtypeOption,
    EmotionsOption,
    LayersOption,
    ModelOption,
    OutOption,
    SeedOption,
    Typer,
    options_from,
    workspace,
)
from saefeatures.config import DEFAULT_CORPUS, DEFAULT_DB, DEFAULT_MODEL, DEFAULT_OUT

models_app = Typer(help="The model registry: list, inspect, convert.")
corpus_app = Typer(
    help="Text corpora: list, show, import, generate (model-written stories).",
    no_args_is_help=True,
)


@models_app.callback(invoke_without_command=True)
def models_list(ctx: typer.Context) -> None:
    """List the embedded models: source, layers, widths, heads, vocabulary, cache state."""
    if ctx.invoked_subcommand is None:
        from saefeatures import models

        rows = models.registry()
        render.print_rows(list(rows[0]), (row.values() for row in rows), title="models")


@models_app.command("info")
def models_info(
    name: Annotated[str, typer.Argument(help="Model name, Hugging Face name or directory.")],
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
) -> None:
    """Load a model and print its full spec and hook names."""
    from saefeatures import models

    model = models.load(name, dtype=dtype, device=device)
    render.print_rows(["fact", "value"], model.describe().items(), title=name)
    templates = models.hook_templates(model.hook_names())
    render.print_rows(
        ["hook"], ([t] for t in templates), title=f"hooks (L = 0..{model.n_layers - 1})"
    )


@models_app.command("convert")
def models_convert(
    name: Annotated[str, typer.Argument(help="Embedded model name.")],
    force: Annotated[bool, typer.Option("--force", help="Convert again over the cache.")] = False,
) -> None:
    """De-quantize an embedded GGUF model into the cache (done on first use anyway)."""
    from saefeatures import models

    print(models.convert(models.resolve(name), force=force))


@corpus_app.command("list")
def corpus_list(db: DbOption = DEFAULT_DB) -> None:
    """The corpora in the store and the built-in ones."""
    from saefeatures.corpora import catalog

    with workspace(db).open_store() as store:
        render.print_arrow(catalog.listing(store), title="corpora")


@corpus_app.command("show")
def corpus_show(
    name: Annotated[str, typer.Argument(help="Corpus name.")],
    model: ModelOption = DEFAULT_MODEL,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Passages per emotion, token statistics (with the model's tokenizer) and a sample."""
    from saefeatures.corpora import catalog

    with workspace(db).open_store() as store:
        summary = catalog.describe(store, name, model)
    render.print_rows(["emotion", "passages"], summary.counts, title=f"corpus {name}")
    render.print_rows(["statistic", "value"], summary.tokens.items(), title="tokens per passage")
    render.print_rows(["emotion", "sample"], summary.sample, title="sample")


@corpus_app.command("import")
def corpus_import(
    source: Annotated[str, typer.Argument(help="A JSONL file, or hf:DATASET.")],
    name: Annotated[str, typer.Option("--name", help="Name of the corpus in the store.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Import passages: JSONL lines with `emotion` and `stories` (a list) or `text`."""
    from saefeatures.corpora import catalog

    with workspace(db).open_store() as store:
        count = catalog.import_corpus(store, source, name)
    print(f"imported {count} passages into corpus {name}")


Defaults = opts.StoryOptions


@corpus_app.command("generate")
def corpus_generate(
    model: ModelOption = DEFAULT_MODEL,
    name: Annotated[
        str, typer.Option("--name", help="Name of the corpus in the store.")
    ] = Defaults.name,
    emotions: EmotionsOption = "default",
    topics: Annotated[int, typer.Option("--topics", help="How many shipped topics.")] = (
        Defaults.topics
    ),
    stories_per_topic: Annotated[
        int, typer.Option("--stories-per-topic", help="Stories per topic and emotion.")
    ] = Defaults.stories_per_topic,
    min_kept: Annotated[
        int | None,
        typer.Option("--min-kept", help="Kept stories each emotion needs (default: all planned)."),
    ] = None,
    top_up_rounds: Annotated[
        int, typer.Option("--top-up-rounds", help="Extra rounds for emotions below --min-kept.")
    ] = Defaults.top_up_rounds,
    batch_size: BatchOption = Defaults.batch_size,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Tokens per story at most.")
    ] = Defaults.max_new_tokens,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Sampling temperature.")
    ] = Defaults.temperature,
    seed: SeedOption = Defaults.seed,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Have an instruct model write stories that convey each emotion without naming it."""
    options = options_from(opts.StoryOptions, locals())

    from saefeatures.corpora import stories

    with workspace(db).open_store() as store:
        written = stories.generate(store, options)
    render.print_rows(["fact", "value"], written.facts(), title="generated stories")


def vectors_command(
    model: ModelOption = DEFAULT_MODEL,
    corpus: CorpusOption = DEFAULT_CORPUS,
    emotions: EmotionsOption = "default",
    layers: LayersOption = "all",
    offset: Annotated[
        int | None,
        typer.Option("--offset", help="Pool tokens from here on (default: the corpus's own)."),
    ] = None,
    min_passages: Annotated[
        int,
        typer.Option("--min-passages", help="An emotion with fewer passages is left out."),
    ] = opts.VectorOptions.min_passages,
    denoise_var: Annotated[
        float, typer.Option("--denoise-var", help="Neutral variance share projected out.")
    ] = opts.VectorOptions.denoise_var,
    batch_size: BatchOption = opts.VectorOptions.batch_size,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
) -> None:
    """Emotion contrast vectors at every layer, raw and denoised, into the store."""
    options = options_from(opts.VectorOptions, locals())

    from saefeatures.vectors import extraction

    with workspace(db).open_store() as store:
        render.print_facts(extraction.extract(store, options), "emotion vectors")


def geometry_command(
    model: ModelOption = DEFAULT_MODEL,
    corpus: CorpusOption = DEFAULT_CORPUS,
    ratings: Annotated[
        Path | None, typer.Option("--ratings", help="CSV: emotion, valence, arousal.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail when an emotion has no rating.")
    ] = False,
    resamples: Annotated[
        int, typer.Option("--resamples", help="Bootstrap/permutations.")
    ] = opts.GeometryOptions.resamples,
    seed: SeedOption = 0,
    dtype: DtypeOption = "auto",
    device: DeviceOption = "auto",
    db: DbOption = DEFAULT_DB,
    out: OutOption = DEFAULT_OUT,
) -> None:
    """PCA of the vectors against valence/arousal by layer, sanity pairs, logit lens, figures."""
    options = options_from(opts.GeometryOptions, locals())

    from saefeatures.vectors import geometry

    with workspace(db, out).open_store() as store:
        result = geometry.analyze(store, out, options)
    columns = geometry.TABLE_COLUMNS
    render.print_rows(
        columns,
        ([row[column] for column in columns] for row in result.geometry),
        title="geometry (each PC's sign fixed so that r >= 0)",
    )
    best = result.best_row()
    render.print_rows(
        ["method", "layer", "a", "b", "expected", "cosine"],
        (
            [
                p["method"],
                p["layer"],
                p["emotion_a"],
                p["emotion_b"],
                p["expected_sign"],
                p["cosine"],
            ]
            for p in result.pairs
            if p["layer"] == best["layer"]
        ),
        title=f"sanity pairs at the best layer {best['layer']}",
    )
    render.print_rows(
        render.BEST_COLUMNS,
        [render.best_layer_row(corpus, best)],
        title="the best layer (denoised vectors, every rated emotion)",
    )
    print(render.BEST_NOTE)
    print(f"excluded for lack of ratings: {', '.join(result.excluded) or 'none'}")
    print("figures: " + ", ".join(result.figures))
