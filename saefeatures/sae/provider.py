"""Our activation provider: token rows -> one partial forward per batch -> shuffled SAE batches.

The training rows are read in buffers of `buffer_batches * lm_batch_size` rows.
Each language-model batch goes through `activations.harvest` once, which
returns every requested layer and stops the forward after the last of them.
The token positions that are kept (all but the separator/BOS tokens, by
default) of one buffer are shuffled together with a seeded permutation shared
by all layers, and cut into SAE batches of `train_batch_size` tokens.

Everything is a function of the step number: step `s` covers tokens
`[s*B, (s+1)*B)` of that shuffled stream, and which buffer holds them follows
from the token rows alone (no forward needed). So training resumed at step
`s` sees exactly the batches an uninterrupted run would have seen.

Past the end of the rows, epochs repeat the first epoch's buffers in a new
seeded order, each shuffled anew: a buffer's activations are the same in every
epoch, so they can be harvested once. With `keep=True` every buffer stays in
memory after its first harvest (epochs after the first never run the model:
memory is rows x context x d_model x layers in the harvest dtype). With a cache
folder, each buffer's activations are written once per layer as safetensors
shards (`L{layer}/{buffer:06d}.safetensors`); a later run with other SAE
hyperparameters reads them and never loads the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from saefeatures import activations


def _seed(*parts: Any) -> int:
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**63)


class ActivationSource:
    """Activations of the training rows at several layers, buffer by buffer."""

    def __init__(
        self,
        rows: np.ndarray,
        layers: list[int],
        site: str,
        rows_per_buffer: int,
        lm_batch_size: int,
        special: tuple[int, ...],
        exclude_special: bool,
        load_model: Callable[[], Any],
        cache: Path | None = None,
        seed: int = 0,
        keep: bool = False,
    ) -> None:
        self.rows = rows
        self.layers = sorted(layers)
        self.site = site
        self.rows_per_buffer = rows_per_buffer
        self.lm_batch_size = lm_batch_size
        self.special = torch.tensor(special if exclude_special else (), dtype=torch.int64)
        self._load_model = load_model
        self._model: Any = None
        self.cache = cache
        self.seed = seed
        self._counts: list[int] = []
        self.keep = keep
        self._recent: dict[int, dict[int, torch.Tensor]] = {}  # the last two (or all) buffers
        self.lm_tokens = 0  # tokens that went through the language model
        self.lm_seconds = 0.0

    # -- rows ---------------------------------------------------------------------

    @property
    def epoch_buffers(self) -> int:
        return -(-len(self.rows) // self.rows_per_buffer)

    def source_buffer(self, index: int) -> int:
        """The first epoch's buffer that buffer `index` repeats (itself in the first epoch)."""
        epoch, slot = divmod(index, self.epoch_buffers)
        if epoch == 0:
            return slot
        order = np.random.default_rng(_seed("epoch", epoch)).permutation(self.epoch_buffers)
        return int(order[slot])

    def buffer_rows(self, index: int) -> np.ndarray:
        """The rows of buffer `index`: a slice of the rows, in the first epoch's order."""
        start = self.source_buffer(index) * self.rows_per_buffer
        return self.rows[start : start + self.rows_per_buffer]

    def kept_mask(self, rows: np.ndarray) -> torch.Tensor:
        tokens = torch.from_numpy(rows)
        if len(self.special) == 0:
            return torch.ones_like(tokens, dtype=torch.bool)
        return ~torch.isin(tokens, self.special)

    def kept_count(self, index: int) -> int:
        while len(self._counts) <= index:
            rows = self.buffer_rows(len(self._counts))
            self._counts.append(int(self.kept_mask(rows).sum()))
        return self._counts[index]

    def locate(self, token: int) -> tuple[int, int]:
        """(buffer, offset) of the `token`-th kept token of the stream."""
        index = 0
        while token >= self.kept_count(index):
            token -= self.kept_count(index)
            index += 1
        return index, token

    # -- activations -------------------------------------------------------------------

    def _shard(self, layer: int, index: int) -> Path:
        assert self.cache is not None
        return self.cache / f"L{layer}" / f"{index:06d}.safetensors"

    def cached(self, index: int) -> bool:
        return self.cache is not None and all(
            self._shard(layer, index).is_file() for layer in self.layers
        )

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def activations(self, index: int) -> dict[int, torch.Tensor]:
        """`{layer: [kept tokens, d]}` of buffer `index`, in row order (not shuffled)."""
        index = self.source_buffer(index)
        if index in self._recent:
            return self._recent[index]
        if self.cached(index):
            acts = {
                layer: load_file(str(self._shard(layer, index)))["acts"] for layer in self.layers
            }
        else:
            acts = self._harvest(index)
            if self.cache is not None:
                for layer, tensor in acts.items():
                    path = self._shard(layer, index)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    partial = path.with_name(f".{path.name}.{os.getpid()}")
                    save_file({"acts": tensor.contiguous()}, str(partial))
                    partial.replace(path)
        kept = self._recent if self.keep else dict(list(self._recent.items())[-1:])
        self._recent = {**kept, index: acts}
        return acts

    def _harvest(self, index: int) -> dict[int, torch.Tensor]:
        import time

        rows = self.buffer_rows(index)
        model = self.model
        parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        start = time.perf_counter()
        for begin in range(0, len(rows), self.lm_batch_size):
            chunk = rows[begin : begin + self.lm_batch_size]
            ids = torch.from_numpy(chunk).to(model.device)
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            acts = activations.harvest(model, batch, self.layers, self.site)
            keep = self.kept_mask(chunk).to(model.device)
            for layer in self.layers:
                parts[layer].append(acts[layer][keep].cpu())
            self.lm_tokens += chunk.size
        self.lm_seconds += time.perf_counter() - start
        return {layer: torch.cat(chunks) for layer, chunks in parts.items()}

    def permutation(self, index: int, n: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(_seed("shuffle", self.seed, index))
        return torch.randperm(n, generator=generator)

    def batches(self, start_step: int, batch_size: int) -> Iterator[dict[int, torch.Tensor]]:
        """SAE batches `{layer: [batch_size, d]}` from step `start_step` on, forever."""
        index, offset = self.locate(start_step * batch_size)
        pending: dict[int, torch.Tensor] | None = None
        while True:
            acts = self.activations(index)
            n = next(iter(acts.values())).shape[0]
            order = self.permutation(index, n)[offset:]
            offset = 0
            fresh = {layer: tensor[order] for layer, tensor in acts.items()}
            pending = (
                fresh
                if pending is None
                else {layer: torch.cat([pending[layer], fresh[layer]]) for layer in fresh}
            )
            available = next(iter(pending.values())).shape[0]
            taken = 0
            while available - taken >= batch_size:
                yield {layer: p[taken : taken + batch_size] for layer, p in pending.items()}
                taken += batch_size
            pending = {layer: p[taken:] for layer, p in pending.items()}
            index += 1
