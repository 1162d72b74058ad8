"""Activation patching sweeps, batched: clean activations into the corrupted run.

Speed comes from three facts, none of which changes a number:

- Causal attention leaves every position before a patched one as it was. Clean and
  corrupted prompts share a prefix (the chat template, the sentence's first words),
  which is therefore run once and its keys and values reused; patching inside it has
  effect exactly 0 and is not run. Likewise a residual patch at position p reuses the
  corrupted run's keys and values before p and runs only positions p.. onwards.
- Patches go into batched forwards: for the residual, one forward per position with
  one row per layer; for heads, one forward per layer with one row per head.
- Only the logits the score reads are computed: at its positions, and for the anchor
  score only its tokens' columns (`LoadedModel.head`), never the full unembedding,
  which is most of the cost in Gemma's 262k vocabulary.

The forwards call the Hugging Face model that the bridge wraps: the bridge's hook points
live inside it, so `blocks.L.hook_resid_pre` and `blocks.L.attn.hook_z` fire as in a
bridge forward, and the test suite checks the result against TransformerLens'
`patching.get_act_patch_resid_pre` on the bridge itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from saefeatures import interventions
from saefeatures.interventions import Intervention, Patch
from saefeatures.models import LoadedModel
from saefeatures.patching.reply_scores import Score

Hook = tuple[str, Callable[..., torch.Tensor]]


@dataclass
class Context:
    """Keys and values of the tokens already run (a transformers Cache), and how many."""

    cache: Any
    length: int

    def rows(self, n: int) -> Any:
        """A copy for a batch of n rows (a forward extends the cache it is given)."""
        if self.cache is None:
            return None
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(n)
        return cache


@dataclass
class PreparedPair:
    """A clean/corrupted pair, tokenized, with the shared prefix run once."""

    clean: torch.Tensor  # [suffix] token ids after the shared prefix
    corrupted: torch.Tensor
    prefix: Context

    @property
    def prefix_length(self) -> int:
        return self.prefix.length

    @property
    def aligned(self) -> bool:
        """Equal lengths: every position of one prompt has its partner in the other."""
        return len(self.clean) == len(self.corrupted)


@dataclass
class CleanRun:
    score: float
    resid_pre: dict[int, torch.Tensor]  # layer -> [suffix, d_model]
    z: dict[int, torch.Tensor]  # layer -> [suffix, n_heads, d_head]


def resid_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def z_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


@torch.no_grad()
def prepare(model: LoadedModel, clean_ids: list[int], corrupted_ids: list[int]) -> PreparedPair:
    """Split off the shared prefix (at least one token is left to run) and cache it."""
    limit = min(len(clean_ids), len(corrupted_ids)) - 1
    shared = next((i for i in range(limit) if clean_ids[i] != corrupted_ids[i]), max(limit, 0))
    prefix = Context(None, 0)
    if shared:
        prefix = _run(
            model, Context(None, 0), torch.tensor(clean_ids[:shared], device=model.device)
        )
    as_tensor = lambda ids: torch.tensor(ids[shared:], device=model.device)  # noqa: E731
    return PreparedPair(as_tensor(clean_ids), as_tensor(corrupted_ids), prefix)


def _run(model: LoadedModel, context: Context, tokens: torch.Tensor) -> Context:
    """Extend a context by tokens (one row), keeping all keys and values."""
    out = model.hf_model(
        tokens[None], past_key_values=context.rows(1), use_cache=True, logits_to_keep=1
    )
    return Context(out.past_key_values, context.length + len(tokens))


def scored_forward(
    model: LoadedModel,
    context: Context,
    tokens: torch.Tensor,
    score: Score,
    copies: int,
    edits: Sequence[Intervention] = (),
    hooks: Sequence[Hook] = (),
) -> torch.Tensor:
    """The score of `copies` runs of context + tokens, each row edited by `edits` (and
    read by `hooks`).

    Each copy is run once per score continuation; edits see `copies * R` rows, copy i
    owning `rows_of(i, score)`.
    """
    known = context.length
    width = len(tokens) + score.keep - 1
    rows = [
        torch.cat([tokens, torch.tensor(c, dtype=tokens.dtype, device=tokens.device)])
        for c in score.continuations
    ] * copies
    ids = torch.zeros(len(rows), width, dtype=tokens.dtype, device=tokens.device)
    mask = torch.zeros(len(rows), known + width, dtype=torch.long, device=ids.device)
    mask[:, :known] = 1
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, known : known + len(row)] = 1
    cache = context.rows(len(rows))
    with interventions.applied(model, edits), model.hooks(list(hooks)):
        hidden = model.final_hidden(
            ids, attention_mask=mask, past_key_values=cache, use_cache=cache is not None
        )
    return score.reduce(model.head(hidden[:, -score.keep :], score.tokens))


def rows_of(copy_index: int, score: Score) -> slice:
    width = len(score.continuations)
    return slice(copy_index * width, (copy_index + 1) * width)


@torch.no_grad()
def clean_run(model: LoadedModel, pair: PreparedPair, score: Score, heads: bool) -> CleanRun:
    """The clean score, with resid_pre (and hook_z) of every layer after the prefix."""
    resid: dict[int, torch.Tensor] = {}
    z: dict[int, torch.Tensor] = {}
    n = len(pair.clean)

    # One closure per layer: the bridge reports hooks by canonical names, not aliases.
    def capture_into(store: dict[int, torch.Tensor], layer: int):
        def capture(activation: torch.Tensor, hook: Any) -> torch.Tensor:
            store[layer] = activation[0, :n].detach().clone()
            return activation

        return capture

    hooks = [(resid_hook(layer), capture_into(resid, layer)) for layer in range(model.n_layers)]
    if heads:
        hooks += [(z_hook(layer), capture_into(z, layer)) for layer in range(model.n_layers)]
    value = scored_forward(model, pair.prefix, pair.clean, score, 1, hooks=hooks)
    return CleanRun(float(value[0]), resid, z)


@torch.no_grad()
def prompt_score(
    model: LoadedModel, pair: PreparedPair, suffix: torch.Tensor, score: Score
) -> float:
    """The unpatched score of one side of the pair (its suffix after the shared prefix)."""
    return float(scored_forward(model, pair.prefix, suffix, score, 1)[0])


def patch_positions(pair: PreparedPair) -> list[tuple[int, int]]:
    """(corrupted, clean) suffix positions to patch: all of them if aligned, else the last."""
    if pair.aligned:
        return [(i, i) for i in range(len(pair.corrupted))]
    return [(len(pair.corrupted) - 1, len(pair.clean) - 1)]


@torch.no_grad()
def resid_sweep(
    model: LoadedModel, pair: PreparedPair, score: Score, clean: CleanRun
) -> torch.Tensor:
    """Patched scores [layer, patched position]: clean resid_pre at one (layer, position).

    One forward per position, one row per layer; it starts at the position, on the
    corrupted run's keys and values of everything before it.
    """
    layers = range(model.n_layers)
    positions = patch_positions(pair)
    contexts = _corrupted_contexts(model, pair, [target for target, _ in positions])
    columns = []
    for (target, origin), context in zip(positions, contexts, strict=True):
        patches = [
            Intervention(
                resid_hook(layer),
                Patch(clean.resid_pre[layer][origin][None], [0]),
                rows=rows_of(layer, score),
            )
            for layer in layers
        ]
        tokens = pair.corrupted[target:]
        columns.append(scored_forward(model, context, tokens, score, len(layers), patches))
    return torch.stack(columns, dim=1)


def _corrupted_contexts(model: LoadedModel, pair: PreparedPair, starts: list[int]) -> list[Context]:
    """The corrupted run's keys and values before each start position, grown a token at a
    time from the prefix (copies, not crops: sliding-window caches cannot be cropped)."""
    contexts, context, done = [], pair.prefix, 0
    for start in starts:
        if start > done:
            context = _run(model, context, pair.corrupted[done:start])
            done = start
        contexts.append(context)
    return contexts


@torch.no_grad()
def head_sweep(
    model: LoadedModel, pair: PreparedPair, score: Score, clean: CleanRun
) -> torch.Tensor:
    """Patched scores [layer, head]: one query head's clean output (hook_z) per row.

    hook_z holds one slice per query head, so grouped-query attention needs nothing
    special: heads sharing a key/value head are still patched one at a time. Aligned
    pairs are patched at every position after the prefix, others at the last only.
    """
    positions = patch_positions(pair)
    targets = [target for target, _ in positions]
    origins = [origin for _, origin in positions]
    results = []
    for layer in range(model.n_layers):
        patches = [
            Intervention(
                z_hook(layer),
                Patch(clean.z[layer][origins, head], targets, head),
                rows=rows_of(head, score),
            )
            for head in range(model.n_heads)
        ]
        results.append(
            scored_forward(model, pair.prefix, pair.corrupted, score, model.n_heads, patches)
        )
    return torch.stack(results)
