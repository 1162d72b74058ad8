"""Passages through the model and its SAEs once: sparse activations, passage summaries, stats.

One partial forward per batch (stopped at the SAE's layer) feeds every SAE at that
layer. Special tokens (BOS, padding) are left out everywhere: their residual norms are
outliers that would dominate every maximum. Passage summaries (mean and max of each
feature, mean residual) use the tokens from `offset` on, the same tokens the emotion
vectors were pooled from; sparse rows and feature statistics use every real token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saefeatures import activations, progress
from saefeatures.models import LoadedModel


@dataclass(frozen=True)
class Source:
    """Token sequences to scan, their passage ids, and where pooling starts."""

    ids: np.ndarray
    sequences: list[list[int]]
    offset: int


@dataclass
class FeatureScan:
    """What one SAE saw on one list of sequences."""

    passage_mean: np.ndarray  # [n_sequences, d_sae] mean activation over pooled tokens
    passage_max: np.ndarray  # [n_sequences, d_sae] max activation over pooled tokens
    sequence: np.ndarray  # sparse rows: index into the sequences ...
    position: np.ndarray  # ... token position ...
    feature: np.ndarray  # ... feature ...
    value: np.ndarray  # ... and its (non-zero) activation
    active: np.ndarray  # [d_sae] tokens on which each feature fired
    total: np.ndarray  # [d_sae] summed activation
    peak: np.ndarray  # [d_sae] maximum activation


@dataclass
class Scan:
    residual_mean: np.ndarray  # [n_sequences, d_model] mean residual over pooled tokens
    pooled: np.ndarray  # [n_sequences] bool: has at least one token at or after offset
    n_tokens: int  # real tokens scanned (the denominator of density)
    per_sae: list[FeatureScan]


def _batch(sequences: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids and mask: real tokens keep their positions whatever the batch."""
    width = max(len(ids) for ids in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@torch.no_grad()
def scan(
    model: LoadedModel,
    saes: list,
    layer: int,
    sequences: list[list[int]],
    offset: int,
    special_ids: list[int],
    batch_size: int = 8,
) -> Scan:
    """Encode every sequence's residual at `layer` with each SAE (SAELens `SAE.encode`)."""
    n = len(sequences)
    d_model = model.d_model
    residual_mean = np.zeros((n, d_model), dtype=np.float32)
    pooled = np.zeros(n, dtype=bool)
    specials = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
    sums = [_Accumulator(n, int(sae.cfg.d_sae)) for sae in saes]
    order = sorted(range(n), key=lambda i: len(sequences[i]))
    n_tokens = 0
    pad_id = model.tokenizer.pad_token_id or 0
    for start in progress.track(range(0, n, batch_size), "scanning text through the SAEs"):
        chunk = order[start : start + batch_size]
        batch = _batch([sequences[i] for i in chunk], pad_id)
        real = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], specials)
        in_pool = real & (batch["attention_mask"].cumsum(dim=1) - 1 >= offset)
        n_tokens += int(real.sum())
        device_batch = {key: value.to(model.device) for key, value in batch.items()}
        residual = activations.harvest(model, device_batch, [layer])[layer].float().cpu()
        counts = in_pool.sum(dim=1)
        weights = in_pool.float() / counts.clamp(min=1)[:, None]
        residual_mean[chunk] = torch.einsum("bpd,bp->bd", residual, weights).numpy()
        pooled[chunk] = (counts > 0).numpy()
        for sae, accumulator in zip(saes, sums, strict=True):
            acts = sae.encode(residual.to(sae.W_dec.device, sae.W_dec.dtype)).float().cpu()
            accumulator.add(chunk, acts * real[..., None], in_pool, weights)
    return Scan(residual_mean, pooled, n_tokens, [s.result() for s in sums])


class _Accumulator:
    """Collects one SAE's sparse rows and statistics batch by batch."""

    def __init__(self, n: int, d_sae: int) -> None:
        self.passage_mean = np.zeros((n, d_sae), dtype=np.float32)
        self.passage_max = np.zeros((n, d_sae), dtype=np.float32)
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.active = np.zeros(d_sae, dtype=np.int64)
        self.total = np.zeros(d_sae, dtype=np.float64)
        self.peak = np.zeros(d_sae, dtype=np.float32)

    def add(
        self,
        chunk: list[int],
        acts: torch.Tensor,
        in_pool: torch.Tensor,
        weights: torch.Tensor,
    ) -> None:
        """`acts` [b, pos, d_sae] are already zero on padding and special tokens.

        Everything is computed from the non-zero entries (k per token for TopK), not from
        the dense tensor, whose size is d_sae / k times larger.
        """
        rows, positions, features = torch.nonzero(acts, as_tuple=True)
        values = acts[rows, positions, features]
        d_sae = len(self.active)
        cells = rows * d_sae + features  # (passage in batch, feature), flattened
        pooled = in_pool[rows, positions]
        size = len(chunk) * d_sae
        weighted = values * weights[rows, positions]
        mean = torch.zeros(size).index_add_(0, cells, weighted).view(len(chunk), d_sae)
        peak = torch.zeros(size).scatter_reduce_(0, cells[pooled], values[pooled], "amax")
        self.passage_mean[chunk] = mean.numpy()
        self.passage_max[chunk] = peak.view(len(chunk), d_sae).numpy()
        self.parts.append(
            (np.asarray(chunk)[rows.numpy()], positions.numpy(), features.numpy(), values.numpy())
        )
        self.active += np.bincount(features.numpy(), minlength=d_sae)
        self.total += np.bincount(features.numpy(), weights=values.numpy(), minlength=d_sae)
        batch_peak = torch.zeros(d_sae).scatter_reduce_(0, features, values, "amax")
        self.peak = np.maximum(self.peak, batch_peak.numpy())

    def result(self) -> FeatureScan:
        columns = [np.concatenate(part) for part in zip(*self.parts, strict=True)]
        sequence, position, feature, value = columns
        return FeatureScan(
            self.passage_mean,
            self.passage_max,
            sequence.astype(np.int32),
            position.astype(np.int32),
            feature.astype(np.int32),
            value.astype(np.float32),
            self.active,
            self.total,
            self.peak,
        )
