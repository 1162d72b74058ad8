"""Our patching sweeps against the one-pair-at-a-time implementation, on the same pairs.

Both patch clean activations into the corrupted run of the same pairs, on the same model
and score. The peer, kept below, runs one pair at a time: the residual stream at every
(layer, position) after the shared prefix with one forward per position (one row per
layer, every row from layer 0), and every head's output (hook_z) at those positions with
one forward per layer. Ours runs a batch of pairs at once (`sweeps.batches`), each
patched row joining at its layer, positions packed side by side. Steps timed, each
against the peer doing the same work in the same run:

- prompts: both prompts of every pair, every score, the clean activations;
- resid-all: the residual sweep at every position, as the peer;
- resid: the residual sweep at the positions `saefeatures patch` sweeps by default (where
  the prompts differ, and the last), compared with the peer's columns there;
- heads: the head sweep.

It prints each step's times, ratio and largest difference, and the time for all shipped
pairs (extrapolated unless --pairs covers them), with either residual sweep.

Run: python scripts/bench_patching.py [--model M] [--pairs N] [--dtype D] [--score S]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from saefeatures import models
from saefeatures.interventions import Intervention, Patch
from saefeatures.models import LoadedModel
from saefeatures.patching import conclusions, reply_scores, sweeps
from saefeatures.patching.reply_scores import Score
from saefeatures.patching.sweeps import Context, PreparedPair

# -- the peer: the previous implementation -------------------------------------------------


@dataclass
class PeerClean:
    score: float
    resid_pre: dict[int, torch.Tensor]  # layer -> [suffix, d_model]
    z: dict[int, torch.Tensor]  # layer -> [suffix, n_heads, d_head]


@torch.no_grad()
def peer_clean_run(model: LoadedModel, pair: PreparedPair, score: Score) -> PeerClean:
    """The clean score, with resid_pre and hook_z of every layer after the prefix."""
    resid: dict[int, torch.Tensor] = {}
    z: dict[int, torch.Tensor] = {}
    n = len(pair.clean)

    def capture_into(store: dict[int, torch.Tensor], layer: int):
        def capture(activation: torch.Tensor, hook: Any) -> torch.Tensor:
            store[layer] = activation[0, :n].detach().clone()
            return activation

        return capture

    hooks = [
        (sweeps.resid_hook(layer), capture_into(resid, layer)) for layer in range(model.n_layers)
    ]
    hooks += [(sweeps.z_hook(layer), capture_into(z, layer)) for layer in range(model.n_layers)]
    value = sweeps.scored_forward(model, pair.prefix(model), pair.clean, score, 1, hooks=hooks)
    return PeerClean(float(value[0]), resid, z)


@torch.no_grad()
def peer_prompt_score(
    model: LoadedModel, pair: PreparedPair, suffix: torch.Tensor, score: Score
) -> float:
    return float(sweeps.scored_forward(model, pair.prefix(model), suffix, score, 1)[0])


def peer_prompts(
    model: LoadedModel, ids: list[tuple[list[int], list[int]]], scores: dict[str, Score], swept: str
) -> tuple[list[PreparedPair], list[PeerClean], list[dict[str, tuple[float, float]]]]:
    """One pair at a time: the shared prefix run, the clean run, every score."""
    prepared = [sweeps.prepare(model, c, x) for c, x in ids]
    cleans = [peer_clean_run(model, p, scores[swept]) for p in prepared]
    values = [
        {
            name: (
                clean.score if name == swept else peer_prompt_score(model, pair, pair.clean, score),
                peer_prompt_score(model, pair, pair.corrupted, score),
            )
            for name, score in scores.items()
        }
        for pair, clean in zip(prepared, cleans, strict=True)
    ]
    return prepared, cleans, values


@torch.no_grad()
def peer_resid_sweep(
    model: LoadedModel, pair: PreparedPair, score: Score, clean: PeerClean
) -> torch.Tensor:
    """[layer, position]: one forward per position, one row per layer, from layer 0."""
    layers = range(model.n_layers)
    positions = sweeps.patch_positions(pair)
    contexts = _corrupted_contexts(model, pair, [target for target, _ in positions])
    columns = []
    for (target, origin), context in zip(positions, contexts, strict=True):
        patches = [
            Intervention(
                sweeps.resid_hook(layer),
                Patch(clean.resid_pre[layer][origin][None], [0]),
                rows=sweeps.rows_of(layer, score),
            )
            for layer in layers
        ]
        tokens = pair.corrupted[target:]
        columns.append(sweeps.scored_forward(model, context, tokens, score, len(layers), patches))
    return torch.stack(columns, dim=1)


def _corrupted_contexts(model: LoadedModel, pair: PreparedPair, starts: list[int]) -> list[Context]:
    contexts, context, done = [], pair.prefix(model), 0
    for start in starts:
        if start > done:
            context = sweeps._run(model, context, pair.corrupted[done:start])
            done = start
        contexts.append(context)
    return contexts


@torch.no_grad()
def peer_head_sweep(
    model: LoadedModel, pair: PreparedPair, score: Score, clean: PeerClean
) -> torch.Tensor:
    """[layer, head]: one forward per layer, one row per head, from layer 0."""
    positions = sweeps.patch_positions(pair)
    targets = [target for target, _ in positions]
    origins = [origin for _, origin in positions]
    results = []
    for layer in range(model.n_layers):
        patches = [
            Intervention(
                sweeps.z_hook(layer),
                Patch(clean.z[layer][origins, head], targets, head),
                rows=sweeps.rows_of(head, score),
            )
            for head in range(model.n_heads)
        ]
        results.append(
            sweeps.scored_forward(
                model, pair.prefix(model), pair.corrupted, score, model.n_heads, patches
            )
        )
    return torch.stack(results)


# -- the measurement -------------------------------------------------------------------


def differing(prepared: list[PreparedPair], grids: list[torch.Tensor]) -> list[torch.Tensor]:
    """The columns of every-position grids at the positions the residual sweep patches."""
    chosen = []
    for pair, grid in zip(prepared, grids, strict=True):
        every = [target for target, _ in sweeps.patch_positions(pair)]
        kept = [every.index(target) for target, _ in sweeps.resid_positions(pair)]
        chosen.append(grid[:, kept])
    return chosen


def timed(work: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = work(*args)
    return result, time.perf_counter() - start


def peer_sweeps(peer: Callable[..., torch.Tensor], model, prepared, score, cleans) -> list:
    """The peer, one pair at a time."""
    return [peer(model, p, score, c) for p, c in zip(prepared, cleans, strict=True)]


def our_prompts(
    model: LoadedModel, ids: list[tuple[list[int], list[int]]], scores: dict[str, Score], swept: str
) -> tuple[list[PreparedPair], list[sweeps.Prompts]]:
    prepared = [sweeps.prepare(model, c, x) for c, x in ids]
    return prepared, sweeps.run_prompts(model, prepared, scores, swept, heads=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--pairs", type=int, default=sweeps.PAIRS_PER_BATCH)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--score", default="anchors", choices=reply_scores.SCORES)
    args = parser.parse_args()
    model = models.load(args.model, dtype=args.dtype)
    scores = {name: reply_scores.make(model, name) for name in reply_scores.SCORES}
    score = scores[args.score]
    shipped = conclusions.read_pairs()
    ids = [
        tuple(
            model.encode([reply_scores.prompt_text(model, text)], True)["input_ids"][0].tolist()
            for text in (pair.clean, pair.corrupted)
        )
        for pair in shipped[: args.pairs]
    ]
    totals = Totals()
    for batch in sweeps.batches(ids):
        chosen = [ids[i] for i in batch]
        (prepared, prompts), ours_took = timed(our_prompts, model, chosen, scores, args.score)
        (peer_pairs, cleans, values), peer_took = timed(
            peer_prompts, model, chosen, scores, args.score
        )
        gaps = [clean - corrupted for clean, corrupted in (v[args.score] for v in values)]
        totals.add_prompts(ours_took, peer_took, prompts, values, gaps)
        references, peer_took = timed(
            peer_sweeps, peer_resid_sweep, model, peer_pairs, score, cleans
        )
        every, every_took = timed(sweeps.resid_sweep, model, prepared, score, prompts, True)
        totals.add("resid-all", every_took, peer_took, every, references, gaps)
        grids, ours_took = timed(sweeps.resid_sweep, model, prepared, score, prompts)
        totals.add("resid", ours_took, peer_took, grids, differing(prepared, references), gaps)
        grids, ours_took = timed(sweeps.head_sweep, model, prepared, score, prompts)
        references, peer_took = timed(
            peer_sweeps, peer_head_sweep, model, peer_pairs, score, cleans
        )
        totals.add("heads", ours_took, peer_took, grids, references, gaps)
    report(args, len(shipped), totals)


@dataclass
class Totals:
    """Seconds (ours, peer) and the largest difference (normalized by the pair's gap, raw)
    per step: the prompts (prefix, clean run, every score) and each level's sweep."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    worst: dict[str, list[float]] = field(default_factory=dict)
    smallest_gap: float = float("inf")

    def add(self, step: str, ours: float, peer: float, found, expected, gaps) -> None:
        seconds = self.seconds.setdefault(step, [0.0, 0.0])
        seconds[0] += ours
        seconds[1] += peer
        for a, b, gap in zip(found, expected, gaps, strict=True):
            raw = float((torch.as_tensor(a).float() - torch.as_tensor(b).float()).abs().max())
            worst = self.worst.setdefault(step, [0.0, 0.0])
            self.worst[step] = [max(worst[0], raw / abs(gap)), max(worst[1], raw)]
            self.smallest_gap = min(self.smallest_gap, abs(gap))

    def add_prompts(self, ours: float, peer: float, prompts, values, gaps) -> None:
        """Every score of both prompts, normalized by the swept score's gap."""
        found = [[p.values[name] for name in v] for p, v in zip(prompts, values, strict=True)]
        expected = [list(v.values()) for v in values]
        self.add("prompts", ours, peer, found, expected, gaps)


def report(args: argparse.Namespace, shipped: int, totals: Totals) -> None:
    n, threads = args.pairs, torch.get_num_threads()
    print(f"{args.model}, {n} pairs, {args.dtype}, {args.score} score, {threads} torch threads")
    print(f"  {'step':8} {'ours s':>8} {'peer s':>8} {'ratio':>6}  max |diff| normalized (raw)")
    for step, (ours, peer) in totals.seconds.items():
        normalized, raw = totals.worst[step]
        print(
            f"  {step:8} {ours:8.1f} {peer:8.1f} {peer / ours:6.2f}  {normalized:.1e} ({raw:.1e})"
        )
    scale = shipped / n
    kind = "actual" if n == shipped else "extrapolated"
    print(f"  smallest |gap| {totals.smallest_gap:.3f}")
    for label, left_out in (("differing + last", "resid-all"), ("every position", "resid")):
        chosen = [s for step, s in totals.seconds.items() if step != left_out]
        ours, peer = sum(s[0] for s in chosen), sum(s[1] for s in chosen)
        print(
            f"  all {shipped} pairs ({kind}), residual at {label}: ours "
            f"{ours * scale / 60:.1f} min ({ours / n:.2f} s/pair), peer "
            f"{peer * scale / 60:.1f} min ({peer / n:.2f} s/pair), ratio {peer / ours:.2f}"
        )


if __name__ == "__main__":
    main()
