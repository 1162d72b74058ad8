"""How warmly does the model start to reply? Two scores of a prompt, read from the logits.

Both read the reply the model is about to give: the position right after the prompt,
which is the chat template's assistant turn for instruct models and, for base models,
a plain prompt `"<sentence>\\nReply:"` whose reply tokens start with a space.

- `anchors` (the published score): at the first response position, the mean logit of
  the positive anchors' first tokens minus the mean logit of the negative anchors'
  first tokens. Each anchor is capitalised as a reply start ("happy" -> "Happy"), given
  the reply separator ("" in chat, " " after "Reply:"), tokenized, and only its first
  token kept; the first tokens are deduplicated within each side. Several anchors split
  into fragments on small tokenizers ("Wonderful" -> "W" in SmolLM2's), which is why the
  second score exists.
- `replies`: the teacher-forced log-probability of whole replies, summed over each
  reply's tokens, averaged over the warm replies minus averaged over the sympathetic
  ones. The replies were chosen by how well they separate good from bad news on the
  shipped pairs (see the README).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saefeatures.errors import SaefeaturesError
from saefeatures.models import LoadedModel

SCORES = ("anchors", "replies")
POSITIVE_ANCHORS = ("happy", "congratulations", "wonderful")
NEGATIVE_ANCHORS = ("okay", "noted", "fine")
WARM_REPLIES = ("Congratulations!", "That is wonderful news!", "That's great news!")
SYMPATHETIC_REPLIES = ("I am sorry to hear that.", "That is unfortunate.", "Oh no, I'm so sorry.")
BASE_REPLY_CUE = "Reply:"


@dataclass(frozen=True)
class Score:
    """A score as token continuations of the prompt and how their logits combine.

    Each prompt is run once per continuation (anchors: one empty continuation);
    `reduce` turns the logits kept at the last `keep` positions of those rows into one
    score per prompt. Rows come prompt-major: prompt i owns rows i*R .. i*R + R - 1.
    """

    name: str
    continuations: tuple[tuple[int, ...], ...]
    positive: tuple[int, ...]  # anchors: token ids; replies: continuation indices
    negative: tuple[int, ...]
    definition: str  # in words, with the exact tokens, for the store

    @property
    def keep(self) -> int:
        """Positions whose logits are needed: the prompt's last and each reply token's."""
        return max(len(c) for c in self.continuations) + 1

    @property
    def tokens(self) -> tuple[int, ...] | None:
        """The vocabulary columns `reduce` reads: the anchors' ids, positive then negative
        (a head need compute no others); None: all (replies take a log-softmax)."""
        return (*self.positive, *self.negative) if self.name == "anchors" else None

    def reduce(self, kept: torch.Tensor) -> torch.Tensor:
        """[prompts * R, keep, tokens] logits (all of the vocabulary, or `tokens`) ->
        [prompts] scores."""
        kept = kept.float()
        if self.name == "anchors":
            first, n = kept[:, 0], len(self.positive)
            return first[:, :n].mean(-1) - first[:, n:].mean(-1)
        width = self.keep - 1
        targets = torch.tensor([[*c, *[0] * (width - len(c))] for c in self.continuations])
        real = torch.tensor([[j < len(c) for j in range(width)] for c in self.continuations])
        # Kept position j predicts the continuation's token j.
        logprobs = torch.log_softmax(kept[:, :width], dim=-1).view(
            -1, *targets.shape, kept.shape[-1]
        )
        # One index per prompt: gather does not broadcast, a [1, ...] index reads prompt 0 only.
        index = targets.to(kept.device)[None, ..., None].expand(len(logprobs), -1, -1, -1)
        picked = logprobs.gather(-1, index).squeeze(-1)
        totals = (picked * real.to(kept.device)).sum(-1)
        return totals[:, list(self.positive)].mean(-1) - totals[:, list(self.negative)].mean(-1)


def reply_separator(model: LoadedModel) -> str:
    """Chat replies start a fresh turn; a base model's reply follows "Reply:" after a space."""
    return "" if model.is_chat else " "


def prompt_text(model: LoadedModel, sentence: str) -> str:
    """The sentence as a user turn (instruct) or as `sentence\\nReply:` (base)."""
    return model.format_prompt(sentence, "" if model.is_chat else BASE_REPLY_CUE)


def _tokens(model: LoadedModel, text: str, kind: str) -> list[int]:
    ids = model.tokenizer(reply_separator(model) + text.strip(), add_special_tokens=False)
    ids = ids["input_ids"]
    if not text.strip() or not ids:
        raise SaefeaturesError(f"the {kind} {text!r} tokenizes to nothing; give a non-empty word")
    return ids


def anchor_score(
    model: LoadedModel,
    positive: tuple[str, ...] = POSITIVE_ANCHORS,
    negative: tuple[str, ...] = NEGATIVE_ANCHORS,
) -> Score:
    """Mean first-token logit of the capitalised positive anchors minus the negative ones'."""

    def first_tokens(words: tuple[str, ...]) -> tuple[int, ...]:
        firsts = [_tokens(model, w.strip()[:1].upper() + w.strip()[1:], "anchor")[0] for w in words]
        return tuple(dict.fromkeys(firsts))

    pos, neg = first_tokens(positive), first_tokens(negative)
    shared = set(pos) & set(neg)
    if not pos or not neg or shared:
        raise SaefeaturesError(
            "positive and negative anchors need at least one word each and must not share a "
            f"first token (shared: {[model.tokenizer.decode([t]) for t in shared]})"
        )
    shown = lambda ids: [model.tokenizer.decode([t]) for t in ids]  # noqa: E731
    definition = f"mean first-response-position logit of {shown(pos)} minus that of {shown(neg)}"
    return Score("anchors", ((),), pos, neg, definition)


def replies_score(
    model: LoadedModel,
    warm: tuple[str, ...] = WARM_REPLIES,
    sympathetic: tuple[str, ...] = SYMPATHETIC_REPLIES,
) -> Score:
    """Mean teacher-forced log P(warm reply) minus mean log P(sympathetic reply)."""
    replies = tuple(tuple(_tokens(model, text, "reply")) for text in (*warm, *sympathetic))
    definition = f"mean log P(reply) of {list(warm)} minus that of {list(sympathetic)}"
    warm_rows, sympathetic_rows = range(len(warm)), range(len(warm), len(replies))
    return Score("replies", replies, tuple(warm_rows), tuple(sympathetic_rows), definition)


def make(model: LoadedModel, name: str) -> Score:
    if name == "anchors":
        return anchor_score(model)
    if name == "replies":
        return replies_score(model)
    raise SaefeaturesError(f"unknown score {name!r}; use one of {', '.join(SCORES)}")
