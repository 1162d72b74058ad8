"""How well does each candidate reply, and each score, separate good from bad news?

For every shipped pair and every candidate reply: how much more likely the reply is
than the neutral reply "Okay." after the clean prompt than after the corrupted one,
[log P(reply) - log P(Okay.)](clean) - [same](corrupted), and the AUROC of that gap
between good and bad news (1: higher after every good news than after any bad news;
0.5: no separation). Then the
two scores of `reply_scores` (anchors and the chosen replies) with their AUROC and sign
accuracy. Run: python scripts/choose_replies.py [--model M] [--dtype D] [--skip N] [--limit N]
"""

from __future__ import annotations

import argparse

import numpy as np

from saefeatures import models
from saefeatures.alignment.measures import auroc
from saefeatures.patching import conclusions, reply_scores, sweeps

CANDIDATES = {
    "warm": (
        "Congratulations!",
        "That is wonderful news!",
        "That's great news!",
        "I'm so happy for you!",
        "Well done!",
        "How exciting!",
    ),
    "sympathetic": (
        "I am sorry to hear that.",
        "That is unfortunate.",
        "Oh no, I'm so sorry.",
        "That must be hard.",
        "I'm sorry.",
        "That sounds difficult.",
    ),
}
NEUTRAL = "Okay."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="first N situations")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first N situations")
    args = parser.parse_args()
    model = models.load(args.model, dtype=args.dtype)
    pairs = conclusions.read_pairs()
    if args.skip:
        chosen_on = {pair.id for pair in conclusions.first_situations(pairs, args.skip)}
        pairs = [pair for pair in pairs if pair.id not in chosen_on]
    pairs = conclusions.first_situations(pairs, args.limit)
    good = np.array([pair.condition == "good" for pair in pairs])
    candidates = [text for group in CANDIDATES.values() for text in group]
    scores = {text: reply_scores.replies_score(model, (text,), (NEUTRAL,)) for text in candidates}
    scores |= {name: reply_scores.make(model, name) for name in reply_scores.SCORES}
    gaps = {name: [] for name in scores}
    for pair in pairs:
        ids = [
            model.encode([reply_scores.prompt_text(model, text)], chat_formatted=True)["input_ids"][
                0
            ].tolist()
            for text in (pair.clean, pair.corrupted)
        ]
        prepared = sweeps.prepare(model, *ids)
        for name, score in scores.items():
            clean = sweeps.prompt_score(model, prepared, prepared.clean, score)
            corrupted = sweeps.prompt_score(model, prepared, prepared.corrupted, score)
            gaps[name].append(clean - corrupted)
    print(f"{args.model}: AUROC of the clean - corrupted gap, good vs bad news")
    for name, values in gaps.items():
        values = np.array(values)
        signs = conclusions.sign_summary(["good" if g else "bad" for g in good], values)
        print(
            f"  {name:28s} AUROC {auroc(values, good):.3f}  "
            + "  ".join(
                f"{c} {s['right']}/{s['n']} mean {s['mean']:+.2f}" for c, s in signs.items()
            )
        )


if __name__ == "__main__":
    main()
