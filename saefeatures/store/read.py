"""The one definition of what several stages read from the store: the vectors at a
layer, the SAEs at a layer and their aligned features, the layers a model has, and the
digests of stored inputs that the main job's keys are made of."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from saefeatures import activations, models
from saefeatures.errors import SaefeaturesError
from saefeatures.store.database import Store


def checked_layers(layers: Sequence[int] | None, spec: models.ModelSpec) -> list[int]:
    """The requested layers (None: all of them), each checked against the model's depth."""
    return activations.select_layers(layers, models.shape_of(spec)["n_layers"], spec.name)


# -- emotion vectors -------------------------------------------------------------------


@dataclass(frozen=True)
class VectorSet:
    emotions: list[str]
    layers: list[int]
    vectors: np.ndarray  # [emotions, layers, d]


def read_vectors(store: Store, model: str, corpus: str, method: str) -> VectorSet:
    rows = store.query(
        "SELECT emotion, layer, vector FROM emotion_vectors "
        "WHERE model = ? AND corpus = ? AND method = ? ORDER BY emotion, layer",
        [model, corpus, method],
    )
    if rows.num_rows == 0:
        raise SaefeaturesError(
            f"no {method} vectors for model {model} and corpus {corpus} (the store has "
            f"{stored_vectors(store)}); make them with "
            f"`saefeatures vectors --model {model} --corpus {corpus}`"
        )
    emotions = list(dict.fromkeys(rows["emotion"].to_pylist()))
    layers = sorted(set(rows["layer"].to_pylist()))
    flat = np.asarray(rows["vector"].combine_chunks().flatten(), dtype=np.float32)
    vectors = flat.reshape(len(emotions), len(layers), -1)
    return VectorSet(emotions, layers, vectors)


def vectors_at(
    store: Store,
    model: str,
    corpus: str,
    method: str,
    emotions: list[str] | None,
    layers: list[int] | None,
) -> VectorSet:
    """The stored vectors of `emotions` at `layers` (None: all of them); a missing one is
    an error naming the command that makes it."""
    vector_set = read_vectors(store, model, corpus, method)
    emotions = vector_set.emotions if emotions is None else emotions
    layers = vector_set.layers if layers is None else layers
    missing = [e for e in emotions if e not in vector_set.emotions]
    absent = [layer for layer in layers if layer not in vector_set.layers]
    if missing or absent:
        what = ", ".join(missing) if missing else f"layers {', '.join(map(str, absent))}"
        have = f"emotions {', '.join(vector_set.emotions)} at layers " + ", ".join(
            map(str, vector_set.layers)
        )
        raise SaefeaturesError(
            f"no {method} vectors for {what} ({model}, corpus {corpus}; stored: {have}); "
            "make them with "
            f"`saefeatures vectors --model {model} --corpus {corpus}` (with --emotions and "
            "--layers to cover them)"
        )
    rows = [vector_set.emotions.index(e) for e in emotions]
    columns = [vector_set.layers.index(layer) for layer in layers]
    return VectorSet(list(emotions), list(layers), vector_set.vectors[rows][:, columns])


def stored_vectors(store: Store) -> str:
    """Which vectors the store has, by model, corpus and method, for an error message."""
    rows = store.query(
        "SELECT model, corpus, method, list_sort(list(DISTINCT layer)) AS layers "
        "FROM emotion_vectors GROUP BY ALL ORDER BY ALL"
    ).to_pylist()
    return (
        "; ".join(
            f"{r['method']} vectors of {r['model']} on corpus {r['corpus']} at layers "
            + ", ".join(map(str, r["layers"]))
            for r in rows
        )
        or "no vectors"
    )


def vector_emotions(store: Store, model: str, corpus: str, method: str = "denoised") -> list[str]:
    """The emotions with stored vectors for a model and corpus (none: an empty list)."""
    return store.query(
        "SELECT DISTINCT emotion FROM emotion_vectors WHERE model = ? AND corpus = ? "
        "AND method = ? ORDER BY emotion",
        [model, corpus, method],
    )["emotion"].to_pylist()


# -- SAEs and their aligned features ---------------------------------------------------


def registered_sae(store: Store, sae_id: str, model: str | None = None) -> dict[str, Any]:
    """The SAE's row; with `model`, it must have been trained on that model (alignment
    reads another model's SAE of the same width, the validation experiments do not)."""
    rows = store.query("SELECT * FROM saes WHERE sae_id = ?", [sae_id]).to_pylist()
    if not rows:
        raise SaefeaturesError(
            f"no SAE {sae_id!r} in the store; `saefeatures saes` lists the registered ones"
        )
    if model is not None and rows[0]["model"] != model:
        raise SaefeaturesError(f"SAE {sae_id} was trained on {rows[0]['model']}, not {model}")
    return rows[0]


def residual_saes(store: Store, model: str) -> dict[int, list[dict[str, Any]]]:
    """The model's SAEs on the residual stream, by layer, each layer's by id."""
    rows = store.query(
        "SELECT * FROM saes WHERE model = ? ORDER BY layer, sae_id", [model]
    ).to_pylist()
    found: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        if row["hook"] == activations.hook_name(row["layer"]):
            found.setdefault(row["layer"], []).append(row)
    return found


def saes_at(
    store: Store, model: str, layer: int, chosen: str | None, same_model: bool = False
) -> list[dict[str, Any]]:
    """Every SAE on the layer's residual stream (by id), or the `chosen` one, checked to
    read there (and with `same_model`, to have been trained on the model)."""
    hook = activations.hook_name(layer)
    if chosen is not None:
        row = registered_sae(store, chosen, model if same_model else None)
        if row["layer"] != layer or row["hook"] != hook:
            raise SaefeaturesError(
                f"SAE {chosen} reads {row['hook']}, but the emotion vectors of layer {layer} "
                f"live at {hook}; pick an SAE on that hook or pass --layer {row['layer']}"
            )
        return [row]
    found = residual_saes(store, model)
    if layer not in found:
        have = f"layers {', '.join(map(str, found))}" if found else "none"
        raise SaefeaturesError(
            f"no SAE for {model} at {hook} (SAEs on this model's residual stream: {have}); "
            f"train one with `saefeatures train --model {model} --layer {layer}` or register "
            "one with `saefeatures load`"
        )
    return found[layer]


def aligned_features(
    store: Store, sae_row: dict, corpus: str, emotions: list[str], k: int | None = None
) -> dict[str, list[tuple[int, float]]]:
    """Each emotion's features by decoder cosine, best first (the top k), as (feature,
    cosine), from `alignments`; an emotion with none names the command that makes them."""
    found = store.query(
        "SELECT emotion, feature, score FROM alignments WHERE sae_id = ? AND layer = ? AND "
        "corpus = ? AND method = 'decoder_cosine' AND rank <= ? ORDER BY emotion, rank",
        [sae_row["sae_id"], sae_row["layer"], corpus, k if k is not None else 2**31 - 1],
    ).to_pylist()
    chosen: dict[str, list[tuple[int, float]]] = {emotion: [] for emotion in emotions}
    for item in found:
        if item["emotion"] in chosen:
            chosen[item["emotion"]].append((item["feature"], item["score"]))
    missing = [emotion for emotion, items in chosen.items() if not items]
    if missing:
        raise SaefeaturesError(
            f"no alignments for {', '.join(missing)} with SAE {sae_row['sae_id']} on corpus "
            f"{corpus}; run `saefeatures align --layer {sae_row['layer']} --corpus {corpus}` "
            "first"
        )
    return chosen


# -- digests of stored inputs ---------------------------------------------------------


def corpus_digest(store: Store, corpus: str) -> str:
    """A digest of a corpus's passages as stored (text, emotion, topic, in order)."""
    value = store.query(
        "SELECT md5(coalesce(string_agg(concat_ws(chr(31), passage_id, emotion, topic, text), "
        "chr(30) ORDER BY passage_id), '')) AS digest FROM passages WHERE corpus = ?",
        [corpus],
    )["digest"][0].as_py()
    return f"{corpus}:{value}"
