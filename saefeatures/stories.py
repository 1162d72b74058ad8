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
import math
import re
from dataclasses import asdict, dataclass

import pyarrow as pa
import torch
from rich.progress import Progress

from saefeatures import corpora, models
from saefeatures.config import project_data
from saefeatures.errors import SaefeaturesError
from saefeatures.store import Store

PROMPT = (
    "Write a short story of about 120 words. Topic: {topic}. The main character is "
    "feeling {emotion}. Never use the word '{emotion}' or a synonym of it: show the "
    "feeling only through actions, body language, dialogue, thoughts and the situation. "
    "Write only the story."
)
MIN_WORDS = 25
MIN_DISTINCT_4GRAMS = 0.6  # below this share of distinct word 4-grams a story is a loop


@dataclass(frozen=True)
class StoryOptions:
    model: str
    name: str = "generated"
    emotions: str = "default"
    topics: int = 3
    stories_per_topic: int = 1
    batch_size: int = 32  # per story, 1.4x faster than 16 on 2 CPU cores; 64 gains nothing
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_p: float = 0.95
    repetition_penalty: float = 1.15
    seed: int = 0
    dtype: str = "auto"
    device: str = "cpu"


@dataclass(frozen=True)
class Job:
    index: int
    emotion: str
    topic: str
    story: int


def topics(n: int) -> list[str]:
    shipped = corpora.read_lines(project_data("corpora") / "topics.txt")
    if not 1 <= n <= len(shipped):
        raise SaefeaturesError(f"--topics must be between 1 and {len(shipped)}, got {n}")
    return shipped[:n]


def jobs(emotions: list[str], chosen_topics: list[str], per_topic: int) -> list[Job]:
    cells = [(e, t, s) for e in emotions for t in chosen_topics for s in range(per_topic)]
    return [Job(i, e, t, s) for i, (e, t, s) in enumerate(cells)]


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


def generate(store: Store, options: StoryOptions) -> dict[str, object]:
    """`saefeatures corpus generate`: stories into the store, one committed batch at a time."""
    models.check_options(options.dtype, options.device)
    spec = models.resolve(options.model)
    emotions = corpora.emotion_list(options.emotions)
    planned = jobs(emotions, topics(options.topics), options.stories_per_topic)
    if options.name in corpora.BUILTIN:
        raise SaefeaturesError(f"{options.name!r} is a built-in corpus name; choose another --name")
    if options.batch_size < 1 or options.max_new_tokens < 16:
        raise SaefeaturesError("--batch-size must be >= 1 and --max-new-tokens >= 16")
    if options.stories_per_topic < 1:
        raise SaefeaturesError(f"--stories-per-topic must be >= 1, got {options.stories_per_topic}")
    if not (math.isfinite(options.temperature) and options.temperature > 0):
        raise SaefeaturesError(
            f"--temperature must be a finite number above 0, got {options.temperature}"
        )
    if not -(2**63) <= options.seed < 2**63:  # torch's seeds are 64-bit
        raise SaefeaturesError(f"--seed must fit in 64 bits (|seed| < 2**63), got {options.seed}")
    if not getattr(models.load_tokenizer(options.model), "chat_template", None):
        raise SaefeaturesError(
            f"{spec.name} has no chat template; story generation needs an instruct model"
        )
    config = {**asdict(options), "model": spec.name, "prompt": PROMPT}
    batches = [
        planned[i : i + options.batch_size] for i in range(0, len(planned), options.batch_size)
    ]
    done = _finished_batches(store, options.name, config)
    with store.run("corpus generate", config) as run_id:
        model = models.load(options.model, dtype=options.dtype, device=options.device, hooks=False)
        with Progress(transient=True) as progress:
            task = progress.add_task("writing stories", total=len(batches), completed=len(done))
            for number, batch in enumerate(batches):
                if number in done:
                    continue
                prompts = [
                    model.format_prompt(PROMPT.format(topic=j.topic, emotion=j.emotion))
                    for j in batch
                ]
                texts = sample(model, prompts, options, options.seed + number)
                _write_batch(store, run_id, options.name, config, number, batch, texts)
                progress.advance(task)
        return _finish(store, run_id, options.name, spec.name, len(planned))


def _prompt(model: models.LoadedModel, job: Job) -> str:
    return model.format_prompt(PROMPT.format(topic=job.topic, emotion=job.emotion))


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
    number: int,
    batch: list[Job],
    texts: list[str],
) -> None:
    """One batch of jobs as passages: kept stories with text, dropped ones with why, no text."""
    fingerprint = json.dumps(config, sort_keys=True)
    rows = []
    for job, text in zip(batch, texts, strict=True):
        story, verdict = clean(text, job.emotion)
        meta = {
            "batch": number,
            "story": job.story,
            "verdict": verdict,
            "raw": text,
            "config": fingerprint,
        }
        rows.append(
            {"run_id": run_id, "corpus": name, "passage_id": job.index, "emotion": job.emotion,
             "topic": job.topic, "text": story or "", "meta": json.dumps(meta)}
        )  # fmt: skip
    with store.transaction():
        store.insert("passages", pa.Table.from_pylist(rows))


def _finish(store: Store, run_id: str, name: str, model: str, planned: int) -> dict[str, object]:
    verdicts = store.query(
        "SELECT json_extract_string(meta, '$.verdict') AS verdict, count(*) AS n FROM passages "
        "WHERE corpus = ? GROUP BY 1 ORDER BY 1",
        [name],
    ).to_pylist()
    counts = {row["verdict"]: row["n"] for row in verdicts}
    with store.transaction():
        store.con.execute("DELETE FROM corpora WHERE corpus = ?", [name])
        store.insert(
            "corpora",
            {"run_id": [run_id], "corpus": [name], "kind": ["generated"], "source": [model],
             "n_passages": [counts.get("kept", 0)], "meta": [json.dumps(counts)]},
        )  # fmt: skip
    return {"run_id": run_id, "corpus": name, "model": model, "planned": planned, **counts}
