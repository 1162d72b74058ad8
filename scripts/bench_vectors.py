"""Benchmark: vector extraction (one partial forward feeds every layer) against two peers.

In one run, on the same passages, batches and dtype: our `extraction.pool_passages`
over every layer; a per-layer loop (one forward per layer, each with a single
hook, as a script written layer by layer would do); and the plain HF forward
with `output_hidden_states=True`, pooled the same way. Prints passages/s,
tokens/s, ratios, and the largest difference between our vectors and HF's.

    python scripts/bench_vectors.py [--model smollm2-135m-instruct] [--passages 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from saefeatures import models
from saefeatures.corpora import catalog
from saefeatures.vectors import extraction


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


@torch.no_grad()
def hf_pooled(model: models.LoadedModel, texts: list[str], offset: int, batch_size: int):
    """The same pooling on `output_hidden_states` of the plain HF forward."""
    out = []
    for start in range(0, len(texts), batch_size):
        batch = model.tokenizer(
            texts[start : start + batch_size], return_tensors="pt", padding=True
        )
        hidden = model.hf_model(**batch, output_hidden_states=True).hidden_states[1:]
        weights = extraction.pooling_weights(batch["attention_mask"], offset)
        stacked = torch.stack([h.float() for h in hidden], dim=1)
        out.append(torch.einsum("blpd,bp->bld", stacked, weights) / weights.sum(1)[:, None, None])
    return torch.cat(out).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--offset", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    model = models.load(args.model, dtype=args.dtype)
    texts = [p.text for p in catalog.builtin_passages("templates")][: args.passages]
    # Equal lengths within a batch for the HF peer, so its pooling needs no re-ordering.
    texts.sort(key=lambda text: len(model.tokenizer(text)["input_ids"]))
    layers = list(range(model.n_layers))
    n_tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])

    ours, ours_s = timed(
        lambda: extraction.pool_passages(model, texts, layers, args.offset, args.batch_size)
    )
    _, loop_s = timed(
        lambda: [
            extraction.pool_passages(model, texts, [layer], args.offset, args.batch_size)
            for layer in layers
        ]
    )
    theirs, hf_s = timed(lambda: hf_pooled(model, texts, args.offset, args.batch_size))

    print(
        f"{args.model}, {args.dtype}, {len(texts)} passages, {n_tokens} tokens, "
        f"all {len(layers)} layers"
    )
    print(f"{'method':34s} {'seconds':>8s} {'passages/s':>11s} {'tokens/s':>9s} {'ours is':>8s}")
    for name, seconds in (
        ("ours: one partial forward", ours_s),
        ("per-layer hook loop", loop_s),
        ("plain HF output_hidden_states", hf_s),
    ):
        print(
            f"{name:34s} {seconds:8.2f} {len(texts) / seconds:11.1f} {n_tokens / seconds:9.0f} "
            f"{seconds / ours_s:7.2f}x"
        )
    # HF's last hidden state is taken after the final norm, so compare the layers before it.
    diff = np.abs(ours.means[:, :-1] - theirs[ours.kept][:, :-1]).max()
    scale = np.abs(theirs[:, :-1]).max()
    print(f"largest |ours - HF| (layers 0..{layers[-2]}): {diff:.3g}, largest value {scale:.3g}")


if __name__ == "__main__":
    main()
