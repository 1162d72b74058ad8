"""Emotion contrast vectors: pool passages per layer, contrast emotions, denoise.

For each passage, one forward pass (which stops after the last layer needed)
gives the residual stream at every layer; tokens from `offset` on are
averaged, so the vector reflects the passage's developed content rather than
its opening words. Per emotion the passage means are averaged, and the mean
over emotions is subtracted (the contrast vector). Denoising projects out the
top principal components of neutral passages, which carry what all text
shares (position, format, topic) rather than emotion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from saefeatures import activations, models, progress
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel
from saefeatures.options import VectorOptions
from saefeatures.store.database import Store

MAX_TOKENS = 512  # passages are cut here


@dataclass(frozen=True)
class Pooled:
    """Mean residual per kept passage and layer: `means[i, l]` for passage `kept[i]`."""

    means: np.ndarray  # [n_kept, n_layers, d_model], float32
    kept: list[int]
    n_short: int  # passages with no token at or after the offset: excluded, and counted
    n_tokens: int  # tokens that went through the model


def pool_passages(
    model: LoadedModel,
    texts: list[str],
    layers: list[int],
    offset: int,
    batch_size: int = 8,
    max_tokens: int = MAX_TOKENS,
) -> Pooled:
    """Mean-pool every passage from token `offset` on, at every layer, one forward per batch.

    Passages are batched by length so that little compute goes to padding; the
    mask keeps padding out of every mean, so a passage pools to the same
    vector alone or in any batch.
    """
    lengths = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    sums: dict[int, np.ndarray] = {}
    n_tokens = 0
    for start in progress.track(range(0, len(order), batch_size), "pooling passages"):
        chunk = order[start : start + batch_size]
        batch = model.tokenizer(
            [texts[i] for i in chunk],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_tokens,
        )
        batch = {key: value.to(model.device) for key, value in batch.items()}
        n_tokens += int(batch["attention_mask"].sum())
        acts = activations.harvest(model, batch, layers)
        weights = pooling_weights(batch["attention_mask"], offset)
        counts = weights.sum(dim=1).clamp(min=1)
        stacked = torch.stack([acts[layer].float() for layer in layers], dim=1)  # b, L, pos, d
        means = torch.einsum("blpd,bp->bld", stacked, weights) / counts[:, None, None]
        for row, index in enumerate(chunk):
            if weights[row].sum() > 0:
                sums[index] = means[row].cpu().numpy()
    kept = sorted(sums)
    if not kept:
        raise SaefeaturesError(
            f"offset {offset} is longer than every passage; pass a smaller --offset "
            f"(the longest passage has {max(lengths)} tokens)"
        )
    return Pooled(np.stack([sums[i] for i in kept]), kept, len(texts) - len(kept), n_tokens)


def pooling_weights(attention_mask: torch.Tensor, offset: int) -> torch.Tensor:
    """1.0 on real tokens at index >= offset within their own passage, for either padding side."""
    mask = attention_mask.float()
    index_in_passage = mask.cumsum(dim=1) - 1
    return mask * (index_in_passage >= offset).float()


def contrast_vectors(means: np.ndarray, labels: list[str], emotions: list[str]) -> np.ndarray:
    """`[emotions, layers, d]`: each emotion's mean passage minus the mean over emotions."""
    label_array = np.array(labels)
    per_emotion = np.stack([means[label_array == e].mean(axis=0) for e in emotions])
    return per_emotion - per_emotion.mean(axis=0, keepdims=True)


def _principal_axes(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes (rows) of passage means and the cumulative variance share they reach."""
    _, singular, vt = np.linalg.svd(means - means.mean(axis=0), full_matrices=False)
    return vt, np.cumsum(singular**2) / np.sum(singular**2)


def neutral_components(neutral_means: np.ndarray, var_fraction: float) -> list[np.ndarray]:
    """Per layer, the top principal components of neutral text reaching `var_fraction`."""
    bases = []
    for layer in range(neutral_means.shape[1]):
        axes, explained = _principal_axes(neutral_means[:, layer])
        bases.append(axes[: int(np.searchsorted(explained, var_fraction) + 1)])
    return bases


def neutral_basis(neutral_means: np.ndarray, count: int) -> np.ndarray:
    """The top `count` principal components of neutral text at one layer, `[n, d]` means:
    what denoising removed there, as recorded in `emotion_vectors.n_removed`."""
    return _principal_axes(neutral_means)[0][:count]


def project_out(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Remove the span of the (orthonormal) rows of `basis` from each row of `vectors`."""
    return vectors - (vectors @ basis.T) @ basis


def denoise(vectors: np.ndarray, bases: list[np.ndarray]) -> np.ndarray:
    """Apply `project_out` layer by layer to `[emotions, layers, d]` vectors."""
    return np.stack(
        [project_out(vectors[:, layer], basis) for layer, basis in enumerate(bases)], axis=1
    )


def vector_rows(
    vectors: np.ndarray,
    emotions: list[str],
    layers: list[int],
    counts: dict[str, int],
    common: dict[str, object],
    n_removed: list[int] | None = None,
) -> pa.Table:
    """`emotion_vectors` rows for an `[emotions, layers, d]` array, as one Arrow table."""
    n_emotions, n_layers, d = vectors.shape
    flat = pa.array(vectors.astype(np.float32).reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(flat, d).cast(pa.list_(pa.float32()))
    n = n_emotions * n_layers
    table = {key: [value] * n for key, value in common.items()}
    table["emotion"] = [e for e in emotions for _ in layers]
    table["layer"] = [layer for _ in emotions for layer in layers]
    table["n_passages"] = [counts[e] for e in emotions for _ in layers]
    if n_removed is not None:
        table["n_removed"] = [n_removed[i] for _ in emotions for i in range(len(layers))]
    table["vector"] = column
    return pa.table(table)


# -- the stage ----------------------------------------------------------------


def check_offset(
    tokenizer: Any, offset: int, groups: dict[str, list[str]], every: bool = False
) -> None:
    """Each group keeps a passage with a token past the offset (with `every`, each of its
    passages has one): the check that `pool_passages` makes, done with the tokenizer
    alone before a run starts."""
    lengths = {
        name: [min(len(ids), MAX_TOKENS) for ids in tokenizer(texts)["input_ids"]]
        for name, texts in groups.items()
    }
    if every:
        short = sum(length <= offset for found in lengths.values() for length in found)
        if short:
            raise SaefeaturesError(
                f"{short} passages have no token past the vectors' offset {offset}; make the "
                "vectors with a smaller `saefeatures vectors --offset`"
            )
        return
    longest = {name: max(found) for name, found in lengths.items()}
    short_groups = [name for name, length in longest.items() if length <= offset]
    if len(short_groups) == len(longest):
        raise SaefeaturesError(
            f"offset {offset} is longer than every passage; pass a smaller --offset "
            f"(the longest passage has {max(longest.values())} tokens)"
        )
    if short_groups:
        raise SaefeaturesError(
            f"every passage of {', '.join(short_groups)} is shorter than --offset {offset}; "
            "pass a smaller --offset"
        )


@dataclass(frozen=True)
class Coverage:
    """Which emotions a corpus gives vectors for: each kept one's usable passages, and each
    left out with why (fewer usable passages than the minimum)."""

    texts: dict[str, list[str]]
    left_out: dict[str, tuple[int, str]]  # emotion -> (usable passages, reason)


def coverage(
    tokenizer: Any, passages: list[catalog.Passage], emotions: list[str], offset: int, minimum: int
) -> Coverage:
    """Group the passages by emotion, keeping those with a token past the offset (checked
    with the tokenizer alone), and leave out every emotion with fewer than `minimum`."""
    chosen = [p for p in passages if p.emotion in set(emotions)]
    lengths = [
        min(len(ids), MAX_TOKENS) for ids in tokenizer([p.text for p in chosen])["input_ids"]
    ]
    usable: dict[str, list[str]] = {emotion: [] for emotion in emotions}
    short: dict[str, int] = dict.fromkeys(emotions, 0)
    for passage, length in zip(chosen, lengths, strict=True):
        if length > offset:
            usable[passage.emotion].append(passage.text)
        else:
            short[passage.emotion] += 1
    left_out = {}
    for emotion, texts in usable.items():
        if len(texts) < minimum:
            why = f"{len(texts)} usable passages, fewer than the minimum {minimum}"
            if short[emotion]:
                why += f" ({short[emotion]} shorter than the token offset {offset})"
            left_out[emotion] = (len(texts), why)
    kept = {emotion: texts for emotion, texts in usable.items() if emotion not in left_out}
    return Coverage(kept, left_out)


def _check_coverage(found: Coverage, corpus: str, offset: int) -> None:
    if len(found.texts) < 2:
        shown = ", ".join(list(found.left_out)[:5]) + (", ..." if len(found.left_out) > 5 else "")
        raise SaefeaturesError(
            f"corpus {corpus} has enough passages (past token {offset}) for "
            f"{len(found.texts)} of the chosen emotions (left out: {shown}); contrast vectors "
            "need at least 2: choose --emotions that the corpus covers, a smaller --offset "
            "or --min-passages"
        )


def left_out_rows(
    run_id: str, stage: str, model: str, corpus: str, left_out: dict[str, tuple[int, str]]
) -> pa.Table:
    """`left_out` rows, one per emotion a stage left out."""
    emotions = sorted(left_out)
    return pa.table(
        {
            "run_id": [run_id] * len(emotions),
            "stage": [stage] * len(emotions),
            "model": [model] * len(emotions),
            "corpus": [corpus] * len(emotions),
            "emotion": emotions,
            "n_passages": [left_out[e][0] for e in emotions],
            "reason": [left_out[e][1] for e in emotions],
        }
    )


def _usable_passages(
    store: Store, options: VectorOptions, offset: int, model: LoadedModel | None
) -> tuple[Coverage, list[str]]:
    """The corpus's usable passages per emotion and the neutral passages, checked against
    the offset with the tokenizer alone; each emotion left out is warned of."""
    passages = catalog.read_corpus(store, options.corpus)
    tokenizer = models.load_tokenizer(options.model, loaded=model)
    found = coverage(tokenizer, passages, list(options.emotions), offset, options.min_passages)
    _check_coverage(found, options.corpus, offset)
    neutral = [p.text for p in catalog.read_corpus(store, catalog.neutral_of(options.corpus))]
    check_offset(tokenizer, offset, {"the neutral corpus": neutral})
    for emotion, (_, why) in found.left_out.items():
        progress.warn(f"vectors of {options.corpus}: {emotion} left out ({why})")
    return found, neutral


def _vector_tables(
    raw: np.ndarray,
    bases: list[np.ndarray],
    emotions: list[str],
    layers: list[int],
    counts: dict[str, int],
    common: dict[str, object],
) -> list[pa.Table]:
    """The rows of the raw vectors, then of the denoised ones with the components removed."""
    return [
        vector_rows(raw, emotions, layers, counts, {**common, "method": "raw", "n_removed": 0}),
        vector_rows(
            denoise(raw, bases),
            emotions,
            layers,
            counts,
            {**common, "method": "denoised"},
            n_removed=[len(basis) for basis in bases],
        ),
    ]


@dataclass(frozen=True)
class Extracted:
    """One `vectors` run: what it covered and how much text went through the model."""

    run_id: str
    model: str
    corpus: str
    emotions: int
    left_out: str  # the emotions with too few usable passages, or "none"
    layers: int
    passages: int
    tokens: int
    neutral_components_removed: list[int]  # per layer


def extract(store: Store, options: VectorOptions, model: LoadedModel | None = None) -> Extracted:
    """The vectors stage: raw and denoised contrast vectors for every layer, into the store.

    An emotion with fewer usable passages than `min_passages` is left out, with a warning
    and a row in `left_out`; every other input is checked before the run starts, so bad
    input writes nothing.
    """
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    layers = activations.select_layers(options.layers, models.shape_of(spec)["n_layers"], spec.name)
    offset = catalog.pooling_offset(store, options.corpus, options.offset)
    found, neutral = _usable_passages(store, options, offset, model)
    emotions = list(found.texts)
    texts = [text for emotion in emotions for text in found.texts[emotion]]
    labels = [emotion for emotion in emotions for _ in found.texts[emotion]]

    config = {**asdict(options), "model": spec.name, "layers": layers, "offset": offset}
    with store.run("vectors", config, atomic=True) as run_id:
        for name in (options.corpus, catalog.neutral_of(options.corpus)):
            catalog.ensure_builtin(store, run_id, name)
        model = models.load(options.model, dtype=options.dtype, device=options.device, loaded=model)
        pooled = pool_passages(model, texts, layers, offset, options.batch_size)
        counts = {emotion: len(found.texts[emotion]) for emotion in emotions}
        raw = contrast_vectors(pooled.means, labels, emotions)
        neutral_pooled = pool_passages(model, neutral, layers, offset, options.batch_size)
        bases = neutral_components(neutral_pooled.means, options.denoise_var)
        common = {
            "run_id": run_id,
            "model": spec.name,
            "corpus": options.corpus,
            "token_offset": offset,
        }
        tables = _vector_tables(raw, bases, emotions, layers, counts, common)
        where = {"model": spec.name, "corpus": options.corpus}
        omitted = left_out_rows(run_id, "vectors", spec.name, options.corpus, found.left_out)
        with store.transaction():
            store.replace("emotion_vectors", where, tables[0])
            store.insert("emotion_vectors", tables[1])
            store.replace("left_out", {**where, "stage": "vectors"}, omitted)
    return Extracted(
        run_id,
        spec.name,
        options.corpus,
        len(emotions),
        ", ".join(found.left_out) or "none",
        len(layers),
        len(texts),
        pooled.n_tokens + neutral_pooled.n_tokens,
        [len(basis) for basis in bases],
    )
