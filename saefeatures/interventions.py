"""Interventions on the residual stream: a direction, or SAE features, at chosen positions.

Both kinds edit `blocks.L.hook_resid_post` through the same hook code, so steering and
patching at the two levels differ only in the edit, never in where or how it is applied.

- A direction adds `scale x norm x unit(vector)`, with `norm` the layer's mean residual
  norm, so a scale means the same push at every layer and in every model.
- Features go through an SAE: the residual is encoded, the chosen features are changed
  (`add` adds to their activation, which adds value x decoder row; `clamp` sets it), and
  the result is decoded with the SAE's error term put back. The error term makes an empty
  feature intervention reproduce the clean model (to float precision), so every effect is
  the features' and not the SAE's reconstruction loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from saefeatures import activations
from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel

POSITIONS = ("all", "prompt", "generated")
MODES = ("add", "clamp")


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
    """Change SAE features: `add` value to each feature's activation, or `clamp` it to value."""

    sae: Any
    features: Sequence[int]
    values: Sequence[float]
    mode: str = "add"

    def edit(self, residual: torch.Tensor) -> torch.Tensor:
        x = residual.to(self.sae.W_dec.dtype)
        acts = self.sae.encode(x)
        error = x - self.sae.decode(acts)
        changed = acts.clone()
        index = torch.as_tensor(list(self.features), dtype=torch.long, device=acts.device)
        values = torch.as_tensor(list(self.values), dtype=acts.dtype, device=acts.device)
        if self.mode == "add":
            changed[..., index] += values
        else:
            changed[..., index] = values
        return (self.sae.decode(changed) + error).to(residual.dtype)


@dataclass(frozen=True)
class Intervention:
    """An edit at one layer's residual stream, on all, prompt or generated positions.

    `prompt_length` splits prompt from generated positions; it is the same for every row
    of a batch, so batches are right-padded prompts of one length. `token_mask`
    (`[batch, pos]`, true where to edit) narrows the edit further to chosen tokens of each
    row, such as one phrase of a prompt.
    """

    layer: int
    edit: Direction | Features
    positions: str = "all"
    prompt_length: int = 0
    token_mask: torch.Tensor | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise SaefeaturesError(
                f"unknown positions {self.positions!r}; use one of {', '.join(POSITIONS)}"
            )
        if isinstance(self.edit, Features):
            if self.edit.mode not in MODES:
                raise SaefeaturesError(f"unknown mode {self.edit.mode!r}; use add or clamp")
            if len(self.edit.features) != len(self.edit.values):
                raise SaefeaturesError("give one value per feature")

    def hook(self, residual: torch.Tensor, hook: Any = None) -> torch.Tensor:
        edited = self.edit.edit(residual)
        if self.positions == "all" and self.token_mask is None:
            return edited
        return torch.where(self._chosen(residual)[..., None], edited, residual)

    def _chosen(self, residual: torch.Tensor) -> torch.Tensor:
        """`[batch or 1, pos]`: true at the positions the edit applies to."""
        index = torch.arange(residual.shape[1], device=residual.device)
        chosen = index < self.prompt_length
        if self.positions == "generated":
            chosen = ~chosen
        elif self.positions == "all":
            chosen = torch.ones_like(chosen)
        if self.token_mask is None:
            return chosen[None, :]
        return chosen[None, :] & self.token_mask.to(residual.device, torch.bool)


def check_scale(scale: float) -> float:
    """Scales come from users: NaN or infinity would silently poison every result."""
    if not torch.isfinite(torch.tensor(float(scale))):
        raise SaefeaturesError(f"scale must be a finite number, got {scale}")
    return float(scale)


@contextmanager
def applied(model: LoadedModel, interventions: Sequence[Intervention]) -> Iterator[None]:
    """Every forward of the model inside the block runs with the interventions."""
    hooks = []
    for intervention in interventions:
        model.check_layer(intervention.layer)
        hooks.append((activations.hook_name(intervention.layer), intervention.hook))
    with model.hooks(hooks):
        yield


@contextmanager
def applied_per_row(
    model: LoadedModel, layer: int, edits: Sequence[Direction | Features | None]
) -> Iterator[None]:
    """Every forward inside the block edits row i of its batch at every position with
    `edits[i]` (None: left as it is): several steering conditions in one batch."""
    model.check_layer(layer)

    def edit_rows(residual: torch.Tensor, hook: Any = None) -> torch.Tensor:
        return torch.cat(
            [
                part if edit is None else edit.edit(part)
                for part, edit in zip(residual.split(1), edits, strict=True)
            ]
        )

    with model.hooks([(activations.hook_name(layer), edit_rows)]):
        yield


@torch.no_grad()
def mean_residual_norm(model: LoadedModel, texts: list[str], layers: list[int]) -> dict[int, float]:
    """Mean L2 norm of the residual over real tokens, per layer: the unit of a scale.

    The first token is left out: its norm is an outlier in most models.
    """
    batch = model.tokenizer(texts, return_tensors="pt", padding=True)
    batch = {key: value.to(model.device) for key, value in batch.items()}
    captured = activations.harvest(model, batch, layers)
    mask = batch["attention_mask"].bool().clone()
    first = mask.float().argmax(dim=1)  # first real token of each row, for either padding side
    mask[torch.arange(len(mask)), first] = False
    return {
        layer: float(acts.float().norm(dim=-1)[mask].mean()) for layer, acts in captured.items()
    }
