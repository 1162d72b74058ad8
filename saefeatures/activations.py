"""Harvesting activations: one forward pass feeds every requested layer.

The forward stops right after the last requested layer (the hook raises a
private exception), so a stage that needs layers 0..10 of a 30-layer model
never pays for layers 11..29 or for the unembedding.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def select_layers(text: str, n_layers: int, model_name: str) -> list[int]:
    """Parse `--layers`: `all`, or comma-separated indices, each checked against the model."""
    if text.strip() == "all":
        return list(range(n_layers))
    try:
        layers = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise SaefeaturesError(
            f"cannot read layers {text!r}: give comma-separated numbers like 4,8,10 or 'all'"
        ) from None
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad or not layers:
        raise SaefeaturesError(
            f"layer {bad[0] if bad else text!r} is out of range for {model_name}: "
            f"valid layers are 0..{n_layers - 1}"
        )
    return layers


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
