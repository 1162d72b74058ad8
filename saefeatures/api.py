"""The Python API: a workspace's store read as tensors and DataFrames, its SAEs loaded,
and steering with its vectors and features as a `with` block. Each call goes through the
functions the commands use (`saefeatures sql`, `saes`, `steer`), so both give the same
answers (docs/api.md shows every call)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from saefeatures import models
from saefeatures.config import DEFAULT_CORPUS, DEFAULT_DB, DEFAULT_OUT
from saefeatures.errors import SaefeaturesError
from saefeatures.store import queries, read
from saefeatures.store.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

    from saefeatures.hooked import Hooked
    from saefeatures.interventions import Direction, Features
    from saefeatures.steering import Lever
    from saefeatures.store.database import Store

STEER_K = 20  # the top-k features `saefeatures steer` generates with


def open(
    db: str | Path = DEFAULT_DB, out: str | Path = DEFAULT_OUT, read_only: bool = True
) -> OpenWorkspace:
    """The workspace's store, open read-only unless asked: while it is open, stages of the
    command line cannot write to it (close it, or use it in a `with` block)."""
    return OpenWorkspace(Workspace(Path(db), Path(out)), read_only)


@dataclass(frozen=True)
class Vectors:
    """One layer's emotion vectors: row i of `tensor` is the vector of `names[i]`."""

    names: list[str]
    tensor: torch.Tensor  # [emotions, d_model]
    model: str
    corpus: str
    layer: int
    method: str

    def __getitem__(self, emotion: str) -> torch.Tensor:
        if emotion not in self.names:
            raise SaefeaturesError(
                f"no vector for {emotion!r}; these vectors are of {', '.join(self.names)}"
            )
        return self.tensor[self.names.index(emotion)]


class OpenWorkspace:
    """An open workspace: its store (`store`) and its folder of artifacts (`workspace.out`)."""

    def __init__(self, workspace: Workspace, read_only: bool = True) -> None:
        self.workspace = workspace
        self.store = workspace.open_store(read_only=read_only)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> OpenWorkspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------

    def sql(self, query: str, **params: Any) -> pd.DataFrame:
        """A statement, a .sql file or a shipped query's name, with `$name` parameters given
        by keyword, as `saefeatures sql` runs it."""
        return queries.run(self.store, query, params or None).to_pandas()

    def vectors(self, model: str, corpus: str, layer: int, method: str = "denoised") -> Vectors:
        """The emotion vectors of a model (named as for `--model`) at one layer."""
        name = models.store_name(model)
        found = read.vectors_at(self.store, name, corpus, method, None, [layer])
        tensor = torch.from_numpy(found.vectors[:, 0].copy())
        return Vectors(found.emotions, tensor, name, corpus, layer, method)

    def saes(self, model: str | None = None) -> pd.DataFrame:
        """The registered SAEs (of one model) with their held-out metrics, as `saefeatures saes`."""
        from saefeatures.sae.api import list_saes

        return list_saes(self.store, model and models.store_name(model)).to_pandas()

    def sae(self, sae_id: str, device: str = "cpu") -> Any:
        """The SAE as SAELens loads it from its folder."""
        from saefeatures.sae import loading

        return loading.read_saelens(Path(read.registered_sae(self.store, sae_id)["path"]), device)

    def features(self, sae_id: str) -> pd.DataFrame:
        """The SAE's features with what the scan of text found for each (`saefeatures align`)."""
        read.registered_sae(self.store, sae_id)
        return self._frame(
            "SELECT * FROM features WHERE sae_id = $sae_id ORDER BY feature", {"sae_id": sae_id}
        )

    def alignments(
        self,
        sae_id: str | None = None,
        emotion: str | None = None,
        method: str | None = None,
        corpus: str | None = None,
        top: int | None = None,
    ) -> pd.DataFrame:
        """Rows of `alignments`, those of the given SAE, emotion, method and corpus (None:
        any) and rank up to `top`, best first."""
        if sae_id is not None:
            read.registered_sae(self.store, sae_id)
        filters = {"sae_id": sae_id, "emotion": emotion, "method": method, "corpus": corpus}
        params: dict[str, Any] = {key: value for key, value in filters.items() if value is not None}
        where = [f"{key} = ${key}" for key in params]
        if top is not None:
            params["top"] = top
            where.append("rank <= $top")
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return self._frame(
            f"SELECT * FROM alignments {clause}ORDER BY sae_id, corpus, emotion, method, rank",
            params,
        )

    def _frame(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        return self.store.query(sql, params).to_pandas()

    # -- steering ----------------------------------------------------------------------

    @contextmanager
    def steer(
        self,
        model: Any,
        *,
        scale: float,
        emotion: str | None = None,
        features: Sequence[int] | None = None,
        sae: str | None = None,
        layer: int | None = None,
        k: int = STEER_K,
        corpus: str = DEFAULT_CORPUS,
        method: str = "denoised",
        tokenizer: Any = None,
        model_name: str | None = None,
        norm: float | None = None,
    ) -> Iterator[Direction | Features]:
        """Inside the block every forward of `model` (a `saefeatures.models.load` model, a
        TransformerLens bridge or a transformers model) is steered at `layer`'s residual
        stream; after it, none is. What pushes: `emotion`'s vector; with `sae`, its top-`k`
        features by decoder cosine; or the SAE's `features`, equally weighted. `scale` is
        `saefeatures steer`'s: a multiple of the layer's mean residual norm on the neutral
        corpus, measured with `tokenizer` (a transformers model's own) unless `norm` gives
        it. The block is given the edit."""
        from saefeatures import hooked, interventions

        target = hooked.hooked(model, tokenizer, model_name)
        layer, edit = self._edit(
            target, scale, emotion, features, sae, layer, k, corpus, method, norm
        )
        with interventions.applied(target, [interventions.Intervention.at(layer, edit)]):
            yield edit

    def _edit(
        self,
        target: Hooked,
        scale: float,
        emotion: str | None,
        features: Sequence[int] | None,
        sae_id: str | None,
        layer: int | None,
        k: int,
        corpus: str,
        method: str,
        norm: float | None,
    ) -> tuple[int, Direction | Features]:
        """The layer and the edit of one steering block, checked before anything runs."""
        from saefeatures import hooked, steering
        from saefeatures.corpora import catalog

        if not math.isfinite(scale):
            raise SaefeaturesError(f"scale must be a finite number, got {scale}")
        if (emotion is None) == (features is None):
            raise SaefeaturesError("steer with emotion= or with features= (and sae=), one of them")
        if features is not None and sae_id is None:
            raise SaefeaturesError("features= needs sae=: the id of the SAE they belong to")
        if sae_id is not None and layer is None:
            layer = read.registered_sae(self.store, sae_id)["layer"]
        if layer is None:
            raise SaefeaturesError("pass layer=: the layer whose residual stream to steer")
        layer = target.check_layer(layer)
        if sae_id is None:
            found = steering.layer_vectors(
                self.store, target.name, corpus, method, [emotion], layer
            )
            lever = partial(steering.direction_lever, emotion, found[emotion])
        else:
            row = read.saes_at(self.store, target.name, layer, sae_id, same_model=True)[0]
            sae = self.sae(sae_id, target.device)
            if features is None:
                lever = partial(_top_features, self.store, row, emotion, corpus, sae, k)
            else:
                _check_features(features, row)
                lever = partial(
                    steering.added, "features", "", sae, list(features), [1.0] * len(features)
                )
        if norm is None:
            neutral = [passage.text for passage in catalog.read_corpus(self.store, "neutral")]
            norm = hooked.mean_residual_norm(target, neutral, layer)
        return layer, lever(norm).make(scale)


def _top_features(
    store: Store, row: dict[str, Any], emotion: str, corpus: str, sae: Any, k: int, norm: float
) -> Lever:
    """The emotion's top-k features by decoder cosine, weighted by their cosines and pushed
    as hard as its direction: `saefeatures steer`'s feature level."""
    from saefeatures import steering

    return steering.feature_levers(store, row, emotion, corpus, norm, sae, (k,))[0]


def _check_features(features: Sequence[int], row: dict[str, Any]) -> None:
    bad = [f for f in features if not 0 <= f < row["d_sae"]]
    if not features or bad:
        raise SaefeaturesError(
            f"give features of SAE {row['sae_id']} as numbers 0..{row['d_sae'] - 1}"
            + (f", not {', '.join(map(str, bad))}" if bad else "")
        )
