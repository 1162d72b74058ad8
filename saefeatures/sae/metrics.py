"""SAE evaluation metrics, written here and tested against direct computations.

Reconstruction (over the evaluated token positions, streamed batch by batch):

- `l0`: mean number of active latents per token.
- `explained_variance` = 1 - FVU, where FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2
  (the mean is per dimension, over all evaluated tokens).
- `mse`: mean over tokens and dimensions of (x - x_hat)^2.
- `cosine`: mean over tokens of cos(x, x_hat).
- `dead_fraction`: share of latents never active on the evaluated tokens.
- `dense_fraction`: share of latents active on more than 10 % of them.

Downstream (next-token prediction on the same text, all positions):

- `ce_clean`, `ce_sae` (the layer's activations replaced by the SAE's
  reconstruction), `ce_ablate` (replaced by zeros): mean cross-entropy in nats.
- `ce_loss_recovered` = (ce_ablate - ce_sae) / (ce_ablate - ce_clean).
- `kl_sae`, `kl_ablate`: mean KL(clean || spliced) of the next-token distributions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

DENSE_THRESHOLD = 0.1


@dataclass
class ReconstructionStats:
    """Running sums for the reconstruction metrics (float64, so the order of batches is moot)."""

    d_in: int
    d_sae: int
    n_tokens: int = 0
    sum_x: torch.Tensor = field(init=False)
    sum_x2: torch.Tensor = field(init=False)
    squared_error: float = 0.0
    active: float = 0.0
    cosine: float = 0.0
    fired: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.sum_x = torch.zeros(self.d_in, dtype=torch.float64)
        self.sum_x2 = torch.zeros(self.d_in, dtype=torch.float64)
        self.fired = torch.zeros(self.d_sae, dtype=torch.int64)

    @torch.no_grad()
    def update(self, x: torch.Tensor, x_hat: torch.Tensor, latents: torch.Tensor) -> None:
        """Add tokens: `x`, `x_hat` are `[n, d_in]`, `latents` `[n, d_sae]`."""
        x64, x_hat64 = x.double(), x_hat.double()
        self.n_tokens += x.shape[0]
        self.sum_x += x64.sum(dim=0)
        self.sum_x2 += (x64**2).sum(dim=0)
        self.squared_error += float(((x64 - x_hat64) ** 2).sum())
        on = latents != 0
        self.active += float(on.sum())
        self.fired += on.sum(dim=0)
        self.cosine += float(torch.nn.functional.cosine_similarity(x64, x_hat64, dim=-1).sum())

    def result(self) -> dict[str, float]:
        n = self.n_tokens
        total_variance = float((self.sum_x2 - self.sum_x**2 / n).sum())
        return {
            "l0": self.active / n,
            "explained_variance": 1.0 - self.squared_error / total_variance,
            "mse": self.squared_error / (n * self.d_in),
            "cosine": self.cosine / n,
            "dead_fraction": float((self.fired == 0).double().mean()),
            "dense_fraction": float((self.fired > DENSE_THRESHOLD * n).double().mean()),
            "eval_tokens": float(n),
        }


def next_token_logprobs(logits: torch.Tensor) -> torch.Tensor:
    """`[b, T-1, vocab]` log-probabilities of the next token at every position but the last."""
    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def next_token_ce(logprobs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy `[b, T-1]` of predicting tokens[:, 1:]."""
    return -logprobs.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def kl_to_clean(
    clean: torch.Tensor, clean_probs: torch.Tensor, other: torch.Tensor
) -> torch.Tensor:
    """Per-position KL(clean || other) `[b, T-1]` from the runs' next-token log-probs (and
    the clean run's probabilities, computed once for both comparisons)."""
    return (clean_probs * (clean - other)).sum(dim=-1)


@dataclass
class DownstreamStats:
    """Running sums of cross-entropy and KL for clean, spliced and ablated forwards."""

    positions: int = 0
    ce_clean: float = 0.0
    ce_sae: float = 0.0
    ce_ablate: float = 0.0
    kl_sae: float = 0.0
    kl_ablate: float = 0.0

    @torch.no_grad()
    def update(
        self,
        tokens: torch.Tensor,
        clean: torch.Tensor,
        spliced: torch.Tensor,
        ablated: torch.Tensor,
    ) -> None:
        """Each run's log-softmax is taken once: over Gemma's 262k-token vocabulary it is
        most of this update's cost."""
        self.positions += tokens.shape[0] * (tokens.shape[1] - 1)
        clean_lp, sae_lp, ablate_lp = (next_token_logprobs(x) for x in (clean, spliced, ablated))
        clean_probs = clean_lp.exp()

        def total(values: torch.Tensor) -> float:
            return float(values.double().sum())

        self.ce_clean += total(next_token_ce(clean_lp, tokens))
        self.ce_sae += total(next_token_ce(sae_lp, tokens))
        self.ce_ablate += total(next_token_ce(ablate_lp, tokens))
        self.kl_sae += total(kl_to_clean(clean_lp, clean_probs, sae_lp))
        self.kl_ablate += total(kl_to_clean(clean_lp, clean_probs, ablate_lp))

    def result(self) -> dict[str, float]:
        n = self.positions
        clean, sae, ablate = self.ce_clean / n, self.ce_sae / n, self.ce_ablate / n
        return {
            "ce_clean": clean,
            "ce_sae": sae,
            "ce_ablate": ablate,
            "ce_loss_recovered": ce_loss_recovered(clean, sae, ablate),
            "kl_sae": self.kl_sae / n,
            "kl_ablate": self.kl_ablate / n,
        }


def ce_loss_recovered(clean: float, sae: float, ablate: float) -> float:
    """(CE_ablate - CE_sae) / (CE_ablate - CE_clean): 1 is perfect, 0 is no better than zeros."""
    gap = ablate - clean
    return (ablate - sae) / gap if gap != 0 else float("nan")


HEADLINE = ("l0", "explained_variance", "dead_fraction", "ce_loss_recovered", "kl_sae")
