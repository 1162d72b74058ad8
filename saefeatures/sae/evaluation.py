"""Evaluating SAEs on held-out text: reconstruction and downstream metrics (see `metrics`).

Per batch of held-out rows, one clean forward gives the logits and the
activations at every evaluated hook. For each SAE, two more forwards splice
in, through the bridge's hook points (`LoadedModel.hooks`),
first the SAE's reconstruction and then zeros, at the evaluated positions.
Separator/BOS positions are left clean when the SAE was trained without them
(`exclude_special_tokens`), since the SAE never saw them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from saefeatures.models import LoadedModel
from saefeatures.progress import bar as progress_bar
from saefeatures.sae.metrics import DownstreamStats, ReconstructionStats


@dataclass(frozen=True)
class Target:
    key: str
    sae: Any  # sae_lens.SAE (inference)
    hook_name: str


def _capture(store: dict[str, torch.Tensor], name: str):
    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        store[name] = activation.detach()
        return activation

    return hook


def _replace(tensor: torch.Tensor):
    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        return tensor

    return hook


def forward_logits(model: LoadedModel, ids: torch.Tensor, hooks: list[tuple[str, Any]]) -> Any:
    with model.hooks(hooks):
        return model.bridge(ids, attention_mask=torch.ones_like(ids))


@torch.no_grad()
def evaluate_saes(
    model: LoadedModel,
    targets: list[Target],
    rows: np.ndarray,
    special: tuple[int, ...],
    exclude_special: bool,
    batch_size: int,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Metrics per target key on the token `rows` `[n, T]`."""
    recon = {t.key: ReconstructionStats(int(t.sae.cfg.d_in), int(t.sae.cfg.d_sae)) for t in targets}
    downstream = {t.key: DownstreamStats() for t in targets}
    hook_names = sorted({t.hook_name for t in targets})
    excluded = torch.tensor(special if exclude_special else (), dtype=torch.int64)
    with progress_bar("evaluating SAEs", int(rows.size), "tokens", shown=progress) as bar:
        for begin in range(0, len(rows), batch_size):
            chunk = torch.from_numpy(rows[begin : begin + batch_size])
            ids = chunk.to(model.device)
            mask = ~torch.isin(chunk, excluded).to(model.device)
            captured: dict[str, torch.Tensor] = {}
            clean = forward_logits(model, ids, [(n, _capture(captured, n)) for n in hook_names])
            for target in targets:
                act = captured[target.hook_name]
                x = act[mask].float()
                latents = target.sae.encode(x)
                x_hat = target.sae.decode(latents)
                n = x.shape[0]
                recon[target.key].update(x.reshape(n, -1), x_hat.reshape(n, -1), latents)
                spliced_act = act.clone()
                spliced_act[mask] = x_hat.to(act.dtype)
                ablated_act = act.clone()
                ablated_act[mask] = 0
                spliced = forward_logits(model, ids, [(target.hook_name, _replace(spliced_act))])
                ablated = forward_logits(model, ids, [(target.hook_name, _replace(ablated_act))])
                downstream[target.key].update(ids, clean, spliced, ablated)
            bar.advance(int(chunk.numel()))
    return {t.key: {**recon[t.key].result(), **downstream[t.key].result()} for t in targets}
