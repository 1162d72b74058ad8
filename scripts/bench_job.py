"""The job's speed-ups, each against the peer doing the same work in the same run.

- Hooks: one patching forward with a hook on every layer, through `LoadedModel.hooks`
  (hook points looked up once per model) against TransformerLens' `bridge.hooks`.
- Steering generations: every lever's greedy continuation in one batch on a key-value
  cache (`steering.generate`) against one row at a time, recomputed in full each step,
  as TransformerLens' hooked forwards run it. The texts must be equal.
- Story writing: HF `generate` on the plain model (`models.load(hooks=False)`) against
  the same call on the bridged model, same prompts and seed.
- Letter read-outs (behaviour, preferences): A and B's logits from the head's two columns
  (`choices.letter_logits`) against the bridge's full head at the same last positions
  (`logits_to_keep`). The logits must agree to float32 rounding.

Run: python scripts/bench_job.py [--model M] [--dtype D]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from saefeatures import activations, interventions, models, steering
from saefeatures.corpora import stories
from saefeatures.validation import behaviour, choices


def timed(work: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def per_call(work: Callable[[], object], repeats: int = 5) -> float:
    work()  # warm-up
    return timed(lambda: [work() for _ in range(repeats)])[0] / repeats


def hooks(model: models.LoadedModel) -> tuple[float, float]:
    ids = model.encode(["The news arrived this morning."])["input_ids"].repeat(model.n_layers, 1)
    hooked = [
        (activations.hook_name(layer), lambda act, hook: act) for layer in range(model.n_layers)
    ]

    def forward(context: Callable) -> Callable[[], object]:
        def run() -> None:
            with torch.no_grad(), context(hooked):
                model.hf_model(ids, logits_to_keep=1)

        return run

    ours = per_call(forward(model.hooks))
    theirs = per_call(forward(lambda hooked: model.bridge.hooks(fwd_hooks=hooked)))
    return ours, theirs


def generation(model: models.LoadedModel, tokens: int = 24) -> tuple[float, float, bool]:
    prompt = model.format_prompt(steering.QUESTION, steering.ANSWER)
    layer = model.n_layers // 3
    generator = torch.Generator().manual_seed(0)
    edits = [None] + [
        interventions.Direction(torch.randn(model.d_model, generator=generator), 0.1, 100.0)
        for _ in range(16)
    ]
    ours, batched = timed(lambda: steering.generate(model, prompt, tokens, layer, edits))
    theirs, alone = timed(lambda: [_one_row(model, prompt, tokens, layer, e) for e in edits])
    return ours, theirs, batched == alone


@torch.no_grad()
def _one_row(model, prompt, tokens, layer, edit) -> list[int]:
    ids = model.encode([prompt], chat_formatted=True)["input_ids"]
    start = ids.shape[1]
    steered = [] if edit is None else [interventions.Intervention.at(layer, edit)]
    with interventions.applied(model, steered):
        for _ in range(tokens):
            following = model.bridge(ids)[0, -1].argmax()
            if int(following) == model.tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, following.view(1, 1)], dim=1)
    return ids[0, start:].tolist()


def story_sampling(bridged: models.LoadedModel, plain: models.LoadedModel) -> tuple[float, float]:
    prompts = [
        bridged.format_prompt(stories.PROMPT.format(topic="a job interview", emotion=emotion))
        for emotion in ("happy", "sad", "afraid", "calm") * 8
    ]
    options = stories.StoryOptions(bridged.name, max_new_tokens=120)
    ours, _ = timed(lambda: stories.sample(plain, prompts, options, 0))
    theirs, _ = timed(lambda: stories.sample(bridged, prompts, options, 0))
    return ours, theirs


def letter_reads(model: models.LoadedModel, scenarios: int = 12) -> tuple[float, float, float]:
    shown = behaviour.presentations(behaviour.read_scenarios()[:scenarios])
    rows = [choices.encode(model, choices.answer_prompt(model, s.question())) for s in shown]
    ours, columns = timed(lambda: choices.letter_logits(model, rows, 8))
    theirs, full = timed(lambda: _letters_from_the_full_head(model, rows, 8))
    return ours, theirs, float(np.abs(columns - full).max())


@torch.no_grad()
def _letters_from_the_full_head(model, rows, batch_size) -> np.ndarray:
    letters = choices.letter_ids(model)
    found = np.zeros((len(rows), 2))
    by_length = np.argsort([len(row.ids) for row in rows], kind="stable")
    for start in range(0, len(rows), batch_size):
        chunk = by_length[start : start + batch_size].tolist()
        batch = choices.pad(model, [rows[i] for i in chunk])
        kept = torch.unique(batch.last)
        logits = model.bridge(batch.ids, attention_mask=batch.mask, logits_to_keep=kept)
        final = logits[torch.arange(len(chunk)), torch.searchsorted(kept, batch.last)]
        found[chunk] = final[:, letters].float().numpy()
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    model = models.load(args.model, dtype=args.dtype)
    print(f"{args.model}, {args.dtype}, {torch.get_num_threads()} threads")
    ours, theirs = hooks(model)
    print(
        f"  hooks on every layer, one forward: ours {ours * 1e3:.1f} ms, "
        f"bridge.hooks {theirs * 1e3:.1f} ms, ratio {theirs / ours:.2f}x"
    )
    ours, theirs, same = generation(model)
    print(
        f"  17 steered greedy generations of 24 tokens: batched + cache {ours:.1f} s, "
        f"row by row recomputed {theirs:.1f} s, ratio {theirs / ours:.1f}x, "
        f"same texts: {same}"
    )
    ours, theirs, gap = letter_reads(model)
    print(
        f"  A/B logits of 24 behaviour prompts: head columns {ours:.1f} s, full head "
        f"{theirs:.1f} s, ratio {theirs / ours:.2f}x, largest difference {gap:.1e}"
    )
    if model.is_chat:
        plain = models.load(args.model, dtype=args.dtype, hooks=False)
        ours, theirs = story_sampling(model, plain)
        print(
            f"  32 stories of 120 tokens: plain model {ours:.1f} s, bridged {theirs:.1f} s, "
            f"ratio {theirs / ours:.2f}x"
        )


if __name__ == "__main__":
    main()
