"""Forwards that see the residual at SAE layers as features + error, and may change them.

At each SAE's hook the activation of the edited positions is split into the SAE's
features and its error term (activation = decode(features) + error), handed to an edit,
and written back as decode(features) + error. An edit that returns its input unchanged
reproduces the model (to float precision), so every effect measured through here is the
nodes' and not the SAE's reconstruction loss. Later SAE layers split the stream as the
earlier edits left it: a node downstream of a patched one takes its patched-run value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from saefeatures.circuits.graph import CircuitSae
from saefeatures.interventions import sae_split


@dataclass
class Split:
    """An SAE layer's view of the edited positions of every row of a batch."""

    features: torch.Tensor  # [rows, positions, d_sae]
    error: torch.Tensor  # [rows, positions, d_model]


Edit = Callable[[CircuitSae, Split], Split]
Hook = tuple[str, Callable[..., torch.Tensor]]


def sae_hooks(saes: Sequence[CircuitSae], positions: Sequence[int], edit: Edit) -> list[Hook]:
    """Hooks for `scored_forward(..., hooks=...)`: at every SAE's hook, the activation at
    `positions` (suffix indices) becomes decode(features) + error as `edit` returns them."""
    index = list(positions)

    def hook_for(site: CircuitSae) -> Callable[..., torch.Tensor]:
        def rewrite(activation: torch.Tensor, hook: Any = None) -> torch.Tensor:
            features, error = sae_split(site.sae, activation[:, index])
            edited = edit(site, Split(features, error))
            rebuilt = site.sae.decode(edited.features) + edited.error
            out = activation.clone()
            out[:, index] = rebuilt.to(activation.dtype)
            return out

        return rewrite

    return [(site.hook, hook_for(site)) for site in saes]


def per_copy(values: torch.Tensor, rows_per_copy: int) -> torch.Tensor:
    """[copies, ...] values spread over a batch where each copy owns `rows_per_copy`
    consecutive rows (one per score continuation, `sweeps.rows_of`)."""
    return values.repeat_interleave(rows_per_copy, dim=0)
