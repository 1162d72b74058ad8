"""SAELens' TopK training SAE with a step that touches only the chosen latents per token.

SAELens' `TopKTrainingSAE` decodes with a dense `[tokens, d_sae] @ [d_sae, d_in]` product
and back-propagates densely, although only k of d_sae latents are non-zero per token
(and only k_aux dead ones in the AuxK loss): with d_sae 9,216 and k 32, five of its six
large matrix products multiply zeros. This subclass keeps SAELens' losses, trainer,
schedules, checkpoints and saved format, and computes the same values and gradients
(tested against the parent class) with

- the encoder's pre-activations computed densely once, without a graph (every one is
  needed to pick the top k), and gradients taken only at the chosen latents (sparse CSR
  products);
- the decoder as a weighted sum of the chosen decoder rows per token (`embedding_bag`),
  for the reconstruction and for the AuxK loss alike.

The dense `feature_acts` that SAELens' trainer counts firings on are still returned.
`encode_with_hidden_pre` remembers what it computed, so that `decode` of the very
`feature_acts` it returned, and the AuxK loss of the very `hidden_pre`, take the sparse
path; any other input gets the parent's dense computation.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from sae_lens.saes.topk_sae import TopKTrainingSAE


@contextmanager
def _quiet_csr() -> Iterator[None]:
    """Without torch's notice that CSR tensors are in beta: they only feed two products."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


def _rows_by_latent(indices: torch.Tensor, values: torch.Tensor, d_sae: int) -> torch.Tensor:
    """`[d_sae, tokens]` CSR matrix with `values[t, j]` at `(indices[t, j], t)`."""
    tokens, k = indices.shape
    columns = torch.arange(tokens, device=indices.device).repeat_interleave(k)
    coo = torch.sparse_coo_tensor(
        torch.stack([indices.flatten(), columns]),
        values.flatten(),
        (d_sae, tokens),
        check_invariants=False,
    )
    with _quiet_csr():
        return coo.coalesce().to_sparse_csr()


def _rows_by_token(indices: torch.Tensor, values: torch.Tensor, d_sae: int) -> torch.Tensor:
    """`[tokens, d_sae]` CSR matrix with `values[t, j]` at `(t, indices[t, j])`."""
    tokens, k = indices.shape
    order = indices.argsort(dim=-1)  # CSR wants each row's columns sorted
    crow = torch.arange(0, tokens * k + 1, k, device=indices.device)
    with _quiet_csr():
        return torch.sparse_csr_tensor(
            crow,
            indices.gather(-1, order).flatten(),
            values.gather(-1, order).flatten(),
            (tokens, d_sae),
            check_invariants=False,
        )


class _Selected(torch.autograd.Function):
    """`pre[t, indices[t, j]]` of the encoder's pre-activations `pre = sae_in @ W_enc + b_enc`
    (given, computed without a graph), differentiable in sae_in, W_enc and b_enc through
    the selected entries only."""

    @staticmethod
    def forward(
        ctx: Any,
        sae_in: torch.Tensor,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        pre: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(sae_in, W_enc, indices)
        return pre.gather(-1, indices)

    @staticmethod
    def backward(ctx: Any, grad_selected: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        sae_in, W_enc, indices = ctx.saved_tensors
        grad = grad_selected.float()
        d_sae = W_enc.shape[1]
        grad_in = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:
            by_token = _rows_by_token(indices, grad, d_sae)
            grad_in = torch.sparse.mm(by_token, W_enc.float().T.contiguous()).to(sae_in.dtype)
        if ctx.needs_input_grad[1]:
            by_latent = _rows_by_latent(indices, grad, d_sae)
            grad_W = torch.sparse.mm(by_latent, sae_in.float()).T.contiguous().to(W_enc.dtype)
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(d_sae, device=grad.device, dtype=grad.dtype)
            grad_b = grad_b.index_add_(0, indices.flatten(), grad.flatten()).to(W_enc.dtype)
        return grad_in, grad_W, grad_b, None, None


def sparse_decode(indices: torch.Tensor, values: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """`sum_j values[t, j] * W_dec[indices[t, j]]` per token: the dense product's value
    (and gradients) for activations that are zero outside `indices`."""
    return torch.nn.functional.embedding_bag(
        indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum"
    )


@dataclass
class _Encoded:
    """What one `encode_with_hidden_pre` computed, for the `decode` and AuxK loss after it."""

    feature_acts: torch.Tensor
    hidden_pre: torch.Tensor
    sae_in: torch.Tensor
    pre: torch.Tensor  # unscaled pre-activations, no graph
    indices: torch.Tensor
    active: torch.Tensor  # differentiable values of the chosen latents


class SparseTopKTrainingSAE(TopKTrainingSAE):
    """`TopKTrainingSAE` whose training step is sparse in the latents (see the module)."""

    def __init__(self, cfg: Any, use_error_term: bool = False) -> None:
        super().__init__(cfg, use_error_term)
        self._encoded: _Encoded | None = None

    def _decoder_norms(self) -> torch.Tensor | None:
        """Per-latent decoder norms where the config rescales by them (SAELens' default)."""
        return self.W_dec.norm(dim=-1) if self.cfg.rescale_acts_by_decoder_norm else None

    def _selected(self, sae_in: torch.Tensor, pre: torch.Tensor, indices: torch.Tensor):
        """The (rescaled) pre-activations at `indices`, with their gradients."""
        chosen = _Selected.apply(sae_in, self.W_enc, self.b_enc, pre, indices)
        norms = self._decoder_norms()
        return chosen if norms is None else chosen * norms[indices]

    def _sparse_product(self, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """SAELens' `act_times_W_dec` for activations that are zero outside `indices`."""
        norms = self._decoder_norms()
        if norms is not None:
            values = values / norms[indices]
        return sparse_decode(indices, values, self.W_dec)

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sae_in = self.process_sae_in(x)
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, sae_in, self.W_enc)
            norms = self._decoder_norms()
            hidden_pre = self.hook_sae_acts_pre(pre if norms is None else pre * norms)
            indices = hidden_pre.topk(self.cfg.k, dim=-1, sorted=False).indices
        active = self._selected(sae_in, pre, indices).relu()
        dense = torch.zeros_like(hidden_pre).scatter_(-1, indices, active.detach())
        feature_acts = self.hook_sae_acts_post(dense)  # for firing counts: no graph
        self._encoded = _Encoded(feature_acts, hidden_pre, sae_in, pre, indices, active)
        return feature_acts, hidden_pre

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        encoded = self._encoded
        if encoded is None or encoded.feature_acts is not feature_acts:
            return super().decode(feature_acts)
        product = self._sparse_product(encoded.indices, encoded.active)
        sae_out_pre = self.hook_sae_recons(product + self.b_dec)
        sae_out_pre = self.run_time_activation_norm_fn_out(sae_out_pre)
        return self.reshape_fn_out(sae_out_pre, self.d_head)

    def calculate_topk_aux_loss(
        self,
        sae_in: torch.Tensor,
        sae_out: torch.Tensor,
        hidden_pre: torch.Tensor,
        dead_neuron_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """SAELens' AuxK loss, its dead latents decoded sparsely."""
        encoded, self._encoded = self._encoded, None  # the step's last use: free its memory
        if (
            encoded is None
            or encoded.hidden_pre is not hidden_pre
            or self.cfg.normalize_activations in ("constant_norm_rescale", "layer_norm")
        ):
            return super().calculate_topk_aux_loss(sae_in, sae_out, hidden_pre, dead_neuron_mask)
        if dead_neuron_mask is None or (num_dead := int(dead_neuron_mask.sum())) == 0:
            return sae_out.new_tensor(0.0)
        residual = (sae_in - sae_out).detach()
        k_aux = sae_in.shape[-1] // 2  # as SAELens (Gao et al., appendix B.1)
        scale = min(num_dead / k_aux, 1.0)
        k_aux = min(k_aux, num_dead)
        candidates = torch.where(dead_neuron_mask[None], hidden_pre, -torch.inf)
        indices = candidates.topk(k_aux, dim=-1, sorted=False).indices
        values = self._selected(encoded.sae_in, encoded.pre, indices)
        recons = self.reshape_fn_out(self._sparse_product(indices, values), self.d_head)
        auxk_loss = (recons - residual).pow(2).sum(dim=-1).mean()
        return self.cfg.aux_loss_coefficient * scale * auxk_loss
