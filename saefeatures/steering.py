"""Steering at both levels: does adding an emotion's direction, or its aligned SAE
features, make the model say that emotion, and write with that valence?

The replication's test: "How does he feel?" answered with "He feels" (chat-formatted
for instruct models, plain text for base models), and for each steering emotion, scale
and target emotion word, the change in the word's log-probability (all of its tokens,
teacher-forced) against the unsteered model. The feature level adds the emotion's top-k
features by decoder cosine, weighted by their cosines, pushed as hard as the direction:
the added vector has the same norm at the same scale. Free generations under steering
are scored for valence without a model (the VADER word ratings) and with the project's
own valence axis (PC1 of the emotion vectors, read by the unsteered model).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from saefeatures import activations, interventions, models, plots, progress, stats
from saefeatures.corpora import catalog, lexicon
from saefeatures.errors import SaefeaturesError
from saefeatures.options import SteerOptions
from saefeatures.sae import loading
from saefeatures.store.database import Store
from saefeatures.store.read import aligned_features, read_vectors, saes_at, vectors_at

QUESTION, ANSWER = "How does he feel?", "He feels"
FEATURE_KS = (1, 5, 20)


@dataclass(frozen=True)
class Lever:
    """One way to steer towards an emotion: its direction, or its top-k features."""

    level: str
    emotion: str
    k: int | None
    make: Any  # scale -> interventions.Direction | interventions.Features


# -- scoring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WordBatch:
    """The prompt followed by each target word, right-padded: one row per word."""

    ids: torch.Tensor
    mask: torch.Tensor
    spans: list[tuple[int, int]]  # the word's token positions in its row
    prompt_length: int


def word_batch(model: models.LoadedModel, prompt: str, words: list[str]) -> WordBatch:
    prompt_ids = model.encode([prompt], chat_formatted=True)["input_ids"][0].cpu().tolist()
    rows, spans = [], []
    for word in words:
        word_ids = model.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if not word_ids:
            raise SaefeaturesError(f"the word {word!r} tokenizes to nothing")
        spans.append((len(prompt_ids), len(prompt_ids) + len(word_ids)))
        rows.append(prompt_ids + word_ids)
    width = max(map(len, rows))
    pad = model.tokenizer.pad_token_id or 0
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    return WordBatch(ids.to(model.device), mask.to(model.device), spans, len(prompt_ids))


@torch.no_grad()
def word_logprobs(model: models.LoadedModel, batch: WordBatch) -> np.ndarray:
    """log P(word | prompt) for each row, summed over the word's tokens.

    The prompt is run once, as one row, and its keys and values are shared by every word's
    row: an edit acts on each position alone, so this equals running each row whole.
    """
    length, n_rows = batch.prompt_length, len(batch.spans)
    prompt = model.hf_model(batch.ids[:1, :length], use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(prompt.logits[0, -1].float(), dim=-1)
    cache = prompt.past_key_values
    cache.batch_repeat_interleave(n_rows)
    mask = torch.cat([torch.ones_like(batch.mask[:, :length]), batch.mask[:, length:]], dim=1)
    logits = model.hf_model(
        batch.ids[:, length:], attention_mask=mask, past_key_values=cache, use_cache=True
    ).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return np.array(
        [
            float(first[batch.ids[row, start]])
            + sum(
                float(logprobs[row, position - 1 - length, batch.ids[row, position]])
                for position in range(start + 1, end)
            )
            for row, (start, end) in enumerate(batch.spans)
        ]
    )


@torch.no_grad()
def generate(
    model: models.LoadedModel,
    prompt: str,
    tokens: int,
    layer: int,
    edits: list[interventions.Direction | interventions.Features | None],
) -> list[list[int]]:
    """Greedy continuations of one prompt, one row per edit (None: unsteered), until EOS.

    The rows run as one batch with a key-value cache: every row has the same prompt, so
    nothing is padded, and the edit acts on each position alone, so a step that runs only
    the new token sees the edit exactly as a full recompute would.
    """
    ids = model.encode([prompt], chat_formatted=True)["input_ids"].repeat(len(edits), 1)
    generated: list[list[int]] = [[] for _ in edits]
    running = [True] * len(edits)
    cache, step = None, ids
    with interventions.applied_per_row(model, layer, edits):
        for _ in range(tokens):
            out = model.hf_model(step, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache, step = out.past_key_values, out.logits[:, -1].argmax(dim=-1, keepdim=True)
            for row, token in enumerate(step[:, 0].tolist()):
                running[row] = running[row] and token != model.tokenizer.eos_token_id
                if running[row]:
                    generated[row].append(token)
            if not any(running):
                break
    return generated


@torch.no_grad()
def axis_projections(
    model: models.LoadedModel,
    prompt: str,
    generated: list[list[int]],
    layer: int,
    axis: np.ndarray,
) -> list[float]:
    """Mean residual of each row's generated tokens on the valence axis, read by the clean
    model in one right-padded batch (causal attention: padding after a token never reaches
    it); 0 for an empty generation."""
    prompt_ids = model.encode([prompt], chat_formatted=True)["input_ids"][0].tolist()
    width = len(prompt_ids) + max(map(len, generated))
    ids = torch.zeros(len(generated), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, tokens in enumerate(generated):
        ids[row, : len(prompt_ids) + len(tokens)] = torch.tensor(prompt_ids + tokens)
        mask[row, : len(prompt_ids) + len(tokens)] = 1
    batch = {"input_ids": ids.to(model.device), "attention_mask": mask.to(model.device)}
    residual = activations.harvest(model, batch, [layer])[layer].float().cpu().numpy()
    start = len(prompt_ids)
    return [
        float(residual[row, start : start + len(tokens)].mean(axis=0) @ axis) if tokens else 0.0
        for row, tokens in enumerate(generated)
    ]


# -- inputs ----------------------------------------------------------------------------


def _valence_axis(store: Store, model: str, options: SteerOptions, layer: int) -> np.ndarray:
    """PC1 of all the emotion vectors at the layer, signed so that it grows with valence."""
    vector_set = read_vectors(store, model, options.corpus, options.method)
    ratings = catalog.load_ratings()
    rated = [e for e in vector_set.emotions if e in ratings.valence]
    if len(rated) < 3:
        raise SaefeaturesError("the valence axis needs vectors of at least 3 rated emotions")
    matrix = vector_set.vectors[
        [vector_set.emotions.index(e) for e in rated], vector_set.layers.index(layer)
    ]
    fitted = stats.pca(matrix, 1)
    _, sign = stats.orient(fitted.scores[:, 0], np.array([ratings.valence[e] for e in rated]))
    return sign * fitted.components[0]


def feature_levers(
    store: Store,
    sae_row: dict,
    emotion: str,
    corpus: str,
    norm: float,
    sae: Any,
    ks: tuple[int, ...] = FEATURE_KS,
) -> list[Lever]:
    """The emotion's top-k decoder-aligned features for each k, pushed as hard as its direction."""
    rows = aligned_features(store, sae_row, corpus, [emotion], max(ks))[emotion]
    decoder = sae.W_dec.detach().float()
    levers = []
    for k in ks:
        chosen = rows[:k]
        ids = [feature for feature, _ in chosen]
        weights = torch.tensor([score for _, score in chosen])
        length = float((weights @ decoder[ids]).norm())

        def make(scale: float, ids=ids, weights=weights, length=length):
            values = (weights * scale * norm / length).tolist()
            return interventions.Features(sae, ids, values, "add")

        levers.append(Lever("features", emotion, k, make))
    return levers


def direction_lever(emotion: str, vector: np.ndarray, norm: float) -> Lever:
    def make(scale: float):
        return interventions.Direction(torch.tensor(vector), scale, norm)

    return Lever("direction", emotion, None, make)


def layer_vectors(
    store: Store, model: str, corpus: str, method: str, emotions: list[str], layer: int
) -> dict[str, np.ndarray]:
    """Each emotion's vector at the layer; a missing one names the command that makes it."""
    found = vectors_at(store, model, corpus, method, emotions, [layer])
    return {e: found.vectors[i, 0] for i, e in enumerate(found.emotions)}


# -- the stage -------------------------------------------------------------------------


def steer(store: Store, out: Path, options: SteerOptions) -> dict[str, Any]:
    """Steer with every emotion at every scale and level; score words and generations."""
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    n_layers = models.shape_of(spec)["n_layers"]
    layer = options.layer if options.layer is not None else round(n_layers / 3)
    layer = activations.select_layers([layer], n_layers, spec.name)[0]
    scales, gen_scale = list(options.scales), options.gen_scale
    emotions = list(options.emotions)
    vectors = layer_vectors(store, spec.name, options.corpus, options.method, emotions, layer)
    axis = _valence_axis(store, spec.name, options, layer)
    sae_row = (
        saes_at(store, spec.name, layer, options.sae)[0] if options.level != "direction" else None
    )
    config = {
        **asdict(options),
        "model": spec.name,
        "layer": layer,
        "sae": sae_row and sae_row["sae_id"],
    }
    with store.run("steer", config, atomic=True) as run_id:
        model = models.load(spec.name, dtype=options.dtype, device=options.device)
        neutral = [p.text for p in catalog.read_corpus(store, "neutral")]
        norm = interventions.mean_residual_norm(model, neutral, [layer])[layer]
        levers = []
        if options.level in ("direction", "both"):
            levers += [direction_lever(e, vectors[e], norm) for e in emotions]
        if sae_row is not None:
            sae = loading.read_saelens(Path(sae_row["path"]), options.device)
            for emotion in emotions:
                levers += feature_levers(store, sae_row, emotion, options.corpus, norm, sae)
        prompt = model.format_prompt(QUESTION, ANSWER)
        batch = word_batch(model, prompt, emotions)
        rows = _word_rows(model, batch, levers, layer, scales, emotions)
        rows += _generation_rows(model, prompt, levers, layer, gen_scale, axis, options)
        table = pa.Table.from_pylist(
            [{"run_id": run_id, "model": spec.name, "layer": layer, **row} for row in rows]
        )
        store.replace_all([("steering_results", {"model": spec.name, "layer": layer}, table)])
    figures = _figures(out / "steering" / spec.slug, spec.name, layer, rows, emotions, scales)
    return {
        "run_id": run_id,
        "model": spec.name,
        "layer": layer,
        "norm": norm,
        "sae": sae_row and sae_row["sae_id"],
        "rows": rows,
        "figures": figures,
    }


def _word_rows(model, batch, levers, layer, scales, emotions) -> list[dict[str, Any]]:
    base = word_logprobs(model, batch)
    rows = []
    for lever in progress.track(levers, "steering word scores"):
        for scale in scales:
            intervention = interventions.Intervention(layer, lever.make(scale))
            with interventions.applied(model, [intervention]):
                delta = word_logprobs(model, batch) - base
            rows += [
                {
                    "level": lever.level,
                    "emotion": lever.emotion,
                    "target": target,
                    "k": lever.k,
                    "scale": scale,
                    "metric": "delta_logprob",
                    "value": float(value),
                    "extra": None,
                }
                for target, value in zip(emotions, delta, strict=True)
            ]
    return rows


def _generation_rows(model, prompt, levers, layer, scale, axis, options) -> list[dict[str, Any]]:
    """One greedy generation per lever at one scale, plus the unsteered one, in one batch."""
    chosen = [lever for lever in levers if lever.k in (None, max(FEATURE_KS))]
    runs = [("none", "none", None, 0.0)] + [
        (lever.level, lever.emotion, lever.k, scale) for lever in chosen
    ]
    edits = [None] + [lever.make(scale) for lever in chosen]
    generated = generate(model, prompt, options.gen_tokens, layer, edits)
    projections = axis_projections(model, prompt, generated, layer, axis)
    rows = []
    for (level, emotion, k, run_scale), tokens, projection in zip(
        runs, generated, projections, strict=True
    ):
        text = model.tokenizer.decode(tokens, skip_special_tokens=True)
        extra = json.dumps({"text": text})
        for metric, value in (
            ("generation_lexicon_valence", lexicon.text_valence(text)),
            ("generation_axis_valence", projection),
        ):
            rows.append(
                {
                    "level": level,
                    "emotion": emotion,
                    "target": None,
                    "k": k,
                    "scale": run_scale,
                    "metric": metric,
                    "value": value,
                    "extra": extra,
                }
            )
    return rows


def _figures(folder, model, layer, rows, emotions, scales) -> list[str]:
    """Self effect per level, cross-emotion heatmaps and effect by scale, from the rows."""
    valence = [catalog.load_ratings().valence.get(e, 0.0) for e in emotions]
    top = max(scales)
    effect = {
        (r["level"], r["k"], r["emotion"], r["target"], r["scale"]): r["value"]
        for r in rows
        if r["metric"] == "delta_logprob"
    }
    levels = sorted({key[:2] for key in effect}, key=lambda g: (g[0], g[1] or 0))
    names = {g: g[0] if g[1] is None else f"top-{g[1]} features" for g in levels}
    title = f"{model} · layer {layer}"
    written = plots.grouped_bars(
        emotions,
        {names[g]: [effect[(*g, e, e, top)] for e in emotions] for g in levels},
        f"{title}: self-steering effect at scale {top}",
        "Δ log P(own word)",
        folder / "self_effect",
    )
    for g in levels:
        matrix = np.array([[effect[(*g, e, t, top)] for t in emotions] for e in emotions])
        written += plots.emotion_heatmap(
            emotions,
            matrix,
            valence,
            f"{title}: {names[g]}, scale {top} (rows steer, columns are words)",
            folder / f"cross_{names[g].replace(' ', '_')}",
            "Δ log P(word)",
        )
    written += plots.lines(
        scales,
        {
            names[g]: [np.mean([effect[(*g, e, e, s)] for e in emotions]) for s in scales]
            for g in levels
        },
        f"{title}: mean self effect",
        ("scale (x mean residual norm)", "mean Δ log P(own word)"),
        folder / "effect_by_scale",
    )
    return [str(path) for path in written]


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level and scale: mean self effect, mean effect on other words, and their gap."""
    words = [r for r in rows if r["metric"] == "delta_logprob"]
    groups = sorted(
        {(r["level"], r["k"], r["scale"]) for r in words}, key=lambda g: (g[0], g[1] or 0, g[2])
    )
    summary = []
    for level, k, scale in groups:
        chosen = [r for r in words if (r["level"], r["k"], r["scale"]) == (level, k, scale)]
        own = [r["value"] for r in chosen if r["emotion"] == r["target"]]
        other = [r["value"] for r in chosen if r["emotion"] != r["target"]]
        summary.append(
            {
                "level": level if k is None else f"top-{k} features",
                "scale": scale,
                "self Δ log P": np.mean(own),
                "other words Δ log P": np.mean(other),
                "specificity": np.mean(own) - np.mean(other),
            }
        )
    return summary


def examples(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Each generation with its two valence scores, one line per steering run."""
    valence = {}
    for r in rows:
        if r["metric"].startswith("generation_"):
            key = (r["level"] if r["k"] is None else f"top-{r['k']} features", r["emotion"])
            valence.setdefault(key, {"text": json.loads(r["extra"])["text"]})[r["metric"]] = r[
                "value"
            ]
    return [
        [
            level,
            emotion,
            v["generation_lexicon_valence"],
            v["generation_axis_valence"],
            v["text"].strip().replace("\n", " "),
        ]
        for (level, emotion), v in valence.items()
    ]
