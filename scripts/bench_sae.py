"""Benchmark: SAE training from one forward pass per batch against SAELens' own runner.

In one run, on identical tokens (rows of the offline default text, cut by
saefeatures) and an identical SAE config (the model's preset: TopK, its d_sae,
k, lr, batch sizes), each measurement in its own subprocess so that its peak
memory is its own:

- ours, 4 layers from one pass  vs  SAELens' `LanguageModelSAETrainingRunner` once per layer
- ours, 1 layer                 vs  SAELens' runner on that layer
- what bfloat16 harvesting and stopping the forward after the last layer each
  contribute (ours with a float32 harvest; ours with a full forward).

SAELens' runner cannot load a local model as a `HookedTransformer` offline
(`HookedTransformer.from_pretrained` only knows official model names, and the
embedded model is a local folder), so it runs through its own
`model_class_name="AutoModelForCausalLM"` route (`HookedProxyLM`, hook
`model.layers.{L}` = the residual stream after layer L, which stops the forward
after that layer too), with the model in the same dtype as our harvest and
the tokens given as a pre-tokenized dataset. Times exclude model loading.

Measured on a 2-core CPU with native bfloat16 (smollm2-135m-instruct, layers 4,8,10,12,
65,536 tokens = 16 steps of 4,096, TopK d_sae 9,216, k 32, bf16 harvest, bf16 autocast
in both steps): ours 4 layers 71.4 s (the language model 58 % of it); SAELens' runner
50.1 + 68.9 + 70.6 + 78.1 = 267.7 s -> 3.75x; layer 10 alone: ours 38.9 s vs 70.6 s ->
1.81x; float32 harvest 1.85x slower, full forward 1.76x slower (whole runs). Held-out EV
per layer equal within 0.011 between the two (16 steps train little: 0.00-0.11 here;
the check is that both pipelines train the same SAE, not a good one).

    python scripts/bench_sae.py [--model smollm2-135m-instruct] [--layers 4,8,10,12]
                                [--single 10] [--tokens 65536]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def rows_for(model_name: str, tokens: int, context: int) -> torch.Tensor:
    from saefeatures import models
    from saefeatures.corpora import training_text

    tokenizer = models.load_tokenizer(model_name)
    data = training_text.prepare(None, tokenizer, context, 0.02)
    # Twice the rows one pass needs, plus two shuffle buffers: SAELens' norm estimation
    # and its mixing buffer draw more than they train on, and its store does not cycle.
    n = -(-tokens // context) * 2 + 2 * 256
    return torch.from_numpy(data.train[:n])


def held_out_ev(model, sae, layer: int, context: int, rows: int = 32) -> float:
    """Explained variance of a trained SAE on held-out text's activations at `layer`
    (special tokens left out): the same measure for both pipelines' SAEs."""
    from saefeatures import activations
    from saefeatures.corpora import training_text

    data = training_text.prepare(None, model.tokenizer, context, 0.02)
    ids = torch.from_numpy(data.held_out[:rows]).long()
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    x = activations.harvest(model, batch, [layer])[layer].float()
    x = x[~torch.isin(ids, torch.tensor(data.special, dtype=torch.long))]
    with torch.no_grad():
        recon = sae.decode(sae.encode(x.to(sae.W_dec.device)))
    return float(1 - (x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def bench_config(model_name: str, tokens: int, dtype: str):
    from saefeatures import models
    from saefeatures.sae import config as sae_config

    spec = models.resolve(model_name)
    cfg, _ = sae_config.load(
        None,
        spec.slug,
        {"training_tokens": tokens, "dtype": dtype, "b_dec_init": "zeros", "lr_decay_fraction": 0},
    )
    return cfg


def ours(args: argparse.Namespace, layers: list[int], dtype: str, stop_early: bool) -> dict:
    from saefeatures import activations, models
    from saefeatures.corpora.training_text import special_ids
    from saefeatures.sae.provider import ActivationSource
    from saefeatures.sae.training import Coordinator

    cfg = bench_config(args.model, args.tokens, dtype)
    model = models.load(args.model, dtype=dtype)
    rows = rows_for(args.model, args.tokens, cfg.context_size).numpy()
    if not stop_early:
        real = activations.harvest

        def full_forward(model, batch, wanted, site="resid_post"):
            """The same capture, but the forward runs to the logits (no early stop)."""
            captured = {}

            def keep(layer):
                def hook(act, hook):
                    captured[layer] = act.detach()
                    return act

                return hook

            hooks = [(activations.hook_name(layer, site), keep(layer)) for layer in wanted]
            with torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks):
                model.bridge(batch["input_ids"], attention_mask=batch["attention_mask"])
            return captured

        activations.harvest = full_forward
    source = ActivationSource(
        rows,
        layers,
        cfg.hook,
        cfg.buffer_batches * cfg.lm_batch_size,
        cfg.lm_batch_size,
        tuple(special_ids(model.tokenizer)),
        cfg.exclude_special_tokens,
        lambda: model,
    )
    hooks = {layer: activations.hook_name(layer, cfg.hook) for layer in layers}
    with tempfile.TemporaryDirectory() as run_dir:
        coordinator = Coordinator(cfg, source, hooks, model.d_model, Path(run_dir))
        start = time.perf_counter()
        result = coordinator.train(progress=False)
        seconds = time.perf_counter() - start
    if not stop_early:
        activations.harvest = real
    return {
        "seconds": seconds,
        "tokens": result.steps * cfg.train_batch_size,
        "lm_seconds": result.lm_seconds,
        "ev": [
            round(held_out_ev(model, run.sae, layer, cfg.context_size), 4)
            for layer, run in sorted(result.layers.items())
        ],
    }


def saelens_runner(args: argparse.Namespace, layer: int, dtype: str) -> dict:
    import datasets
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner
    from sae_lens.config import LoggingConfig
    from sae_lens.saes import TopKTrainingSAEConfig

    from saefeatures import models

    cfg = bench_config(args.model, args.tokens, dtype)
    spec = models.resolve(args.model)
    location = models.convert(spec) if spec.source == "embedded" else spec.reference
    rows = rows_for(args.model, args.tokens, cfg.context_size)
    dataset = datasets.Dataset.from_dict({"input_ids": rows.tolist()})
    d_in = models.shape_of(models.resolve(args.model))["d_model"]
    with tempfile.TemporaryDirectory() as out:
        runner_cfg = LanguageModelSAERunnerConfig(
            sae=TopKTrainingSAEConfig(
                d_in=d_in,
                d_sae=cfg.width(d_in),
                k=int(cfg.k),
                aux_loss_coefficient=cfg.aux_loss_coefficient,
                normalize_activations=cfg.normalize_activations,
            ),
            model_name=str(location),
            model_class_name="AutoModelForCausalLM",
            model_from_pretrained_kwargs={"dtype": dtype},
            hook_name=f"model.layers.{layer}",
            dataset_path="",
            is_dataset_tokenized=True,
            streaming=False,
            context_size=cfg.context_size,
            training_tokens=cfg.total_steps * cfg.train_batch_size,
            store_batch_size_prompts=cfg.lm_batch_size,
            # SAELens sizes its mixing buffer as n_batches_in_buffer * context_size tokens
            n_batches_in_buffer=cfg.buffer_tokens // cfg.context_size,
            train_batch_size_tokens=cfg.train_batch_size,
            lr=cfg.lr,
            lr_end=cfg.lr / 10,
            autocast=cfg.autocast,
            dead_feature_window=cfg.dead_feature_window,
            exclude_special_tokens=cfg.exclude_special_tokens,
            n_batches_for_norm_estimate=max(1, cfg.buffer_tokens // cfg.train_batch_size),
            device="cpu",
            dtype="float32",
            seed=cfg.seed,
            checkpoint_path=None,
            output_path=out,
            logger=LoggingConfig(log_to_wandb=False),
        )
        runner = LanguageModelSAETrainingRunner(runner_cfg, override_dataset=dataset)
        model_dtype = str(next(runner.model.parameters()).dtype)
        start = time.perf_counter()
        sae = runner.run()
        seconds = time.perf_counter() - start
    tokens = cfg.total_steps * cfg.train_batch_size
    ev = held_out_ev(models.load(args.model, dtype=dtype), sae, layer, cfg.context_size)
    return {"seconds": seconds, "tokens": tokens, "model_dtype": model_dtype, "ev": [round(ev, 4)]}


def child(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    layers = [int(x) for x in args.layers.split(",") if x]
    kind, _, dtype = args.variant.partition(":")
    if kind == "ours":
        result = ours(args, layers, dtype, stop_early=True)
    elif kind == "ours-full-forward":
        result = ours(args, layers, dtype, stop_early=False)
    elif kind == "ours-single":
        result = ours(args, [args.single], dtype, stop_early=True)
    elif kind == "saelens":
        result = saelens_runner(args, args.single, dtype)
    else:
        raise SystemExit(f"unknown variant {args.variant}")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def run_child(args: argparse.Namespace, variant: str, layers: str, single: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--variant",
        variant,
        "--model",
        args.model,
        "--layers",
        layers,
        "--single",
        str(single),
        "--tokens",
        str(args.tokens),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"error": f"{variant} failed (exit {done.returncode}): {tail}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layers", default="4,8,10,12")
    parser.add_argument("--single", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=65536)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    layers = [int(x) for x in args.layers.split(",")]
    print(
        f"model {args.model}, layers {layers}, {args.tokens:,} training tokens per SAE, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    results = {}
    for name, variant in (
        ("ours 4 layers, bf16, early stop", "ours:bfloat16"),
        ("ours 4 layers, fp32 harvest", "ours:float32"),
        ("ours 4 layers, full forward", "ours-full-forward:bfloat16"),
        (f"ours layer {args.single}", "ours-single:bfloat16"),
    ):
        results[name] = run_child(args, variant, args.layers, args.single)
        print(f"  {name}: {results[name]}", flush=True)
    for layer in layers:
        name = f"SAELens runner layer {layer}"
        results[name] = run_child(args, "saelens:bfloat16", "", layer)
        print(f"  {name}: {results[name]}", flush=True)
    print(f"{'measurement':40} {'seconds':>8} {'tok/s':>8} {'peak MB':>8}")
    for name, result in results.items():
        if "error" in result:
            print(f"{name:40} {result['error']}")
            continue
        rate = result["tokens"] / result["seconds"]
        print(f"{name:40} {result['seconds']:8.1f} {rate:8.0f} {result['peak_rss_mb']:8.0f}")
    ok = [r for r in results.values() if "error" not in r]
    if len(ok) != len(results):
        print("some measurements failed; ratios need all of them")
        return
    multi = results["ours 4 layers, bf16, early stop"]["seconds"]
    runner_total = sum(results[f"SAELens runner layer {layer}"]["seconds"] for layer in layers)
    single = results[f"ours layer {args.single}"]["seconds"]
    runner_single = results[f"SAELens runner layer {args.single}"]["seconds"]
    print(f"4 layers: SAELens runner x{len(layers)} / ours one pass = {runner_total / multi:.2f}x")
    print(f"1 layer: SAELens runner / ours = {runner_single / single:.2f}x")
    fp32 = results["ours 4 layers, fp32 harvest"]["seconds"]
    full = results["ours 4 layers, full forward"]["seconds"]
    print(f"bfloat16 harvest: {fp32 / multi:.2f}x faster than float32 (whole training run)")
    print(f"early stop: {full / multi:.2f}x faster than the full forward (whole training run)")
    lm = results["ours 4 layers, bf16, early stop"]["lm_seconds"]
    print(f"the language model is {lm / multi:.0%} of our 4-layer run, the SAE steps the rest")
    print("held-out explained variance per layer, same tokens and config:")
    ours_ev = results["ours 4 layers, bf16, early stop"]["ev"]
    print(f"  ours one pass: {dict(zip(layers, ours_ev, strict=True))}")
    runner_ev = {layer: results[f"SAELens runner layer {layer}"]["ev"][0] for layer in layers}
    print(f"  SAELens runner: {runner_ev}")


if __name__ == "__main__":
    main()
