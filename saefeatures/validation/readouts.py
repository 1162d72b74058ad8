"""Shared parts of the validation experiments (`saefeatures validate ...`).

Every experiment reads the same things at two levels: an emotion's direction (its
contrast vector) and its top aligned SAE features (their summed activation, each signed
by its decoder cosine, so a feature carrying the emotion negated counts against it). One
forward per batch, stopped after the last layer needed, feeds both levels at every layer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from saefeatures import activations, models, progress
from saefeatures.errors import SaefeaturesError
from saefeatures.options import ReadoutOptions
from saefeatures.sae import loading
from saefeatures.store.database import Store
from saefeatures.store.read import (
    aligned_features,
    registered_sae,
    residual_saes,
    saes_at,
    vectors_at,
)
from saefeatures.vectors import extraction

LEVELS = ("direction", "features", "both")
# Observed statistics equal to a null draw up to rounding count as "as extreme".
_REL_TOL = 1e-12

Weights = Callable[[torch.Tensor], torch.Tensor]  # attention mask -> token weights


@dataclass(frozen=True)
class Plan:
    """The checked inputs both levels read: vectors from the store, SAEs and their features."""

    spec: models.ModelSpec
    level: str
    emotions: list[str]
    layers: list[int]  # the layers read: the direction's with the SAE layers, or the latter
    vectors: np.ndarray  # [E, L, d] as stored
    sae_rows: list[dict]
    aligned: list[dict[str, list[tuple[int, float]]]]  # per SAE: emotion -> top features


def plan(store: Store, options: ReadoutOptions, aligned: bool = True) -> Plan:
    """Every check the two levels need, before anything runs, so bad input writes nothing.
    With `aligned`, the features are each emotion's top aligned ones from the store (a
    stage that chooses its own features passes False)."""
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    read = (store, spec.name, options.corpus, options.method, options.emotions)
    emotions, layers, found = emotion_vectors(*read, chosen_layers(options.layers, spec))
    rows = []
    if options.level != "direction":
        rows = sae_rows(store, spec.name, layers, options.sae)
        sae_layers = {row["layer"] for row in rows}
        layers = sorted(sae_layers if options.level == "features" else {*layers, *sae_layers})
        emotions, layers, found = emotion_vectors(*read, layers)
    chosen = [
        aligned_features(store, row, options.corpus, emotions, options.top_k) if aligned else {}
        for row in rows
    ]
    return Plan(spec, options.level, emotions, layers, found, rows, chosen)


def run_config(chosen: Plan, options: ReadoutOptions) -> dict[str, Any]:
    """The run's recorded configuration: the options and what they resolved to."""
    saes = [row["sae_id"] for row in chosen.sae_rows]
    return {
        **asdict(options),
        "model": chosen.spec.name,
        "layers": chosen.layers,
        "emotions": chosen.emotions,
        "saes": saes,
    }


def feature_sets(chosen: Plan, options: ReadoutOptions) -> list[FeatureSet]:
    """The planned SAEs, loaded, with their emotions' features as read-out matrices."""
    return [
        _feature_set(row, aligned, options.top_k, options.device)
        for row, aligned in zip(chosen.sae_rows, chosen.aligned, strict=True)
    ]


# -- emotion vectors ---------------------------------------------------------------------


def emotion_vectors(
    store: Store,
    model: str,
    corpus: str,
    method: str,
    emotions: Sequence[str] | None,
    layers: list[int] | None,
) -> tuple[list[str], list[int], np.ndarray]:
    """The chosen emotions (None: every one with a vector, at least 2), the layers (None:
    every one with vectors) and their `[E, L, d]` vectors from the store."""
    chosen = None if emotions is None else list(emotions)
    found = vectors_at(store, model, corpus, method, chosen, layers)
    if len(found.emotions) < 2:
        raise SaefeaturesError("contrast vectors need at least 2 emotions; choose more")
    return found.emotions, found.layers, found.vectors


def chosen_layers(layers: Sequence[int] | None, spec: models.ModelSpec) -> list[int] | None:
    """`--layers`: None for all (every layer with stored vectors), else checked indices."""
    if layers is None:
        return None
    return activations.select_layers(layers, models.shape_of(spec)["n_layers"], spec.name)


def unit(vectors_: np.ndarray) -> np.ndarray:
    """Each vector (last axis) at length 1; a zero vector stays zero."""
    norms = np.linalg.norm(vectors_, axis=-1, keepdims=True)
    return np.divide(vectors_, norms, out=np.zeros_like(vectors_), where=norms > 0)


# -- aligned SAE features ----------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSet:
    """One SAE's top aligned features per emotion, as a signed read-out matrix."""

    sae_id: str
    layer: int
    sae: Any
    columns: list[int]  # the features read (union over emotions)
    weights: np.ndarray  # [E, len(columns)]: cosine sign of an emotion's top-k, else 0
    k: int

    def read(self, latents: np.ndarray) -> np.ndarray:
        """`[n, E]` read-outs from a `Readout`'s pooled latents of this SAE: each emotion's
        top features summed, each signed by its decoder cosine."""
        return latents[:, self.columns] @ self.weights.T


def sae_rows(store: Store, model: str, layers: list[int], chosen: str | None) -> list[dict]:
    """The SAE (first by id, or `chosen`: the model's own, at its layer) at each of
    `layers` that has one."""
    if chosen is not None:
        return saes_at(store, model, registered_sae(store, chosen, model)["layer"], chosen)
    found = residual_saes(store, model)
    wanted = [rows[0] for layer, rows in found.items() if layer in layers]
    if not wanted:
        have = ", ".join(map(str, found)) or "none"
        raise SaefeaturesError(
            f"no SAE for {model} at the chosen layers (SAEs at layers: {have}); train one with "
            f"`saefeatures train --model {model} --layer L` or register one with "
            "`saefeatures load`, or pass --level direction"
        )
    return wanted


def _feature_set(
    row: dict, chosen: dict[str, list[tuple[int, float]]], k: int, device: str
) -> FeatureSet:
    """Load the SAE and lay its emotions' top features out as one read-out matrix."""
    sae = loading.read_saelens(Path(row["path"]), device)
    return with_features(row["sae_id"], row["layer"], sae, chosen, k)


def with_features(
    sae_id: str, layer: int, sae: Any, chosen: dict[str, list[tuple[int, float]]], k: int
) -> FeatureSet:
    """An SAE's read-out matrix for each emotion's chosen (feature, cosine) pairs."""
    columns = sorted({feature for items in chosen.values() for feature, _ in items})
    weights = np.zeros((len(chosen), len(columns)))
    for e, items in enumerate(chosen.values()):
        for feature, score in items:
            weights[e, columns.index(feature)] = np.sign(score)
    return FeatureSet(sae_id, layer, sae, columns, weights, k)


# -- one forward, both levels ------------------------------------------------------------


@dataclass(frozen=True)
class Readout:
    """Per text: weighted mean residual per layer and feature read-outs per SAE."""

    residual: np.ndarray  # [n, layers, d]
    latents: list[np.ndarray]  # per SAE read: [n, d_sae] weighted mean latent activations
    kept: np.ndarray  # [n] bool: the text has a token with weight > 0


def offset_weights(offset: int) -> Weights:
    """Tokens from `offset` on, as the emotion vectors were pooled."""
    return lambda mask: extraction.pooling_weights(mask, offset)


def final_token_weights(mask: torch.Tensor) -> torch.Tensor:
    """1.0 on each row's last real token, for either padding side."""
    return mask.float() * (mask.cumsum(dim=1) == mask.sum(dim=1, keepdim=True)).float()


@torch.no_grad()
def read_out(
    model: models.LoadedModel,
    texts: list[str],
    layers: list[int],
    saes: list[tuple[int, Any]],
    weights_of: Weights,
    batch_size: int,
    chat_formatted: bool = False,
) -> Readout:
    """Every text through the model once per batch (by length), read at every layer and
    through every (layer, SAE).

    The forward stops after the last layer needed; each SAE encodes the residual of its
    layer token by token, and both levels average the same weighted tokens. Every latent
    is kept, so that features can be chosen after reading (e.g. on a training half).
    """
    add_special = not (chat_formatted and model.is_chat)
    ids = model.tokenizer(
        texts, add_special_tokens=add_special, truncation=True, max_length=extraction.MAX_TOKENS
    )["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    residual = np.zeros((len(texts), len(layers), model.d_model), dtype=np.float32)
    read = [np.zeros((len(texts), int(sae.cfg.d_sae)), dtype=np.float32) for _, sae in saes]
    kept = np.zeros(len(texts), dtype=bool)
    needed = sorted({*layers, *(layer for layer, _ in saes)})
    for start in progress.track(range(0, len(order), batch_size), "reading out texts"):
        chunk = order[start : start + batch_size]
        batch = model.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
        batch = {key: value.to(model.device) for key, value in batch.items()}
        acts = activations.harvest(model, batch, needed)
        weights = weights_of(batch["attention_mask"]).float()
        counts = weights.sum(dim=1)
        weights = (weights / counts.clamp(min=1e-9)[:, None]).cpu()
        stacked = torch.stack([acts[layer].float().cpu() for layer in layers], dim=1)
        residual[chunk] = torch.einsum("blpd,bp->bld", stacked, weights).numpy()
        kept[chunk] = (counts > 0).cpu().numpy()
        for (layer, sae), out in zip(saes, read, strict=True):
            encoded = sae.encode(acts[layer].to(sae.W_dec.device, sae.W_dec.dtype))
            out[chunk] = torch.einsum("bpf,bp->bf", encoded.float().cpu(), weights).numpy()
    return Readout(residual, read, kept)


def projections(residual: np.ndarray, emotion_vectors_: np.ndarray) -> np.ndarray:
    """`[n, layers, E]`: each text's residual on each emotion's unit direction, per layer."""
    return np.einsum("nld,eld->nle", residual, unit(emotion_vectors_))


# -- statistics and rows -----------------------------------------------------------------


def upper_tail_p(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """(1 + null draws at least as large) / (1 + draws), along the null's first axis.

    The +1s keep p > 0: a finite sample cannot prove 0. NaN observations give NaN.
    """
    observed = np.asarray(observed, dtype=float)
    extreme = (null >= observed - _REL_TOL * np.abs(observed)).sum(axis=0)
    p = (1 + extreme) / (1 + len(null))
    return np.where(np.isnan(observed), np.nan, p)


def comparison_rows(
    run_id: str,
    kind: str,
    model: str,
    layer: int,
    values: dict[str, tuple[float, float]],
    extra: dict,
) -> list[dict[str, Any]]:
    """`comparisons` rows: one per metric, direction value against feature value."""
    return [
        {
            "run_id": run_id,
            "kind": kind,
            "model": model,
            "other_model": None,
            "layer": layer,
            "metric": metric,
            "direction_value": direction,
            "feature_value": feature,
            "extra": json.dumps(extra),
        }
        for metric, (direction, feature) in values.items()
    ]


def sae_layer_comparisons(
    run_id: str,
    kind: str,
    chosen: Plan,
    values_of: Callable[[str, int], dict[str, float]],
    extra: dict,
) -> list[dict[str, Any]]:
    """At each SAE layer, every metric of the direction against the features, where
    `values_of(level, layer)` gives a level's metrics; none unless both levels ran."""
    if chosen.level != "both":
        return []
    rows = []
    for row in chosen.sae_rows:
        direction, features = (values_of(level, row["layer"]) for level in LEVELS[:2])
        values = {metric: (direction[metric], features[metric]) for metric in direction}
        rows += comparison_rows(
            run_id, kind, chosen.spec.name, row["layer"], values, {"sae_id": row["sae_id"], **extra}
        )
    return rows


def table_or_none(rows: list[dict[str, Any]]) -> pa.Table | None:
    """Rows for `Store.replace_all`: None when there are none, so the old ones only go."""
    return pa.Table.from_pylist(rows) if rows else None
