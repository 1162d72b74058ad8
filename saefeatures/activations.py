"""Harvesting activations: one forward pass feeds every requested layer; the logit lens.

The forward stops right after the last requested layer (the hook raises a
private exception), so a stage that needs layers 0..10 of a 30-layer model
never pays for layers 11..29 or for the unembedding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel

SITES = {
    "resid_pre": "hook_resid_pre",
    "resid_post": "hook_resid_post",
    "mlp_out": "hook_mlp_out",
    "attn_out": "hook_attn_out",
}


def hook_name(layer: int, site: str = "resid_post") -> str:
    if site not in SITES:
        raise SaefeaturesError(f"unknown hook site {site!r}; use one of {', '.join(SITES)}")
    return f"blocks.{layer}.{SITES[site]}"


def select_layers(layers: Sequence[int] | None, n_layers: int, model_name: str) -> list[int]:
    """The requested layers (None: every one), sorted, each checked against the model."""
    if layers is None:
        return list(range(n_layers))
    chosen = sorted(set(layers))
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad or not chosen:
        raise SaefeaturesError(
            f"layer {bad[0] if bad else 'list'} is out of range for {model_name}: "
            f"valid layers are 0..{n_layers - 1}"
        )
    return chosen


class _StopForward(Exception):
    """Raised by the last capture hook: nothing after it is needed."""


@torch.no_grad()
def harvest(
    model: LoadedModel,
    batch: dict[str, torch.Tensor],
    layers: Iterable[int],
    site: str = "resid_post",
) -> dict[int, torch.Tensor]:
    """Activations `[batch, pos, d_model]` at each layer's hook, from one partial forward."""
    wanted = sorted({model.check_layer(layer) for layer in layers})
    if not wanted:
        raise SaefeaturesError("no layers requested; pass at least one layer")
    captured: dict[int, torch.Tensor] = {}

    # One closure per layer: the bridge reports a hook by its canonical name
    # (e.g. blocks.3.hook_out), not by the alias it was registered under.
    def capture_at(layer: int):
        def capture(activation: torch.Tensor, hook) -> torch.Tensor:
            captured[layer] = activation.detach()
            if layer == wanted[-1]:
                raise _StopForward
            return activation

        return capture

    hooks = [(hook_name(layer, site), capture_at(layer)) for layer in wanted]
    try:
        with model.hooks(hooks):
            model.bridge(batch["input_ids"], attention_mask=batch["attention_mask"])
    except _StopForward:
        pass
    return captured


@torch.no_grad()
def logit_lens(
    model: LoadedModel, vectors: np.ndarray, top: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top promoted and suppressed token ids (and logits) of each direction.

    The direction goes through the final norm and the head (`LoadedModel.head`); the norm
    makes the result independent of the vector's length.
    """
    hf = model.hf_model
    # A copy: vectors read from the store are read-only views, which torch warns about.
    directions = torch.from_numpy(np.array(vectors, dtype=np.float32)).to(hf.dtype)
    logits = model.head(hf.base_model.norm(directions)).float()
    promoted = logits.topk(top, dim=-1)
    suppressed = (-logits).topk(top, dim=-1)
    return (
        promoted.indices.numpy(),
        promoted.values.numpy(),
        suppressed.indices.numpy(),
        -suppressed.values.numpy(),
    )
