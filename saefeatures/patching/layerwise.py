"""Rows run through the decoder layers one layer at a time, each joining at its own layer.

A patch at layer L leaves layers 0..L-1 as they were, so a patched row need not run
them: it joins the batch at layer L with the corrupted run's residual there (edited).
One row can hold several sequences side by side (a `Layout`): each token carries its
own position, the context positions it sees and the other tokens it sees, so packed
sequences never see each other, and sequences that start at different positions share
a row. Rows of several prompts (`Job`s) share a batch, each attending to its own
prompt's keys and values (the context) through a mask built here per layer type (full
or sliding window), as the model's own mask would be.

The layers are the Hugging Face model's (the bridge's hook points live inside them),
called with a 4D boolean mask, which the bridge's attention takes as given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from saefeatures.models import LoadedModel

TOKENS_PER_CALL = 4096  # rows x width of one layer call, at most (or one block of rows)
KeysValues = tuple[torch.Tensor, torch.Tensor]  # [1, kv_heads, tokens, d_head] each
Edit = tuple[str, Callable[[torch.Tensor], torch.Tensor]]  # hook name, edit of some rows
Hook = tuple[str, Callable[..., torch.Tensor]]


@dataclass(frozen=True)
class Layout:
    """The tokens of a row: sequences packed side by side.

    `sees[t, u]`: token t attends to token u of the row; `context[t]`: token t attends to
    the context's first `context[t]` positions; `kept[s]`: the tokens whose outputs
    score sequence s (a score's `keep` of them); `source[t]`: token t's index in the
    layout this one was cut from (the recorded run's); `firsts`: where each packed
    sequence starts.
    """

    tokens: torch.Tensor  # [T] ids
    positions: torch.Tensor  # [T]
    sees: torch.Tensor  # [T, T] bool
    context: torch.Tensor  # [T]
    kept: torch.Tensor  # [S, keep]
    source: torch.Tensor  # [T]
    firsts: torch.Tensor  # [sequences]

    def __len__(self) -> int:
        return len(self.tokens)


def prompt_layout(
    prompt: torch.Tensor, continuations: Sequence[Sequence[int]], keep: int
) -> Layout:
    """A prompt followed by each continuation on its own branch (all but its last token,
    whose output nothing reads), kept where a score reads: the prompt's last token, then
    each continuation token but the last (padded to `keep` with the prompt's last)."""
    n = len(prompt)
    branches = [list(c[:-1]) for c in continuations]
    tokens = torch.tensor([*prompt.tolist(), *(t for b in branches for t in b)], dtype=torch.long)
    positions = torch.cat([torch.arange(n), *(n + torch.arange(len(b)) for b in branches)])
    sees = torch.ones(len(tokens), len(tokens), dtype=torch.bool).tril()
    kept, start = [], n
    for branch in branches:
        end = start + len(branch)
        sees[end:, start:end] = False  # later branches do not see this one
        row = [n - 1, *range(start, end)]
        kept.append(row + [n - 1] * (keep - len(row)))
        start = end
    return Layout(
        tokens,
        positions,
        sees,
        torch.zeros(len(tokens), dtype=torch.long),
        torch.tensor(kept),
        torch.arange(len(tokens)),
        torch.zeros(1, dtype=torch.long),
    )


def cut(layout: Layout, start: int) -> Layout:
    """The tokens from position `start` on, seeing the context (the recorded prompt's
    keys and values) before it instead of the tokens left out."""
    chosen = torch.nonzero(layout.positions >= start).flatten()
    local = torch.full((len(layout),), -1, dtype=torch.long)
    local[chosen] = torch.arange(len(chosen))
    return Layout(
        layout.tokens[chosen],
        layout.positions[chosen],
        layout.sees[chosen][:, chosen],
        torch.full((len(chosen),), start, dtype=torch.long),
        local[layout.kept],
        layout.source[chosen],
        torch.zeros(1, dtype=torch.long),
    )


def pack(layouts: Sequence[Layout]) -> Layout:
    """Layouts side by side in one row, none seeing another."""
    offsets = torch.tensor([0, *(len(x) for x in layouts)]).cumsum(0)
    return Layout(
        torch.cat([x.tokens for x in layouts]),
        torch.cat([x.positions for x in layouts]),
        torch.block_diag(*(x.sees for x in layouts)),
        torch.cat([x.context for x in layouts]),
        torch.cat([x.kept + o for x, o in zip(layouts, offsets, strict=False)]),
        torch.cat([x.source for x in layouts]),
        offsets[:-1],
    )


@dataclass
class Job:
    """One prompt's rows: their layout, when they join (`joining[L]`: [rows, T, d_model]
    entering layer L), the prompt's keys and values they attend to (per layer; the jobs
    of a run all have them or none does), and edits of the rows joining at a layer,
    made at one of its hook points."""

    layout: Layout
    joining: dict[int, torch.Tensor]
    context: list[KeysValues] | None = None
    edits: dict[int, Edit] = field(default_factory=dict)


@dataclass
class Recorded:
    """A one-row job's run: every layer's input (resid_pre) and keys and values."""

    resid_pre: list[torch.Tensor] = field(default_factory=list)  # layer -> [T, d_model]
    keys_values: list[KeysValues] = field(default_factory=list)


class _Batch:
    """The rows of several jobs padded to one width, growing as rows join: each row's
    mask, rotary embeddings and context keys and values are its job's."""

    def __init__(self, model: LoadedModel, jobs: Sequence[Job]) -> None:
        self.model, self.jobs = model, jobs
        self.width = max(len(job.layout) for job in jobs)
        self.kinds = _layer_types(model)
        self.context_width = max(_context_width(job) for job in jobs)
        self.masks = {
            kind: torch.stack([self._mask(job.layout, kind) for job in jobs])
            for kind in set(self.kinds)
        }
        positions = torch.stack([self._padded(job.layout.positions) for job in jobs])
        self.rotations = _rotations(model, positions.to(model.device), set(self.kinds))
        # Every row of every layer, written in place as rows join and layers run.
        total = sum(len(rows) for job in jobs for rows in job.joining.values())
        first = next(rows for job in jobs for rows in job.joining.values())
        self.hidden = first.new_zeros(total, self.width, first.shape[-1])
        self.owners = torch.zeros(total, dtype=torch.long)
        self.joined = 0  # rows joined so far: the first rows of `hidden`
        self.blocks: list[int] = []  # first row of each job's rows joining at a layer

    def _padded(self, values: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(values, (0, self.width - len(values)))

    def _mask(self, layout: Layout, kind: str) -> torch.Tensor:
        """[1, T, context + T]: what each token attends to, as the model's own mask would
        say for this layer type (a sliding window sees the last `sliding_window`
        positions); padding tokens see only themselves."""
        n, width = len(layout), self.width
        positions = self._padded(layout.positions)
        past = torch.zeros(width, self.context_width, dtype=torch.bool)
        past[:n] = torch.arange(self.context_width)[None, :] < layout.context[:, None]
        own = torch.eye(width, dtype=torch.bool)
        own[:n, :n] = layout.sees
        if kind == "sliding_attention":
            window = positions[:, None] - self.model.hf_config.sliding_window
            past &= torch.arange(self.context_width)[None, :] > window
            own &= positions[None, :] > window
        return torch.cat([past, own], dim=1)[None].to(self.model.device)

    def join(self, layer: int) -> list[tuple[slice, Edit]]:
        """Append the rows joining at this layer; the edits due, with their rows."""
        edits = []
        for index, job in enumerate(self.jobs):
            rows = job.joining.get(layer)
            if rows is None:
                continue
            start, stop = self.joined, self.joined + len(rows)
            self.blocks.append(start)
            if layer in job.edits:
                edits.append((slice(start, stop), job.edits[layer]))
            self.hidden[start:stop, : rows.shape[1]] = rows
            self.owners[start:stop] = index
            self.joined = stop
        return edits

    def chunks(self) -> list[slice]:
        """The rows in runs of about TOKENS_PER_CALL tokens, cut between blocks (an edit's
        rows stay together): smaller tensors stay in cache and in memory the allocator
        reuses, which measured faster than one call for every row."""
        starts = [0]
        for block in self.blocks[1:]:
            if (block - starts[-1]) * self.width >= TOKENS_PER_CALL:
                starts.append(block)
        return [slice(a, b) for a, b in zip(starts, [*starts[1:], self.joined], strict=True)]

    def context(self, layer: int, rows: slice) -> KeysValues | None:
        """This layer's context keys and values for the rows, [rows, kv, context, d]."""
        if not self.context_width:
            return None
        stacked = [
            torch.stack([self._context_of(job, layer, part) for job in self.jobs])
            for part in (0, 1)
        ]
        owners = self.owners[rows].to(self.model.device)
        return stacked[0][owners], stacked[1][owners]

    def _context_of(self, job: Job, layer: int, part: int) -> torch.Tensor:
        values = job.context[layer][part][0]  # type: ignore[index]
        return torch.nn.functional.pad(values, (0, 0, 0, self.context_width - values.shape[1]))

    def forward(self, layer: int, module: Any, keys: _Context, rows: slice) -> torch.Tensor:
        """Some rows through one decoder layer: their outputs."""
        kind = self.kinds[layer]
        owners = self.owners[rows].to(self.model.device)
        cos, sin = self.rotations[kind]
        out = module(
            self.hidden[rows],  # type: ignore[index]
            attention_mask=self.masks[kind][owners],
            position_embeddings=(cos[owners], sin[owners]),
            past_key_values=keys,
        )
        return out[0] if isinstance(out, tuple) else out

    def split(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        """Each job's rows, in the order they joined, cut to its own width."""
        return [
            hidden[self.owners == index][:, : len(job.layout)]
            for index, job in enumerate(self.jobs)
        ]


def _context_width(job: Job) -> int:
    return 0 if job.context is None else job.context[0][0].shape[2]


class _Context:
    """Stands in for a transformers Cache: a layer's attention sees its context keys and
    values before its own, and the new ones are kept when recording."""

    def __init__(self, record: bool) -> None:
        self.current: KeysValues | None = None
        self.recorded: list[KeysValues] | None = [] if record else None

    def take(self) -> KeysValues:
        """The keys and values recorded since the last take, all rows."""
        taken, self.recorded = self.recorded or [], []
        return torch.cat([k for k, _ in taken]), torch.cat([v for _, v in taken])

    def update(self, keys: torch.Tensor, values: torch.Tensor, *_: Any, **__: Any) -> KeysValues:
        if self.recorded is not None:
            self.recorded.append((keys, values))
        if self.current is None:
            return keys, values
        old_keys, old_values = self.current
        return torch.cat([old_keys, keys], dim=2), torch.cat([old_values, values], dim=2)


def _layer_types(model: LoadedModel) -> list[str]:
    config = model.hf_config
    types = getattr(config, "layer_types", None)
    if types:
        return list(types)
    kind = "sliding_attention" if getattr(config, "sliding_window", None) else "full_attention"
    return [kind] * model.n_layers


def _rotations(
    model: LoadedModel, positions: torch.Tensor, kinds: set[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each layer type's rotary embeddings (cos, sin) at positions [jobs, T]."""
    rotary = model.hf_model.base_model.rotary_emb
    original = getattr(rotary, "original_component", rotary)
    by_type = "layer_type" in inspect.signature(original.forward).parameters
    probe = torch.zeros(1, dtype=model.hf_model.dtype, device=model.device)
    return {
        kind: tuple(rotary(probe, positions, kind) if by_type else rotary(probe, positions))
        for kind in kinds
    }


def _edit_hooks(edits: list[tuple[slice, Edit]], chunk: slice) -> list[Hook]:
    """One hook per hook point, applying the edits of the chunk's rows (each to its own
    rows, counted in the chunk) to one copy."""
    by_name: dict[str, list[tuple[slice, Callable]]] = {}
    for rows, (name, edit) in edits:
        if chunk.start <= rows.start < chunk.stop:
            local = slice(rows.start - chunk.start, rows.stop - chunk.start)
            by_name.setdefault(name, []).append((local, edit))

    def hook_for(chosen: list[tuple[slice, Callable]]):
        def hook(activation: torch.Tensor, hook: Any = None) -> torch.Tensor:
            out = activation.clone()
            for rows, edit in chosen:
                out[rows] = edit(out[rows])
            return out

        return hook

    return [(name, hook_for(chosen)) for name, chosen in by_name.items()]


def run(
    model: LoadedModel,
    jobs: Sequence[Job],
    recorded: Sequence[Recorded] | None = None,
    hooks: Sequence[Hook] = (),
) -> list[torch.Tensor]:
    """Each job's final-norm hidden states [rows, T, d_model], rows in the order they
    joined. `recorded` (one per job of one row joining at layer 0) collects every
    layer's input and keys and values; `hooks` watch every layer (a call per chunk of
    rows)."""
    base = model.hf_model.base_model
    batch = _Batch(model, jobs)
    keys = _Context(record=recorded is not None)
    for layer, module in enumerate(base.layers):
        edits = batch.join(layer)
        if not batch.joined:
            continue
        if recorded is not None:
            for row, (job, memory) in enumerate(zip(jobs, recorded, strict=True)):
                memory.resid_pre.append(batch.hidden[row, : len(job.layout)].clone())
        for chunk in batch.chunks():
            keys.current = batch.context(layer, chunk)
            with model.hooks([*hooks, *_edit_hooks(edits, chunk)]):
                batch.hidden[chunk] = batch.forward(layer, module, keys, chunk)
        if recorded is not None:
            _remember(jobs, recorded, keys.take())
    return batch.split(base.norm(batch.hidden))


def _remember(jobs: Sequence[Job], recorded: Sequence[Recorded], keys_values: KeysValues) -> None:
    """A layer's keys and values [rows, kv, T, d] into each one-row job's record."""
    for row, (job, memory) in enumerate(zip(jobs, recorded, strict=True)):
        n = len(job.layout)
        memory.keys_values.append(tuple(x[row : row + 1, :, :n] for x in keys_values))


def from_embeddings(
    model: LoadedModel, layouts: Sequence[Layout], record: bool = False, hooks: Sequence[Hook] = ()
) -> tuple[list[torch.Tensor], list[Recorded]]:
    """Each layout as one row (row i: layout i) with no context, from the embeddings: its
    final hidden states [T, d_model] and, when recording, every layer's input, keys and
    values."""
    embed = model.hf_model.base_model.embed_tokens
    jobs = [Job(x, {0: embed(x.tokens.to(model.device))[None]}) for x in layouts]
    recorded = [Recorded() for _ in jobs] if record else []
    finals = run(model, jobs, recorded if record else None, hooks)
    return [final[0] for final in finals], recorded
