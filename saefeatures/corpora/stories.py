"""Model-written emotion stories: the original study's way of making an emotion corpus.

An instruct model is asked, per emotion and topic, for a short story that
conveys the emotion without naming it. The jobs (emotion, topic, story) are
cut into fixed batches in a fixed order, and batch `b` samples with seed
`seed + b`; each finished batch is committed on its own, so an interrupted
run resumes at the first unfinished batch and still gives the same stories as
an uninterrupted one.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

import pyarrow as pa
import torch

from saefeatures import models, progress
from saefeatures.config import project_data
from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.options import StoryOptions, read_lines
from saefeatures.store.database import Store

PROMPT = (
    "Write a short story of about 120 words. Topic: {topic}. The main character is "
    "feeling {emotion}. Never use the word '{emotion}' or a synonym of it: show the "
    "feeling only through actions, body language, dialogue, thoughts and the situation. "
    "Write only the story."
)
MIN_WORDS = 25
MIN_DISTINCT_4GRAMS = 0.6  # below this share of distinct word 4-grams a story is a loop


@dataclass(frozen=True)
class Job:
    index: int
    emotion: str
    topic: str
    story: int


def topics(n: int) -> list[str]:
    shipped = read_lines(project_data("corpora") / "topics.txt")
    if not 1 <= n <= len(shipped):
        raise SaefeaturesError(f"--topics must be between 1 and {len(shipped)}, got {n}")
    return shipped[:n]


def jobs(
    emotions: list[str], chosen_topics: list[str], per_topic: int, first: int = 0
) -> list[Job]:
    """One job per (emotion, topic, story), numbered from `first`."""
    cells = [(e, t, s) for e in emotions for t in chosen_topics for s in range(per_topic)]
    return [Job(first + i, e, t, s) for i, (e, t, s) in enumerate(cells)]


def top_up_jobs(
    kept: dict[str, int], wanted: int, chosen_topics: list[str], round_: int, first: int
) -> list[Job]:
    """Round `round_` of top-ups: one new job per missing story of each emotion below
    `wanted`, on its topics in turn, numbered from `first`."""
    cells = []
    for emotion, have in kept.items():
        for missing in range(max(0, wanted - have)):
            topic = chosen_topics[(round_ + missing) % len(chosen_topics)]
            cells.append((emotion, topic, 1000 * round_ + missing))
    return [Job(first + i, e, t, s) for i, (e, t, s) in enumerate(cells)]


def clean(text: str, emotion: str) -> tuple[str | None, str]:
    """The story without title lines or a cut-off last sentence, or None and why it was dropped."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not re.match(r"^(title|story)\b.*:", line, re.IGNORECASE)]
    story = " ".join(lines).strip().strip('"')
    last_stop = max(story.rfind(mark) for mark in '.!?"')
    if last_stop > 0:
        story = story[: last_stop + 1]
    if re.search(_word_family(emotion), story, re.IGNORECASE):
        return None, "named the emotion"
    words = story.lower().split()
    if len(words) < MIN_WORDS:
        return None, "too short"
    grams = list(zip(words, words[1:], words[2:], words[3:], strict=False))
    if len(set(grams)) < MIN_DISTINCT_4GRAMS * len(grams):
        return None, "repetitive"
    return story, "kept"


def _word_family(emotion: str) -> str:
    """The emotion word and its derived forms (happy: happiness, happily; sad: sadness)."""
    stem = re.escape(emotion[:-1]) + "[yi]" if emotion.endswith("y") else re.escape(emotion)
    return rf"\b{stem}\w*"


@torch.no_grad()
def sample(
    model: models.LoadedModel, prompts: list[str], options: StoryOptions, seed: int
) -> list[str]:
    """The sampled continuations of chat-formatted prompts, run as one left-padded batch."""
    tokenizer = model.tokenizer
    tokenizer.padding_side = "left"  # generation continues every row from its last token
    try:
        batch = model.encode(prompts, chat_formatted=True)
    finally:
        tokenizer.padding_side = "right"
    torch.manual_seed(seed)
    out = model.hf_model.generate(
        **batch,
        do_sample=True,
        temperature=options.temperature,
        top_p=options.top_p,
        repetition_penalty=options.repetition_penalty,
        max_new_tokens=options.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def generate(store: Store, options: StoryOptions) -> Written:
    """`saefeatures corpus generate`: stories into the store, one committed batch at a time.

    After the planned stories, every emotion with fewer kept stories than `min_kept` is
    topped up, in rounds of new jobs with new seeds (at most `top_up_rounds`); what each
    round asked is recorded in the passages' `meta`.
    """
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    emotions = list(options.emotions)
    chosen_topics = topics(options.topics)
    planned = jobs(emotions, chosen_topics, options.stories_per_topic)
    if options.name in catalog.BUILTIN:
        raise SaefeaturesError(f"{options.name!r} is a built-in corpus name; choose another --name")
    if not getattr(models.load_tokenizer(options.model), "chat_template", None):
        raise SaefeaturesError(
            f"{spec.name} has no chat template; story generation needs an instruct model"
        )
    config = {**asdict(options), "model": spec.name, "prompt": PROMPT}
    wanted = options.min_kept or options.planned_per_emotion
    done = _finished_batches(store, options.name, config)
    with store.run("corpus generate", config) as run_id:
        model = models.load(options.model, dtype=options.dtype, device=options.device, hooks=False)
        writer = _Writer(store, run_id, options, model, config, done)
        writer.write(planned, round_=0)
        for round_ in range(1, options.top_up_rounds + 1):
            kept = _kept(store, options.name, emotions, before_round=round_)
            extra = top_up_jobs(kept, wanted, chosen_topics, round_, writer.next_job)
            if not extra:
                break
            writer.write(extra, round_)
        return _finish(store, run_id, options.name, spec.name, len(planned), emotions, wanted)


@dataclass
class _Writer:
    """Samples jobs in fixed batches, numbered across rounds: batch `b` samples with seed
    `seed + b`, and a batch already in the store is not sampled again."""

    store: Store
    run_id: str
    options: StoryOptions
    model: models.LoadedModel
    config: dict[str, object]
    done: set[int]
    next_batch: int = 0
    next_job: int = 0

    def write(self, planned: list[Job], round_: int) -> None:
        size = self.options.batch_size
        batches = [planned[i : i + size] for i in range(0, len(planned), size)]
        what = "writing stories" if round_ == 0 else f"topping up {len(planned)} stories"
        for batch in progress.track(batches, what):
            number = self.next_batch
            self.next_batch += 1
            if number in self.done:
                continue
            prompts = [
                self.model.format_prompt(PROMPT.format(topic=j.topic, emotion=j.emotion))
                for j in batch
            ]
            texts = sample(self.model, prompts, self.options, self.options.seed + number)
            meta = {"batch": number, "round": round_, "seed": self.options.seed + number}
            _write_batch(
                self.store, self.run_id, self.options.name, self.config, meta, batch, texts
            )
        self.next_job += len(planned)


def _kept(store: Store, name: str, emotions: list[str], before_round: int) -> dict[str, int]:
    """Kept stories per emotion, counting the rounds before `before_round` only."""
    rows = store.query(
        "SELECT emotion, count(*) FILTER (WHERE text <> '') AS n FROM passages "
        "WHERE corpus = ? AND coalesce(json_extract(meta, '$.round')::INT, 0) < ? GROUP BY 1",
        [name, before_round],
    ).to_pylist()
    found = {row["emotion"]: row["n"] for row in rows}
    return {emotion: found.get(emotion, 0) for emotion in emotions}


def _finished_batches(store: Store, name: str, config: dict[str, object]) -> set[int]:
    """Batches already written for this corpus by a run with the same configuration."""
    rows = store.query(
        "SELECT DISTINCT json_extract(meta, '$.batch')::INT AS batch, "
        "json_extract_string(meta, '$.config') AS config FROM passages WHERE corpus = ?",
        [name],
    ).to_pylist()
    fingerprint = json.dumps(config, sort_keys=True)
    if any(row["config"] != fingerprint for row in rows):
        raise SaefeaturesError(
            f"corpus {name!r} already holds stories made with other settings; choose another --name"
        )
    return {row["batch"] for row in rows}


def _write_batch(
    store: Store,
    run_id: str,
    name: str,
    config: dict[str, object],
    sampled: dict[str, int],
    batch: list[Job],
    texts: list[str],
) -> None:
    """One batch of jobs as passages: kept stories with text, dropped ones with why, no text."""
    fingerprint = json.dumps(config, sort_keys=True)
    rows = []
    for job, text in zip(batch, texts, strict=True):
        story, verdict = clean(text, job.emotion)
        meta = {
            **sampled,
            "story": job.story,
            "verdict": verdict,
            "raw": text,
            "config": fingerprint,
        }
        rows.append(
            {
                "run_id": run_id,
                "corpus": name,
                "passage_id": job.index,
                "emotion": job.emotion,
                "topic": job.topic,
                "text": story or "",
                "meta": json.dumps(meta),
            }
        )
    with store.transaction():
        store.insert("passages", pa.Table.from_pylist(rows))


@dataclass(frozen=True)
class Written:
    """One `corpus generate` run: the stories planned, the top-ups asked for, each cleaning
    verdict's count, and the emotions still short of their minimum."""

    run_id: str
    corpus: str
    model: str
    planned: int
    top_ups: int
    verdicts: dict[str, int]
    below_minimum: str  # comma-separated, or "none"

    def facts(self) -> list[tuple[str, object]]:
        """The fields as printed, one row per verdict."""
        fields = asdict(self)
        verdicts = fields.pop("verdicts")
        below = fields.pop("below_minimum")
        return [*fields.items(), *verdicts.items(), ("below_minimum", below)]


def _finish(
    store: Store, run_id: str, name: str, model: str, planned: int, emotions: list[str], wanted: int
) -> Written:
    """Record the corpus with its verdict counts; name the emotions still below `wanted`."""
    verdicts = store.query(
        "SELECT json_extract_string(meta, '$.verdict') AS verdict, count(*) AS n FROM passages "
        "WHERE corpus = ? GROUP BY 1 ORDER BY 1",
        [name],
    ).to_pylist()
    counts = {row["verdict"]: row["n"] for row in verdicts}
    kept = _kept(store, name, emotions, before_round=2**31 - 1)
    thin = {emotion: n for emotion, n in kept.items() if n < wanted}
    with store.transaction():
        store.con.execute("DELETE FROM corpora WHERE corpus = ?", [name])
        store.insert(
            "corpora",
            {
                "run_id": [run_id],
                "corpus": [name],
                "kind": ["generated"],
                "source": [model],
                "n_passages": [counts.get("kept", 0)],
                "meta": [json.dumps({**counts, "below_minimum": thin})],
            },
        )
    for emotion, n in thin.items():
        progress.warn(f"{name}: {emotion} kept {n} of the {wanted} stories it needs after top-ups")
    asked = sum(counts.values())
    return Written(run_id, name, model, planned, asked - planned, counts, ", ".join(thin) or "none")
