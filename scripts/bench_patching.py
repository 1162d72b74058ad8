"""Our batched residual sweep against TransformerLens' `get_act_patch_resid_pre`.

Both patch clean resid_pre into the corrupted run at every (layer, position) of the same
pairs on the same model and score; the script checks that they agree and prints both
times and their ratio (target: ours at least 3x faster).
Run: python scripts/bench_patching.py [--model M] [--pairs N] [--dtype D]
"""

from __future__ import annotations

import argparse
import time

import torch
import transformer_lens.patching as tl_patching

from saefeatures import models
from saefeatures.patching import conclusions, reply_scores, sweeps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    model = models.load(args.model, dtype=args.dtype)
    score = reply_scores.anchor_score(model)
    ours_seconds = theirs_seconds = 0.0
    worst = 0.0
    for pair in conclusions.read_pairs()[: args.pairs]:
        clean_ids, corrupted_ids = (
            model.encode([reply_scores.prompt_text(model, text)], True)["input_ids"][0].tolist()
            for text in (pair.clean, pair.corrupted)
        )
        start = time.perf_counter()
        prepared = sweeps.prepare(model, clean_ids, corrupted_ids)
        clean = sweeps.clean_run(model, prepared, score, heads=False)
        corrupted = sweeps.prompt_score(model, prepared, prepared.corrupted, score)
        grid = sweeps.resid_sweep(model, prepared, score, clean)
        ours_seconds += time.perf_counter() - start

        start = time.perf_counter()
        _, cache = model.bridge.run_with_cache(torch.tensor([clean_ids]))
        theirs = tl_patching.get_act_patch_resid_pre(
            model.bridge,
            torch.tensor([corrupted_ids]),
            cache,
            lambda logits: score.reduce(logits[:, -1:])[0],
        )
        theirs_seconds += time.perf_counter() - start
        if prepared.aligned:
            gap = clean.score - corrupted
            ours = (grid.float() - corrupted) / gap
            reference = (theirs[:, prepared.prefix_length :].float() - corrupted) / gap
            worst = max(worst, float((ours - reference).abs().max()))
    print(
        f"{args.model}, {args.pairs} pairs, {args.dtype}: residual sweep (every layer x position)"
    )
    print(f"  ours (batched, shared prefix cached):  {ours_seconds:8.1f} s")
    print(f"  TransformerLens get_act_patch_resid_pre: {theirs_seconds:8.1f} s")
    print(f"  ratio: {theirs_seconds / ours_seconds:.1f}x; max |normalized difference| {worst:.2e}")


if __name__ == "__main__":
    main()
