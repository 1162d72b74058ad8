"""Two-option choices read from the logits, steered through the project's interventions.

Shared by `validate preferences` and `validate behaviour`: both ask a question with the
options labelled (A) and (B), prefill the answer with "(", and read the logits of the
tokens `A` and `B` at the next position. Prompts are tokenized one by one with their
character offsets (so the tokens of a phrase, such as an activity, are known), right-
padded into batches, and each batch is one forward pass. Steering goes through
`interventions` and `steering`'s levers: a direction scaled by the layer's mean residual
norm, or the emotion's top aligned SAE features pushed as hard, optionally only on chosen
tokens of each prompt.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saefeatures import activations, interventions, models, steering
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.options import ChoiceOptions
from saefeatures.sae import loading
from saefeatures.store.database import Store
from saefeatures.store.read import aligned_features, saes_at

LETTERS = ("A", "B")
BASE_ANSWER_CUE = "Answer: ("  # a base model's answer, prefilled up to the letter


@dataclass(frozen=True)
class Setup:
    """Everything checked before a run starts, so bad input writes nothing."""

    spec: models.ModelSpec
    layer: int
    emotions: list[str]
    scales: list[float]
    vectors: dict[str, np.ndarray]  # each steering emotion's vector at the layer
    sae_row: dict[str, Any] | None


def check_setup(store: Store, options: ChoiceOptions) -> Setup:
    """Model, layer, emotions, scales, vectors, SAE and alignments, or one clear error."""
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    n_layers = models.shape_of(spec)["n_layers"]
    layer = options.layer if options.layer is not None else round(n_layers / 3)
    layer = activations.select_layers([layer], n_layers, spec.name)[0]
    scales, emotions = list(options.scales), list(options.emotions)
    vectors = steering.layer_vectors(
        store, spec.name, options.corpus, options.method, emotions, layer
    )
    sae_row = None
    if options.level != "direction":
        sae_row = saes_at(store, spec.name, layer, options.sae, same_model=True)[0]
        aligned_features(store, sae_row, options.corpus, emotions, options.top_k)
    return Setup(spec, layer, emotions, scales, vectors, sae_row)


def levers(store: Store, setup: Setup, options: ChoiceOptions, norm: float) -> list[Any]:
    """Each emotion's direction and/or its top-k features, as `steering` builds them."""
    chosen = []
    if options.level in ("direction", "both"):
        chosen += [steering.direction_lever(e, setup.vectors[e], norm) for e in setup.emotions]
    if setup.sae_row is not None:
        sae = loading.read_saelens(Path(setup.sae_row["path"]), options.device)
        for emotion in setup.emotions:
            chosen += steering.feature_levers(
                store, setup.sae_row, emotion, options.corpus, norm, sae, ks=(options.top_k,)
            )
    return chosen


def neutral_norm(store: Store, model: models.LoadedModel, layer: int) -> float:
    """The layer's mean residual norm on the neutral passages: the unit of every scale."""
    neutral = [p.text for p in catalog.read_corpus(store, "neutral")]
    return interventions.mean_residual_norm(model, neutral, [layer])[layer]


# -- prompts ---------------------------------------------------------------------------


def answer_prompt(model: models.LoadedModel, question: str) -> str:
    """The question as a user turn with the reply prefilled to "(" (instruct), or plain
    text followed by "Answer: (" (base)."""
    return model.format_prompt(question, "(" if model.is_chat else BASE_ANSWER_CUE)


def letter_ids(model: models.LoadedModel) -> list[int]:
    """The token ids of `A` and `B` as they follow "(" (a tokenizer may write a letter
    that starts a text otherwise); each must be one token after the one of "("."""
    cue, *ids = (
        model.tokenizer(text, add_special_tokens=False)["input_ids"]
        for text in ("(", *(f"({letter}" for letter in LETTERS))
    )
    if any(len(found) != len(cue) + 1 or found[: len(cue)] != cue for found in ids):
        raise SaefeaturesError(f"{model.name} does not encode A and B as single tokens after (")
    return [found[-1] for found in ids]


@dataclass(frozen=True)
class Encoded:
    """One prompt's token ids and the token positions of each tracked character span."""

    ids: list[int]
    spans: list[list[int]]


def encode(model: models.LoadedModel, text: str, spans: Sequence[tuple[int, int]] = ()) -> Encoded:
    """Tokenize as `models.LoadedModel.encode` does, keeping the tokens of each span."""
    out = model.tokenizer(
        text, add_special_tokens=not model.is_chat, return_offsets_mapping=True
    )  # chat prompts from `format_prompt` already carry their special tokens
    offsets = out["offset_mapping"]
    positions = [
        [i for i, (first, last) in enumerate(offsets) if first < end and last > start]
        for start, end in spans
    ]
    if any(not found for found in positions):
        raise SaefeaturesError(f"a phrase of the prompt {text!r} tokenizes to nothing")
    return Encoded(list(out["input_ids"]), positions)


# -- reading the letters ---------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    ids: torch.Tensor  # [rows, width], right-padded
    mask: torch.Tensor
    last: torch.Tensor  # each row's last real position: where the letter is read


def pad(model: models.LoadedModel, rows: Sequence[Encoded]) -> Batch:
    width = max(len(row.ids) for row in rows)
    filler = model.tokenizer.pad_token_id or 0
    ids = torch.tensor([row.ids + [filler] * (width - len(row.ids)) for row in rows])
    mask = torch.tensor([[1] * len(row.ids) + [0] * (width - len(row.ids)) for row in rows])
    last = torch.tensor([len(row.ids) - 1 for row in rows])
    return Batch(ids.to(model.device), mask.to(model.device), last.to(model.device))


def positions_mask(chosen: Sequence[list[int]], width: int) -> torch.Tensor:
    """`[rows, width]`, true at each row's chosen positions (the steered tokens)."""
    mask = torch.zeros(len(chosen), width, dtype=torch.bool)
    for row, positions in enumerate(chosen):
        mask[row, positions] = True
    return mask


# Builds a batch's interventions from its padded width and its rows' indices.
Steering = Callable[[Batch, Sequence[int]], list[interventions.Intervention]]
SpanReader = Callable[[Sequence[int], dict[int, torch.Tensor]], None]


@torch.no_grad()
def letter_logits(
    model: models.LoadedModel,
    rows: Sequence[Encoded],
    batch_size: int,
    steer: Steering | None = None,
    capture: Sequence[int] = (),
    read: SpanReader | None = None,
) -> np.ndarray:
    """`[rows, 2]` logits of A and B at each prompt's last position, one forward per batch.

    Batches hold prompts of similar length (little padding), and only the two letters'
    logits are computed, at the rows' last positions (`LoadedModel.head`): with
    Gemma's 262k-token vocabulary the full logits would cost more than the layers.
    `steer` gives each batch its interventions; `capture` layers' residuals are handed to
    `read` with the batch's row indices (the unsteered pass reads activity tokens there).
    """
    letters = letter_ids(model)
    found = np.zeros((len(rows), 2))
    by_length = np.argsort([len(row.ids) for row in rows], kind="stable")
    for start in range(0, len(rows), batch_size):
        chunk = by_length[start : start + batch_size].tolist()
        batch = pad(model, [rows[i] for i in chunk])
        captured: dict[int, torch.Tensor] = {}
        hooks = [(activations.hook_name(layer), _capture(captured, layer)) for layer in capture]
        edits = steer(batch, chunk) if steer else []
        with interventions.applied(model, edits), model.hooks(hooks):
            hidden = model.final_hidden(batch.ids, attention_mask=batch.mask)
        final = model.head(hidden[torch.arange(len(chunk)), batch.last], letters)
        found[chunk] = final.float().cpu().numpy()
        if read is not None:
            read(chunk, captured)
    return found


def _capture(captured: dict[int, torch.Tensor], layer: int) -> Callable:
    def keep(activation: torch.Tensor, hook: Any = None) -> torch.Tensor:
        captured[layer] = activation.detach().float()
        return activation

    return keep


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z), written with tanh so that large |z| neither overflows nor warns."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def first_probability(logits: np.ndarray) -> np.ndarray:
    """P(A) from softmax over the two letters' logits: the sigmoid of their difference."""
    return sigmoid(logits[:, 0] - logits[:, 1])


def level_comparisons(
    kind: str, rows: list[dict], value: str, label: str, extra: Sequence[str] = ()
) -> list[dict]:
    """Direction vs features for each emotion and scale: one `comparisons` row each, with
    each level's k and `extra` columns in `extra`."""
    found: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        if row["level"] in ("direction", "features"):
            found.setdefault((row["emotion"], row["scale"]), {})[row["level"]] = row
    return [
        {
            "kind": kind,
            "other_model": None,
            "metric": f"{label} ({emotion}, scale {scale})",
            "direction_value": levels.get("direction", {}).get(value),
            "feature_value": levels.get("features", {}).get(value),
            "extra": json.dumps(
                {
                    "emotion": emotion,
                    "scale": scale,
                    **{
                        f"{level}_{key}": row[key]
                        for level, row in levels.items()
                        for key in ("k", *extra)
                    },
                }
            ),
        }
        for (emotion, scale), levels in found.items()
    ]


# -- intervals -------------------------------------------------------------------------


def bootstrap_intervals(
    n_units: int,
    estimate: Callable[[np.ndarray], np.ndarray],
    n_resamples: int,
    seed: int,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of a vector-valued `estimate(indices)` over units resampled with
    replacement (pairs of activities, or scenarios): `stats.bootstrap_ci` is for one
    paired statistic, these estimates are whole vectors (every activity's score).

    An estimate may be NaN where a resample does not define it (an activity that no
    resampled pair compares): each interval is over the resamples that define it, NaN if
    none does.
    """
    rng = np.random.default_rng(seed)
    draws = np.stack([estimate(rng.integers(0, n_units, n_units)) for _ in range(n_resamples)])
    tail = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: NaN, as wanted
        low, high = np.nanquantile(draws, [tail, 1 - tail], axis=0)
    return low, high
