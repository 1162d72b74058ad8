"""Interventions: one edit at one hook site, on chosen rows and tokens of a batch.

Steering, the validation experiments, activation patching and feature attribution all
edit activations through here, so the direction level and the feature level differ only
in the edit, never in where or how it is applied.

- `Direction` adds `scale x norm x unit(vector)`, with `norm` the layer's mean residual
  norm, so a scale means the same push at every layer and in every model.
- `Features` goes through an SAE: the residual is encoded, the chosen features are
  changed (`add` adds to their activation, `clamp` sets it, `ablate` sets it to 0), and
  the result is decoded with the SAE's error term put back. The error term makes an
  empty feature intervention reproduce the clean model (to float precision), so every
  effect is the features' and not the SAE's reconstruction loss.
- `Patch` puts recorded activations back at chosen positions (and, at `hook_z`, into one
  attention head): activation patching.

An `Intervention` applies an edit at a hook site (`blocks.L.hook_resid_post`,
`blocks.L.attn.hook_z`, ...), to every row of a batch or one slice of rows (several
conditions in one batch), and optionally only at the tokens a mask marks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from saefeatures import activations
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel

MODES = ("add", "clamp", "ablate")


def sae_split(sae: Any, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The SAE's features of a residual and its error term: residual = decode + error."""
    x = residual.to(sae.W_dec.dtype)
    acts = sae.encode(x)
    return acts, x - sae.decode(acts)


@dataclass(frozen=True)
class Direction:
    """Push along `vector` (any length; only its direction is used)."""

    vector: torch.Tensor
    scale: float  # in units of `norm`
    norm: float  # the layer's mean residual norm

    def edit(self, residual: torch.Tensor) -> torch.Tensor:
        unit = self.vector.to(residual.device, torch.float32)
        unit = unit / unit.norm()
        return residual + (self.scale * self.norm * unit).to(residual.dtype)


@dataclass(frozen=True)
class Features:
    """Change SAE features: `add` value to each one's activation, `clamp` it to value, or
    `ablate` it (values are then ignored)."""

    sae: Any
    features: Sequence[int]
    values: Sequence[float]
    mode: str = "add"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SaefeaturesError(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if len(self.features) != len(self.values):
            raise SaefeaturesError("give one value per feature")

    def edit(self, residual: torch.Tensor) -> torch.Tensor:
        acts, error = sae_split(self.sae, residual)
        changed = acts.clone()
        index = torch.as_tensor(list(self.features), dtype=torch.long, device=acts.device)
        values = torch.as_tensor(list(self.values), dtype=acts.dtype, device=acts.device)
        if self.mode == "add":
            changed[..., index] += values
        elif self.mode == "clamp":
            changed[..., index] = values
        else:
            changed[..., index] = 0
        return (self.sae.decode(changed) + error).to(residual.dtype)


@dataclass(frozen=True)
class Patch:
    """Put `values` `[positions, ...]` at `positions` of every edited row (at `hook_z`, into
    attention head `head` only). Values that require gradients keep them: attribution
    patching differentiates through a patch."""

    values: torch.Tensor
    positions: Sequence[int]
    head: int | None = None

    def edit(self, activation: torch.Tensor) -> torch.Tensor:
        out = activation.clone()
        index = list(self.positions)
        values = self.values.to(out.dtype)
        if self.head is None:
            out[:, index] = values
        else:
            out[:, index, self.head] = values
        return out


Edit = Direction | Features | Patch


@dataclass(frozen=True)
class Intervention:
    """An edit at one hook site, on the rows `rows` of each batch (None: all) and, where
    `token_mask` (`[batch, pos]`) is given, only at the tokens it marks."""

    site: str
    edit: Edit
    rows: slice | None = None
    token_mask: torch.Tensor | None = field(default=None, compare=False)

    @classmethod
    def at(cls, layer: int, edit: Edit, site: str = "resid_post", **where: Any) -> Intervention:
        """At a layer's residual stream (or another site of `activations.SITES`)."""
        return cls(activations.hook_name(layer, site), edit, **where)

    def apply(self, activation: torch.Tensor) -> torch.Tensor:
        target = activation if self.rows is None else activation[self.rows]
        edited = self.edit.edit(target)
        if self.token_mask is not None:
            mask = self.token_mask.to(activation.device, torch.bool)
            edited = torch.where(mask[..., None], edited, target)
        if self.rows is None:
            return edited
        out = activation.clone()
        out[self.rows] = edited
        return out


class Hookable(Protocol):
    """A model with forward hooks by hook name: a `LoadedModel`, a TransformerLens bridge,
    or any model `saefeatures.hooked` wraps."""

    def hooks(
        self, fwd_hooks: list[tuple[str, Callable[..., Any]]]
    ) -> AbstractContextManager[None]: ...


@contextmanager
def applied(model: Hookable, interventions: Sequence[Intervention]) -> Iterator[None]:
    """Every forward of the model inside the block runs with the interventions, each
    site's in the order given."""
    by_site: dict[str, list[Intervention]] = {}
    for intervention in interventions:
        by_site.setdefault(intervention.site, []).append(intervention)

    def at_site(chosen: list[Intervention]):
        def hook(activation: torch.Tensor, hook: Any = None) -> torch.Tensor:
            for intervention in chosen:
                activation = intervention.apply(activation)
            return activation

        return hook

    with model.hooks([(site, at_site(chosen)) for site, chosen in by_site.items()]):
        yield


def per_row(layer: int, edits: Sequence[Edit | None]) -> list[Intervention]:
    """Row i of every batch edited at the layer's residual stream by `edits[i]` (None: left
    as it is): several steering conditions in one batch."""
    return [
        Intervention.at(layer, edit, rows=slice(i, i + 1))
        for i, edit in enumerate(edits)
        if edit is not None
    ]


@torch.no_grad()
def mean_residual_norm(model: LoadedModel, texts: list[str], layers: list[int]) -> dict[int, float]:
    """Mean L2 norm of the residual over real tokens, per layer: the unit of a scale.

    The first token is left out: its norm is an outlier in most models.
    """
    batch = model.tokenizer(texts, return_tensors="pt", padding=True)
    batch = {key: value.to(model.device) for key, value in batch.items()}
    captured = activations.harvest(model, batch, layers)
    mask = batch["attention_mask"]
    return {layer: float(real_token_norms(acts, mask).mean()) for layer, acts in captured.items()}


def real_token_norms(residual: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The L2 norms of each row's real tokens but its first (the tokens a scale's unit is
    measured on), flattened."""
    mask = attention_mask.to(residual.device).bool().clone()
    first = mask.float().argmax(dim=1)  # first real token of each row, for either padding side
    mask[torch.arange(len(mask)), first] = False
    return residual.float().norm(dim=-1)[mask]
