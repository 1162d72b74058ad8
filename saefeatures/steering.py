"""Steering at both levels: does adding an emotion's direction, or its aligned SAE
features, make the model say that emotion, and write with that valence?

The replication's test: "How does he feel?" answered with "He feels" (chat-formatted
for instruct models, plain text for base models), and for each steering emotion, scale
and target emotion word, the change in the word's log-probability (all of its tokens,
teacher-forced) against the unsteered model.

Levels, each the same edit machinery (`interventions`):
- `direction`: add scale x norm along the emotion's vector.
- `features`: add the emotion's top-k features by decoder cosine, weighted by their
  cosines, pushed as hard as the direction (the added vector has the same norm at the
  same scale). With the SAE's error kept and decoding linear, this steers along a k-sparse
  approximation of the vector: the SAE's nonlinearity plays no part.
- `features clamp`: the SAE's own intervention: encode, set each of the top-k features to
  a multiple (`scale`) of its largest activation observed on the corpus, decode, add the
  error back. `features ablate` sets them to 0.
- `random features` and `random clamp`: k features drawn at random (signs at random for
  adding), under the same edits: the baseline every feature-level effect needs.
Every edit's `effective_scale` (how far it moved the prompt's residual, in units of the
layer's mean residual norm) is stored with it, so levels compare at matched residual norm.
Free generations under steering are scored for valence without a model (the VADER word
ratings) and with the project's own valence axis (PC1 of the emotion vectors, read by the
unsteered model).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from saefeatures import activations, interventions, models, plots, progress
from saefeatures.corpora import catalog, lexicon
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.options import SteerOptions, all_emotions
from saefeatures.sae import loading
from saefeatures.store.database import Store
from saefeatures.store.read import aligned_features, saes_at, vectors_at
from saefeatures.vectors.axes import valence_axis

QUESTION, ANSWER = "How does he feel?", "He feels"
FEATURE_KS = (1, 5, 20)
ALL_EMOTIONS = all_emotions()


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
    with interventions.applied(model, interventions.per_row(layer, edits)):
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
    return [
        added("features", emotion, sae, [f for f, _ in rows[:k]], [c for _, c in rows[:k]], norm)
        for k in ks
    ]


def added(
    level: str, emotion: str, sae: Any, ids: list[int], signs: list[float], norm: float
) -> Lever:
    """Add the features' decoder rows, weighted by `signs`, as hard as a direction push."""
    weights = torch.tensor(signs, dtype=torch.float32)
    length = float((weights @ sae.W_dec.detach().float()[ids]).norm())

    def make(scale: float) -> interventions.Features:
        return interventions.Features(sae, ids, (weights * scale * norm / length).tolist(), "add")

    return Lever(level, emotion, len(ids), make)


def clamped(level: str, emotion: str, sae: Any, ids: list[int], peaks: dict[int, float]) -> Lever:
    """Clamp each feature to `scale` x its largest observed activation (0: ablate it)."""

    def make(scale: float) -> interventions.Features:
        if scale == 0:
            return interventions.Features(sae, ids, [0.0] * len(ids), "ablate")
        return interventions.Features(sae, ids, [scale * peaks[f] for f in ids], "clamp")

    return Lever(level, emotion, len(ids), make)


def native_levers(
    store: Store, sae_row: dict, emotion: str, corpus: str, norm: float, sae: Any, seed: int
) -> list[Lever]:
    """Feature-native levers of one emotion (clamp and ablate its top-k features) and the
    random baseline of every feature lever: k random features added or clamped."""
    peaks = feature_peaks(store, sae_row["sae_id"])
    # Only a feature seen firing has a largest activation to clamp to: the top-k are
    # chosen among those, in alignment order.
    ranked = aligned_features(store, sae_row, corpus, [emotion], None)[emotion]
    fired = [feature for feature, _ in ranked if feature in peaks]
    rng = np.random.default_rng([seed, ALL_EMOTIONS.index(emotion)])
    levers = []
    for k in FEATURE_KS:
        top = fired[:k]
        drawn = rng.choice(sorted(peaks), size=min(k, len(peaks)), replace=False).tolist()
        levers += [clamped("features clamp", emotion, sae, top, peaks)] if top else []
        levers += [
            clamped("random clamp", emotion, sae, drawn, peaks),
            added(
                "random features",
                emotion,
                sae,
                drawn,
                rng.choice([-1.0, 1.0], len(drawn)).tolist(),
                norm,
            ),
        ]
    return levers


def feature_peaks(store: Store, sae_id: str) -> dict[int, float]:
    """Each feature's largest activation on the scanned text (`saefeatures align`), for
    features that fired."""
    rows = store.query(
        "SELECT feature, max_activation FROM features WHERE sae_id = ? AND max_activation > 0",
        [sae_id],
    ).to_pylist()
    return {row["feature"]: float(row["max_activation"]) for row in rows}


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


@dataclass(frozen=True)
class Steered:
    """One `steer` run: where it steered, every word and generation row it scored, the
    `steering_effects` rows of that layer, and its figures."""

    run_id: str
    model: str
    layer: int
    norm: float  # the layer's mean residual norm on neutral text: the unit of scale
    sae: str | None
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    figures: list[str]


def steer(
    store: Store, out: Path, options: SteerOptions, model: LoadedModel | None = None
) -> Steered:
    """Steer with every emotion at every scale and level; score words and generations."""
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    n_layers = models.shape_of(spec)["n_layers"]
    layer = options.layer if options.layer is not None else round(n_layers / 3)
    layer = activations.select_layers([layer], n_layers, spec.name)[0]
    gen_scale = options.gen_scale
    emotions = list(options.emotions)
    vectors = layer_vectors(store, spec.name, options.corpus, options.method, emotions, layer)
    axis = valence_axis(store, spec.name, options.corpus, options.method, layer)
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
        model = models.load(spec.name, dtype=options.dtype, device=options.device, loaded=model)
        neutral = [p.text for p in catalog.read_corpus(store, "neutral")]
        norm = interventions.mean_residual_norm(model, neutral, [layer])[layer]
        levers = _levers(store, options, sae_row, vectors, norm)
        prompt = model.format_prompt(QUESTION, ANSWER)
        batch = word_batch(model, prompt, emotions)
        rows = _word_rows(model, batch, levers, layer, _scales(options), emotions, norm)
        rows += _generation_rows(model, prompt, levers, layer, gen_scale, axis, options)
        table = pa.Table.from_pylist(
            [{"run_id": run_id, "model": spec.name, "layer": layer, **row} for row in rows]
        )
        store.replace_all([("steering_results", {"model": spec.name, "layer": layer}, table)])
        summary = effects(store, spec.name, layer)
    figures = _figures(out / "steering" / spec.slug, spec.name, layer, rows, emotions, summary)
    sae = sae_row["sae_id"] if sae_row else None
    return Steered(run_id, spec.name, layer, norm, sae, rows, summary, figures)


def _scales(options: SteerOptions) -> Callable[[Lever], tuple[float, ...]]:
    """A lever's scales: multiples of the norm for pushes, of each feature's observed
    maximum for clamps (0: ablation)."""
    return lambda lever: (
        (0.0, *options.clamp_multiples) if "clamp" in lever.level else tuple(options.scales)
    )


def _levers(
    store: Store, options: SteerOptions, sae_row: dict | None, vectors: dict, norm: float
) -> list[Lever]:
    """Every lever of every emotion at the chosen levels."""
    levers = []
    if options.level in ("direction", "both"):
        levers += [direction_lever(e, vectors[e], norm) for e in options.emotions]
    if sae_row is not None:
        sae = loading.read_saelens(Path(sae_row["path"]), options.device)
        for emotion in options.emotions:
            levers += feature_levers(store, sae_row, emotion, options.corpus, norm, sae)
            levers += native_levers(
                store, sae_row, emotion, options.corpus, norm, sae, options.seed
            )
    return levers


def effects(store: Store, model: str, layer: int) -> list[dict[str, Any]]:
    """The `steering_effects` view at one model and layer: per level, k and scale."""
    return store.query(
        "SELECT level, k, scale, effective_scale, self_effect, other_effect, specificity "
        "FROM steering_effects WHERE model = ? AND layer = ? ORDER BY level, k, scale",
        [model, layer],
    ).to_pylist()


def _word_rows(model, batch, levers, layer, scales_of, emotions, norm) -> list[dict[str, Any]]:
    """Per lever and scale: each target word's change in log P, and how far the edit moved
    the prompt's residual (`effective_scale`, in units of the layer's mean residual norm)."""
    base = word_logprobs(model, batch)
    prompt = batch.ids[:1, : batch.prompt_length]
    mask = torch.ones_like(prompt)
    residual = activations.harvest(model, {"input_ids": prompt, "attention_mask": mask}, [layer])[
        layer
    ]
    rows = []
    for lever in progress.track(levers, "steering word scores"):
        for scale in scales_of(lever):
            edit = lever.make(scale)
            intervention = interventions.Intervention.at(layer, edit)
            with interventions.applied(model, [intervention]):
                delta = word_logprobs(model, batch) - base
            with torch.no_grad():
                shift = (edit.edit(residual) - residual).float().norm(dim=-1).mean()
            moved = float(shift) / norm
            common = {
                "level": lever.level,
                "emotion": lever.emotion,
                "k": lever.k,
                "scale": scale,
                "extra": None,
            }
            rows.append({**common, "target": None, "metric": "effective_scale", "value": moved})
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
    chosen = [
        lever
        for lever in levers
        if lever.level in ("direction", "features") and lever.k in (None, max(FEATURE_KS))
    ]
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


def _figures(folder, model, layer, rows, emotions, summary) -> list[str]:
    """Self effect per level at the smallest direction scale, cross-emotion heatmaps there,
    and the self effect against the effective scale of every level (matched residual norm)."""
    valence = [catalog.load_ratings().valence.get(e, 0.0) for e in emotions]
    effect = {
        (r["level"], r["k"], r["emotion"], r["target"], r["scale"]): r["value"]
        for r in rows
        if r["metric"] == "delta_logprob"
    }
    low = min(r["scale"] for r in rows if r["level"] == "direction" or r["level"] == "features")
    shown = sorted({key[:2] for key in effect if key[4] == low}, key=lambda g: (g[0], g[1] or 0))
    names = {g: g[0] if g[1] is None else f"{g[0]}, k={g[1]}" for g in shown}
    title = f"{model} · layer {layer}"
    written = plots.grouped_bars(
        emotions,
        {names[g]: [effect[(*g, e, e, low)] for e in emotions] for g in shown},
        f"{title}: self-steering effect at scale {low}",
        "Δ log P(own word)",
        folder / "self_effect",
    )
    for g in (g for g in shown if g[0] in ("direction", "features")):
        matrix = np.array([[effect[(*g, e, t, low)] for t in emotions] for e in emotions])
        written += plots.emotion_heatmap(
            emotions,
            matrix,
            valence,
            f"{title}: {names[g]}, scale {low} (rows steer, columns are words)",
            folder / f"cross_{names[g].replace(' ', '_').replace(',', '')}",
            "Δ log P(word)",
        )
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for row in summary:
        name = row["level"] if row["k"] is None else f"{row['level']}, k={row['k']}"
        x, y = curves.setdefault(name, ([], []))
        x.append(row["effective_scale"])
        y.append(row["self_effect"])
    written += plots.lines(
        curves,
        f"{title}: mean self effect against how far each edit moved the residual",
        ("effective scale (|Δ residual| / mean residual norm)", "mean Δ log P(own word)"),
        folder / "effect_by_scale",
    )
    return [str(path) for path in written]


def summarize(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the command line prints from the `steering_effects` rows."""
    return [
        {
            "level": row["level"] if row["k"] is None else f"{row['level']}, k={row['k']}",
            "scale": row["scale"],
            "effective scale": row["effective_scale"],
            "self Δ log P": row["self_effect"],
            "other words Δ log P": row["other_effect"],
            "specificity": row["specificity"],
        }
        for row in summary
    ]


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
