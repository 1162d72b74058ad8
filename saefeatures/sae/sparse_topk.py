"""SAELens' TopK training SAE with a step that touches only the chosen latents per token.

SAELens' `TopKTrainingSAE` builds the dense `[tokens, d_sae]` pre-activations and
activations, decodes with a dense `[tokens, d_sae] @ [d_sae, d_in]` product and
back-propagates densely, although only k of d_sae latents are non-zero per token (and
only k_aux dead ones in the AuxK loss). This subclass keeps SAELens' losses, trainer,
schedules, checkpoints and saved format, and computes the same values and gradients
(tested against the parent class) with

- the encoder product computed a block of tokens at a time, without a graph, each
  block's top k (and top k_aux dead latents) picked while it is still in cache: the
  dense pre-activations never exist for the whole batch;
- gradients taken only at the chosen latents (sparse CSR products);
- the decoder as a weighted sum of the chosen decoder rows per token (`embedding_bag`),
  for the reconstruction and for the AuxK loss alike;
- `feature_acts` returned to SAELens' trainer as a sparse COO tensor (its firing counts
  accept one), and `hidden_pre` as the pre-activations at the chosen latents.

The step's one dense product, `[tokens, d_in] @ [d_in, d_sae]`, is the bound no TopK
step can go below; under SAELens' bfloat16 autocast it runs in bfloat16.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput
from sae_lens.saes.topk_sae import TopKTrainingSAE

BLOCK_TOKENS = 256  # tokens scored per encoder block: a [256, d_sae] block stays in cache


@contextmanager
def _quiet_csr() -> Iterator[None]:
    """Without torch's notice that CSR tensors are in beta: they only feed two products."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield


def _rows_by_latent(indices: torch.Tensor, values: torch.Tensor, d_sae: int) -> torch.Tensor:
    """`[d_sae, tokens]` CSR matrix with `values[t, j]` at `(indices[t, j], t)`; the pairs
    are distinct, so one stable sort by latent orders them (no coalescing)."""
    tokens, k = indices.shape
    flat = indices.flatten()
    order = flat.argsort(stable=True)  # by latent, then by token
    crow = torch.zeros(d_sae + 1, dtype=torch.int64, device=flat.device)
    crow[1:] = torch.bincount(flat, minlength=d_sae).cumsum(0)
    with _quiet_csr():
        return torch.sparse_csr_tensor(
            crow, order // k, values.flatten()[order], (d_sae, tokens), check_invariants=False
        )


class _Selected(torch.autograd.Function):
    """The encoder's pre-activations `(x @ W_enc + bias)[t, indices[t, j]]`, given as
    `chosen` (computed without a graph), differentiable in W_enc and the bias through the
    selected entries only. `x` is a constant: SAELens' input `x - b_dec` enters through
    the bias `b_enc - b_dec @ W_enc`, so no per-token input gradient is needed."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        W_enc: torch.Tensor,
        bias: torch.Tensor,
        chosen: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, indices)
        ctx.d_sae = W_enc.shape[1]
        return chosen.clone()

    @staticmethod
    def backward(ctx: Any, grad_selected: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, indices = ctx.saved_tensors
        grad = grad_selected.float()
        by_latent = _rows_by_latent(indices, grad, ctx.d_sae)
        grad_W = torch.sparse.mm(by_latent, x.float()).T.contiguous()
        grad_b = torch.zeros(ctx.d_sae, device=grad.device, dtype=grad.dtype)
        grad_b.index_add_(0, indices.flatten(), grad.flatten())
        return None, grad_W, grad_b, None, None


def sparse_decode(indices: torch.Tensor, values: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """`sum_j values[t, j] * W_dec[indices[t, j]]` per token: the dense product's value
    (and gradients) for activations that are zero outside `indices`."""
    return torch.nn.functional.embedding_bag(
        indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum"
    )


@dataclass
class Choice:
    """Latents picked per token and their (unscaled) pre-activations; no graph."""

    indices: torch.Tensor  # [tokens, n]
    pre: torch.Tensor  # [tokens, n]


def _top(scores: torch.Tensor, pre: torch.Tensor, n: int, columns: torch.Tensor | None) -> Choice:
    """The `n` highest `scores` per row (of `columns` only, if given), with `pre` there."""
    if columns is not None:
        scores, pre = scores[:, columns], pre[:, columns]
    picked = scores.topk(n, dim=-1, sorted=False).indices
    indices = picked if columns is None else columns[picked]
    return Choice(indices, pre.gather(-1, picked))


def _joined(choices: list[Choice]) -> Choice:
    return Choice(torch.cat([c.indices for c in choices]), torch.cat([c.pre for c in choices]))


def choose_latents(
    sae_in: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    norms: torch.Tensor | None,
    k: int,
    dead: tuple[torch.Tensor, int] | None = None,
) -> tuple[Choice, Choice | None]:
    """Each token's top k latents by (decoder-norm scaled) pre-activation and, given the
    dead latents' columns and k_aux, its top k_aux dead ones, a block of tokens at a time."""
    live: list[Choice] = []
    dead_choices: list[Choice] = []
    with torch.no_grad():
        for block in sae_in.split(BLOCK_TOKENS):
            pre = torch.addmm(b_enc, block, W_enc).float()
            scores = pre if norms is None else pre * norms
            live.append(_top(scores, pre, k, None))
            if dead is not None:
                dead_choices.append(_top(scores, pre, dead[1], dead[0]))
    return _joined(live), (_joined(dead_choices) if dead is not None else None)


def _sparse_rows(indices: torch.Tensor, values: torch.Tensor, d_sae: int) -> torch.Tensor:
    """`[tokens, d_sae]` coalesced COO tensor with `values[t, j]` at `(t, indices[t, j])`."""
    indices, order = indices.sort(dim=-1)
    rows = torch.arange(indices.shape[0], device=indices.device).repeat_interleave(indices.shape[1])
    return torch.sparse_coo_tensor(
        torch.stack([rows, indices.flatten()]),
        values.gather(-1, order).flatten(),
        (indices.shape[0], d_sae),
        is_coalesced=True,
        check_invariants=False,
    )


class SparseTopKTrainingSAE(TopKTrainingSAE):
    """`TopKTrainingSAE` whose training step is sparse in the latents (see the module)."""

    def _decoder_norms(self) -> torch.Tensor | None:
        """Per-latent decoder norms where the config rescales by them."""
        return self.W_dec.norm(dim=-1) if self.cfg.rescale_acts_by_decoder_norm else None

    def _encoder_bias(self) -> torch.Tensor:
        """`b_enc`, carrying b_dec's gradient: the step takes SAELens' input `x - b_dec` as a
        constant, and `(x - b_dec) @ W_enc` depends on b_dec as `-b_dec @ W_enc` does."""
        shift = self.b_dec * self.cfg.apply_b_dec_to_input
        return self.b_enc - (shift - shift.detach()) @ self.W_enc.detach()

    def _values(self, sae_in: torch.Tensor, choice: Choice, norms: torch.Tensor | None):
        """The (rescaled) pre-activations of `choice`, with their gradients."""
        bias = self._encoder_bias()
        chosen = _Selected.apply(sae_in, self.W_enc, bias, choice.pre, choice.indices)
        return chosen if norms is None else chosen * norms[choice.indices]

    def _product(self, choice: Choice, values: torch.Tensor, norms: torch.Tensor | None):
        """SAELens' `act_times_W_dec` for activations that are zero outside the choice."""
        if norms is not None:
            values = values / norms[choice.indices]
        return sparse_decode(choice.indices, values, self.W_dec)

    def _dense_only(self, sae_in: torch.Tensor) -> bool:
        """Cases the sparse step leaves to SAELens: per-head inputs, in-SAE normalisation."""
        return sae_in.dim() != 2 or self.cfg.normalize_activations in (
            "constant_norm_rescale",
            "layer_norm",
        )

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        sae_in = self.process_sae_in(step_input.sae_in).detach()
        if self._dense_only(sae_in):
            return super().training_forward_pass(step_input)
        norms = self._decoder_norms()
        dead = self._dead_columns(step_input.dead_neuron_mask, sae_in.shape[-1])
        live, dead_choice = choose_latents(
            sae_in,
            self.W_enc,
            self.b_enc,
            None if norms is None else norms.detach(),
            self.cfg.k,
            None if dead is None else dead[:2],
        )
        active = self._values(sae_in, live, norms).relu()
        sae_out = self._product(live, active, norms) + self.b_dec
        sae_out = self.run_time_activation_norm_fn_out(self.hook_sae_recons(sae_out))
        mse_loss = self.mse_loss_fn(sae_out, step_input.sae_in).sum(dim=-1).mean()
        aux = self._aux_loss(sae_in, step_input.sae_in, sae_out, dead_choice, norms, dead)
        d_sae = self.cfg.d_sae
        scaled = live.pre if norms is None else live.pre * norms.detach()[live.indices]
        return TrainStepOutput(
            sae_in=step_input.sae_in,
            sae_out=sae_out,
            feature_acts=_sparse_rows(live.indices, active.detach(), d_sae),
            hidden_pre=_sparse_rows(live.indices, scaled, d_sae),
            loss=mse_loss + aux,
            losses={"mse_loss": mse_loss, "auxiliary_reconstruction_loss": aux},
        )

    @staticmethod
    def _dead_columns(
        mask: torch.Tensor | None, d_in: int
    ) -> tuple[torch.Tensor, int, float] | None:
        """The dead latents' columns, k_aux and the loss scale, as SAELens' AuxK sets them
        (half of d_in, after Gao et al., appendix B.1); None with no dead latent."""
        if mask is None or (num_dead := int(mask.sum())) == 0:
            return None
        k_aux = d_in // 2
        return mask.nonzero().flatten(), min(k_aux, num_dead), min(num_dead / k_aux, 1.0)

    def _aux_loss(
        self,
        sae_in: torch.Tensor,
        target: torch.Tensor,
        sae_out: torch.Tensor,
        choice: Choice | None,
        norms: torch.Tensor | None,
        dead: tuple[torch.Tensor, int, float] | None,
    ) -> torch.Tensor:
        """SAELens' AuxK loss: the top dead latents reconstruct the live ones' residual."""
        if choice is None or dead is None:
            return sae_out.new_tensor(0.0)
        residual = (target - sae_out).detach()
        recons = self._product(choice, self._values(sae_in, choice, norms), norms)
        auxk_loss = (recons - residual).pow(2).sum(dim=-1).mean()
        return self.cfg.aux_loss_coefficient * dead[2] * auxk_loss
