"""What a circuit is made of: nodes at SAE layers, and one pair's effects on them.

A node is one SAE latent, or one SAE's error term (the residual minus its
reconstruction, kept as a node of its own as in Marks et al. 2024), at one
residual-stream layer. Effects are changes in a pair's score when a node takes its
clean value in the corrupted run; they live at the pair's patched positions (those
after the shared prefix, `sweeps.patch_positions`), counted here from the end of the
prompt so that positions of pairs of different lengths line up at the scored token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True, order=True)
class Node:
    """One SAE latent (`feature`) or, with `feature` None, the SAE's error node."""

    layer: int
    feature: int | None

    @property
    def is_error(self) -> bool:
        return self.feature is None


@dataclass(frozen=True)
class CircuitSae:
    """A residual-stream SAE the circuit reads: its layer, store id, hook and module."""

    layer: int
    sae_id: str
    hook: str
    sae: Any  # a SAELens SAE


@dataclass
class LayerEffects:
    """One pair's effects at one SAE layer, per patched position."""

    features: torch.Tensor  # [positions, d_sae]
    error: torch.Tensor  # [positions]


@dataclass
class PairEffects:
    """One pair's node effects at every SAE layer; `positions` counts from the prompt's
    end (-1: the scored last token), one per row of each layer's tensors."""

    positions: list[int]
    layers: dict[int, LayerEffects]

    def summed(self) -> dict[Node, float]:
        """Each node's effect summed over positions, for nodes with a nonzero effect."""
        out: dict[Node, float] = {}
        for layer, effects in self.layers.items():
            totals = effects.features.float().sum(0)
            for feature in torch.nonzero(totals).flatten().tolist():
                out[Node(layer, feature)] = float(totals[feature])
            out[Node(layer, None)] = float(effects.error.float().sum())
        return out
