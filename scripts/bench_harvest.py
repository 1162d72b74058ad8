"""Benchmark: all-layer residual harvest through the bridge against plain Hugging Face.

Prints, on the same batches in one run: tokens/s of `activations.harvest` over
every layer and of the plain HF forward with `output_hidden_states=True`, in
float32 and bfloat16; the machine's matmul GFLOP/s in both dtypes; the share
of that peak the harvest reaches; and cold (converting) and warm (cached) load
times of the embedded models.

    python scripts/bench_harvest.py [--model smollm2-135m-instruct] [--batch 16] [--seq 128]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from saefeatures import activations, models
from saefeatures.config import CACHE_ENV, project_data


def best_of(fn, repeats: int) -> float:
    """The fastest of `repeats` timed calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    seconds = best_of(lambda: a @ b, 5)
    return 2 * n**3 / seconds / 1e9


def sample_batch(model: models.LoadedModel, batch: int, seq: int) -> dict[str, torch.Tensor]:
    """Real text from the project's corpora, cut to exactly `seq` tokens per row."""
    lines = (project_data("corpora") / "templates.jsonl").read_text().splitlines()
    text = " ".join(json.loads(line)["text"] for line in lines)
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = torch.tensor(ids[: batch * seq]).view(batch, seq)
    return {"input_ids": rows, "attention_mask": torch.ones_like(rows)}


def harvest_rates(name: str, dtype: str, batch: int, seq: int) -> dict[str, float]:
    model = models.load(name, dtype=dtype)
    inputs = sample_batch(model, batch, seq)
    layers = range(model.n_layers)
    hf = model.hf_model
    with torch.no_grad():
        bridge_s = best_of(lambda: activations.harvest(model, inputs, layers), 3)
        hf_s = best_of(lambda: hf(**inputs, output_hidden_states=True), 3)
    tokens = batch * seq
    # Forward FLOPs of the blocks only (what a harvest computes): 2 per weight per token,
    # plus attention scores and mixing (2 * 2 * seq * d_attn per token per layer).
    block_params = sum(p.numel() for n, p in hf.named_parameters() if ".layers." in n)
    d_attn = model.n_heads * hf.config.head_dim if hasattr(hf.config, "head_dim") else model.d_model
    flops = tokens * (2 * block_params + model.n_layers * 4 * seq * d_attn)
    return {
        "bridge_tok_s": tokens / bridge_s,
        "hf_tok_s": tokens / hf_s,
        "bridge_gflops": flops / bridge_s / 1e9,
    }


def load_times(name: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = cache
        try:
            start = time.perf_counter()
            models.load(name)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            models.load(name)
            warm = time.perf_counter() - start
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV)
            else:
                os.environ[CACHE_ENV] = previous
    return {"cold_s": cold, "warm_s": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--skip-load", action="store_true", help="skip the cold/warm load timing")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak = {dtype: matmul_gflops(models.DTYPES[dtype]) for dtype in models.DTYPES}
    for dtype, gflops in peak.items():
        print(f"matmul 2048^3 {dtype:9s}: {gflops:8.1f} GFLOP/s")

    rates = {
        dtype: harvest_rates(args.model, dtype, args.batch, args.seq) for dtype in models.DTYPES
    }
    print(f"\nall-layer resid_post harvest, {args.model}, batch {args.batch} x {args.seq} tokens")
    print(
        f"{'dtype':9s} {'bridge tok/s':>13s} {'HF tok/s':>10s} {'bridge/HF':>9s} {'% of peak':>9s}"
    )
    for dtype, rate in rates.items():
        print(
            f"{dtype:9s} {rate['bridge_tok_s']:13.0f} {rate['hf_tok_s']:10.0f} "
            f"{rate['bridge_tok_s'] / rate['hf_tok_s']:9.2f} "
            f"{100 * rate['bridge_gflops'] / peak[dtype]:8.1f}%"
        )
    speedup = rates["bfloat16"]["bridge_tok_s"] / rates["float32"]["bridge_tok_s"]
    print(f"bfloat16 / float32 harvest speed: {speedup:.2f}x")

    if not args.skip_load:
        print("\nload times (cold = de-quantize GGUF into an empty cache; warm = from the cache)")
        for name in models.EMBEDDED:
            times = load_times(name)
            print(f"{name:24s} cold {times['cold_s']:6.1f} s   warm {times['warm_s']:5.1f} s")


if __name__ == "__main__":
    main()
