"""Activation patching sweeps, batched: clean activations into the corrupted run.

Speed comes from facts that change no number (beyond float rounding):

- Causal attention leaves every position before a patched one as it was. A residual
  patch at (layer L, position p) therefore starts at position p, on the corrupted run's
  keys and values before it, and at layer L, with the corrupted run's residual there:
  layers 0..L-1 are not run again. A head patch at layer L also starts at layer L.
- Each pair's two prompts are run once, in a batch with other pairs' (`run_prompts`),
  recording what the patched rows join with and attend to, and every score of each.
- Patched rows go into one batch per batch of pairs (`layerwise`): for the residual,
  one row per layer holding every patched position's sequence side by side; for heads,
  one row per (layer, head). Pairs of similar lengths share a batch (`batches`).
- Only the logits the score reads are computed: at its positions, and for the anchor
  score only its tokens' columns (`LoadedModel.head`), never the full unembedding,
  which is most of the cost in Gemma's 262k vocabulary.

The layers are the Hugging Face model's that the bridge wraps: the bridge's hook points
live inside them, so `blocks.L.attn.hook_z` fires as in a bridge forward, and the test
suite checks the results against TransformerLens' `patching.get_act_patch_resid_pre` and
against patches made by hand in whole, unbatched bridge runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from saefeatures import interventions
from saefeatures.interventions import Intervention
from saefeatures.models import LoadedModel
from saefeatures.patching import layerwise
from saefeatures.patching.reply_scores import Score

Hook = tuple[str, Callable[..., torch.Tensor]]
PACKED_TOKENS = 256  # widest packed row of the residual sweep
PAIRS_PER_BATCH = 8  # pairs whose prompts and sweeps share one batch of rows
WIDTH_SLACK = 1.5  # residual sweep: rows run together are at most this many times wider


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
    """A clean/corrupted pair, tokenized, split at the end of their shared prefix."""

    clean: torch.Tensor  # [suffix] token ids after the shared prefix
    corrupted: torch.Tensor
    shared: torch.Tensor  # [prefix] the shared prefix's token ids
    _prefix: Context | None = field(default=None, repr=False)

    @property
    def prefix_length(self) -> int:
        return len(self.shared)

    def prefix(self, model: LoadedModel) -> Context:
        """The shared prefix's keys and values, run once on first use (by the unbatched
        forwards of `scored_forward`)."""
        if self._prefix is None:
            empty = Context(None, 0)
            self._prefix = _run(model, empty, self.shared) if len(self.shared) else empty
        return self._prefix

    @property
    def aligned(self) -> bool:
        """Equal lengths: every position of one prompt has its partner in the other."""
        return len(self.clean) == len(self.corrupted)


@dataclass
class CleanRun:
    """The clean prompt's activations after the shared prefix: the patches' values."""

    resid_pre: list[torch.Tensor]  # layer -> [suffix, d_model]
    z: list[torch.Tensor]  # layer -> [suffix, n_heads, d_head]; empty unless asked for


Corrupted = tuple[layerwise.Layout, layerwise.Recorded]


@dataclass
class Prompts:
    """A pair's two prompts, run: every score of each (clean, corrupted), the clean
    run's activations and the corrupted run's record (what patched rows join with and
    attend to, for the swept score's continuations)."""

    values: dict[str, tuple[float, float]]
    clean: CleanRun
    corrupted: Corrupted


def resid_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def z_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def shared_length(clean_ids: list[int], corrupted_ids: list[int]) -> int:
    """Tokens of the shared prefix, leaving at least one token of each prompt after it."""
    limit = min(len(clean_ids), len(corrupted_ids)) - 1
    return next((i for i in range(limit) if clean_ids[i] != corrupted_ids[i]), max(limit, 0))


def batches(pairs: Sequence[tuple[list[int], list[int]]]) -> list[list[int]]:
    """Indices of (clean, corrupted) token id pairs in batches for the sweeps, by suffix
    length: a batch pads its rows to its longest."""
    lengths = [len(x) - shared_length(c, x) for c, x in pairs]
    order = sorted(range(len(pairs)), key=lengths.__getitem__)
    return [order[i : i + PAIRS_PER_BATCH] for i in range(0, len(order), PAIRS_PER_BATCH)]


def prepare(model: LoadedModel, clean_ids: list[int], corrupted_ids: list[int]) -> PreparedPair:
    """Split the prompts at the end of their shared prefix."""
    shared = shared_length(clean_ids, corrupted_ids)
    as_tensor = lambda ids: torch.tensor(ids, device=model.device)  # noqa: E731
    return PreparedPair(
        as_tensor(clean_ids[shared:]),
        as_tensor(corrupted_ids[shared:]),
        as_tensor(clean_ids[:shared]),
    )


@torch.no_grad()
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


def patch_positions(pair: PreparedPair) -> list[tuple[int, int]]:
    """(corrupted, clean) suffix positions to patch: all of them if aligned, else the last."""
    if pair.aligned:
        return [(i, i) for i in range(len(pair.corrupted))]
    return [(len(pair.corrupted) - 1, len(pair.clean) - 1)]


def resid_positions(pair: PreparedPair, every: bool = False) -> list[tuple[int, int]]:
    """The residual sweep's (corrupted, clean) suffix positions: where the prompts' tokens
    differ (where the news is) and the last (the score's), or all of them if `every`.

    Every conclusion reads only these (`patching_peaks`, the flip test, the report's
    figure); a position in between costs a row per layer and changes none of them.
    """
    positions = patch_positions(pair)
    if every or not pair.aligned:
        return positions
    last = len(pair.corrupted) - 1
    return [
        (target, origin)
        for target, origin in positions
        if target == last or pair.clean[origin] != pair.corrupted[target]
    ]


@torch.no_grad()
def run_prompts(
    model: LoadedModel,
    pairs: Sequence[PreparedPair],
    scores: dict[str, Score],
    swept: str,
    heads: bool,
) -> list[Prompts]:
    """Both prompts of every pair, in one batch per score: each score's values, and for
    the swept score the clean activations (hook_z too if `heads`) and the corrupted
    run's record."""
    watched: list[list[torch.Tensor]] = [[] for _ in range(model.n_layers)]
    hooks = [(z_hook(layer), _keep(watched[layer])) for layer in range(model.n_layers)]
    found, layouts, recorded = _run_both(
        model, pairs, scores[swept], record=True, hooks=hooks if heads else ()
    )
    z = [torch.cat(chunks) for chunks in watched if chunks]
    values = {
        name: found if name == swept else _run_both(model, pairs, score)[0]
        for name, score in scores.items()
    }
    return [
        Prompts(
            {name: pair_values[i] for name, pair_values in values.items()},
            _clean_run(pair, recorded[2 * i], z, 2 * i),
            _corrupted(pair, layouts[2 * i + 1], recorded[2 * i + 1]),
        )
        for i, pair in enumerate(pairs)
    ]


def _run_both(
    model: LoadedModel,
    pairs: Sequence[PreparedPair],
    score: Score,
    record: bool = False,
    hooks: Sequence[Hook] = (),
) -> tuple[list[tuple[float, float]], list[layerwise.Layout], list[layerwise.Recorded]]:
    """Both prompts of every pair as rows of one batch (pair i's clean prompt is row 2i,
    its corrupted one 2i + 1), with the score's continuations: each pair's (clean,
    corrupted) score, the layouts and, when recording, the records."""
    layouts = [
        layerwise.prompt_layout(torch.cat([p.shared, side]).cpu(), score.continuations, score.keep)
        for p in pairs
        for side in (p.clean, p.corrupted)
    ]
    finals, recorded = layerwise.from_embeddings(model, layouts, record, hooks)
    found = [
        float(_scores(model, final[None], layout, score)[0, 0])
        for final, layout in zip(finals, layouts, strict=True)
    ]
    return list(zip(found[0::2], found[1::2], strict=True)), layouts, recorded


def _keep(watched: list[torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A hook appending its activation (a chunk of rows per call)."""

    def keep(activation: torch.Tensor, hook: Any = None) -> torch.Tensor:
        watched.append(activation.detach())
        return activation

    return keep


def _clean_run(
    pair: PreparedPair, recorded: layerwise.Recorded, z: list[torch.Tensor], row: int
) -> CleanRun:
    suffix = slice(pair.prefix_length, pair.prefix_length + len(pair.clean))
    return CleanRun([r[suffix] for r in recorded.resid_pre], [layer[row, suffix] for layer in z])


def _corrupted(
    pair: PreparedPair, layout: layerwise.Layout, recorded: layerwise.Recorded
) -> Corrupted:
    """The record, with only the prompt's keys and values: no row attends to the
    continuations'."""
    n = pair.prefix_length + len(pair.corrupted)
    recorded.keys_values = [(k[:, :, :n], v[:, :, :n]) for k, v in recorded.keys_values]
    return layout, recorded


def _scores(
    model: LoadedModel, final: torch.Tensor, layout: layerwise.Layout, score: Score
) -> torch.Tensor:
    """[rows, sequences] scores from final hidden states [rows, T, d_model]."""
    kept = final[:, layout.kept.to(final.device)].flatten(0, 1)
    return score.reduce(model.head(kept, score.tokens)).view(len(final), -1)


def _chunks(lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive indices grouped so each group's lengths sum to at most `budget` (or
    one item): packed rows of bounded width keep the attention scores small."""
    groups: list[list[int]] = [[]]
    total = 0
    for index, length in enumerate(lengths):
        if groups[-1] and total + length > budget:
            groups.append([])
            total = 0
        groups[-1].append(index)
        total += length
    return groups


@torch.no_grad()
def resid_sweep(
    model: LoadedModel,
    pairs: Sequence[PreparedPair],
    score: Score,
    prompts: Sequence[Prompts],
    every_position: bool = False,
) -> list[torch.Tensor]:
    """Each pair's patched scores [layer, patched position]: clean resid_pre at one
    (layer, position), at the positions of `resid_positions`.

    Each patched position's sequence (from it to the end, on the corrupted run's keys
    and values before it) is packed with the pair's others into one row per layer (a
    few rows if long), which joins at its layer; all pairs' rows run in one batch.
    """
    jobs, owners = [], []
    for index, (pair, prompt) in enumerate(zip(pairs, prompts, strict=True)):
        positions = resid_positions(pair, every_position)
        pair_jobs = _resid_jobs(model, pair, positions, prompt.clean, prompt.corrupted)
        jobs += pair_jobs
        owners += [index] * len(pair_jobs)
    finals = _run_by_width(model, jobs)
    columns = [_scores(model, f, job.layout, score) for f, job in zip(finals, jobs, strict=True)]
    return [
        torch.cat([c for c, owner in zip(columns, owners, strict=True) if owner == index], dim=1)
        for index in range(len(pairs))
    ]


def _run_by_width(model: LoadedModel, jobs: list[layerwise.Job]) -> list[torch.Tensor]:
    """`layerwise.run` on groups of jobs of similar widths, each job's final hidden states
    in the jobs' order: a run pads its rows to its widest, and packed rows of pairs with
    one or many differing tokens differ several times in width."""
    order = sorted(range(len(jobs)), key=lambda i: len(jobs[i].layout))
    groups: list[list[int]] = [[]]
    for i in order:
        if groups[-1] and len(jobs[i].layout) > WIDTH_SLACK * len(jobs[groups[-1][0]].layout):
            groups.append([])
        groups[-1].append(i)
    finals: list[torch.Tensor] = [torch.empty(0)] * len(jobs)
    for group in groups:
        for i, final in zip(group, layerwise.run(model, [jobs[i] for i in group]), strict=True):
            finals[i] = final
    return finals


def _resid_jobs(
    model: LoadedModel,
    pair: PreparedPair,
    positions: list[tuple[int, int]],
    clean: CleanRun,
    corrupted: Corrupted,
) -> list[layerwise.Job]:
    """One job per packed row of the pair's patched positions: a row per layer."""
    layout, recorded = corrupted
    cuts = [layerwise.cut(layout, pair.prefix_length + target) for target, _ in positions]
    jobs = []
    for group in _chunks([len(c) for c in cuts], PACKED_TOKENS):
        packed = layerwise.pack([cuts[i] for i in group])
        origins = [positions[i][1] for i in group]
        joining = {
            layer: _patched(recorded.resid_pre[layer], packed, clean.resid_pre[layer][origins])
            for layer in range(model.n_layers)
        }
        jobs.append(layerwise.Job(packed, joining, recorded.keys_values))
    return jobs


def _patched(resid: torch.Tensor, layout: layerwise.Layout, values: torch.Tensor) -> torch.Tensor:
    """One row [1, T, d_model]: the recorded residual at the layout's tokens, with each
    packed sequence's first token replaced by its value."""
    row = resid[layout.source.to(resid.device)]
    row[layout.firsts.to(resid.device)] = values.to(row.dtype)
    return row[None]


@torch.no_grad()
def head_sweep(
    model: LoadedModel, pairs: Sequence[PreparedPair], score: Score, prompts: Sequence[Prompts]
) -> list[torch.Tensor]:
    """Each pair's patched scores [layer, head]: one query head's clean output (hook_z)
    per row.

    hook_z holds one slice per query head, so grouped-query attention needs nothing
    special: heads sharing a key/value head are still patched one at a time. Aligned
    pairs are patched at every position after the prefix, others at the last only. Each
    layer's rows (one per head) join at that layer; all pairs' rows run in one batch.
    """
    jobs = [
        _head_job(model, pair, prompt.clean, prompt.corrupted)
        for pair, prompt in zip(pairs, prompts, strict=True)
    ]
    finals = layerwise.run(model, jobs)
    return [
        _scores(model, final, job.layout, score).view(model.n_layers, model.n_heads)
        for final, job in zip(finals, jobs, strict=True)
    ]


def _head_job(
    model: LoadedModel, pair: PreparedPair, clean: CleanRun, corrupted: Corrupted
) -> layerwise.Job:
    """The pair's suffix as n_heads rows per layer, row h patched at head h."""
    layout, recorded = corrupted
    suffix = layerwise.cut(layout, pair.prefix_length)
    positions = patch_positions(pair)
    targets = torch.tensor([target for target, _ in positions])  # suffix index = token index
    origins = [origin for _, origin in positions]
    source = suffix.source.to(model.device)
    joining, edits = {}, {}
    for layer in range(model.n_layers):
        joining[layer] = recorded.resid_pre[layer][source][None].expand(model.n_heads, -1, -1)
        edits[layer] = (z_hook(layer), _head_patch(clean.z[layer][origins], targets))
    return layerwise.Job(suffix, joining, recorded.keys_values, edits)


def _head_patch(values: torch.Tensor, targets: torch.Tensor) -> Callable[..., torch.Tensor]:
    """An edit of hook_z on n_heads rows: row h gets head h's values [targets, heads,
    d_head] at the target tokens."""

    def patch(z: torch.Tensor) -> torch.Tensor:
        heads = torch.arange(values.shape[1], device=z.device)[:, None]
        z[heads, targets.to(z.device)[None, :], heads] = values.transpose(0, 1).to(z.dtype)
        return z

    return patch
