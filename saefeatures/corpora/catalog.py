"""Corpora: emotion word lists, human ratings, passages; import and storage.

The project's own data lives in `corpora/` (emotion words, NRC-VAD ratings,
template and neutral passages). Corpora used by a run are written to the
store (`corpora`, `passages`), which is where every later stage reads them.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from saefeatures.config import project_data
from saefeatures.corpora import jsonl
from saefeatures.errors import SaefeaturesError
from saefeatures.store.database import Store

BUILTIN = {
    "templates": ("templates.jsonl", "template passages written for this project"),
    "stories": ("stories.jsonl", "emotion stories written for this project, all 171 emotions"),
    "neutral": ("neutral.jsonl", "neutral factual passages written for this project"),
    "neutral-stories": ("stories_neutral.jsonl", "neutral stories matched to `stories`"),
}
# Denoising projects out what neutral text varies along; a corpus's neutral set should
# match it in everything but emotion (length, narration, topics).
NEUTRAL_OF = {"stories": "neutral-stories"}
# Vectors pool each passage from this token on, so that they reflect its developed content
# rather than its opening words: template passages are short (about 60 tokens), model-written
# stories up to 120 tokens; longer imported stories leave enough after 50.
POOLING_OFFSETS = {"templates": 10, "generated": 30}
DEFAULT_POOLING_OFFSET = 50


@dataclass(frozen=True)
class Passage:
    text: str
    emotion: str | None = None
    topic: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    passage_id: int | None = None  # its id in the store, once stored


@dataclass(frozen=True)
class Ratings:
    """Valence and arousal per emotion word, on the -1..1 scale, with each row's source."""

    valence: dict[str, float]
    arousal: dict[str, float]
    source: dict[str, str]

    def missing(self, emotions: list[str]) -> list[str]:
        return [emotion for emotion in emotions if emotion not in self.valence]


# -- emotion words and ratings ------------------------------------------------


def neutral_of(corpus: str) -> str:
    """The neutral corpus that denoises a corpus's vectors and joins its retrieval."""
    return NEUTRAL_OF.get(corpus, "neutral")


def pooling_offset(store: Store, corpus: str, asked: int | None) -> int:
    """The token from which passages are pooled: as asked, else the corpus's own."""
    if asked is not None:
        return asked
    if corpus in POOLING_OFFSETS:
        return POOLING_OFFSETS[corpus]
    kinds = store.query("SELECT kind FROM corpora WHERE corpus = ?", [corpus])["kind"].to_pylist()
    return POOLING_OFFSETS.get(kinds[0] if kinds else "", DEFAULT_POOLING_OFFSET)


def load_ratings(path: Path | None = None) -> Ratings:
    """The shipped NRC-VAD table, or a user CSV with columns emotion, valence, arousal."""
    source_path = path or project_data("corpora") / "ratings.csv"
    if not source_path.is_file():
        raise SaefeaturesError(f"ratings file {source_path} does not exist")
    valence: dict[str, float] = {}
    arousal: dict[str, float] = {}
    source: dict[str, str] = {}
    try:
        with source_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            required = {"emotion", "valence", "arousal"}
            if not reader.fieldnames or not required <= set(reader.fieldnames):
                raise SaefeaturesError(
                    f"{source_path} needs a header with columns emotion, valence, arousal"
                )
            for row in reader:
                line = reader.line_num
                try:
                    v, a = float(row["valence"]), float(row["arousal"])
                except (TypeError, ValueError):
                    raise SaefeaturesError(
                        f"{source_path} line {line}: valence and arousal must be numbers"
                    ) from None
                if not (math.isfinite(v) and math.isfinite(a)):
                    raise SaefeaturesError(f"{source_path} line {line}: ratings must be finite")
                emotion = (row["emotion"] or "").strip()
                if not emotion:
                    raise SaefeaturesError(f"{source_path} line {line}: the emotion is empty")
                valence[emotion], arousal[emotion] = v, a
                source[emotion] = row.get("source") or str(source_path.name)
    except UnicodeDecodeError:
        raise SaefeaturesError(
            f"ratings file {source_path} is not UTF-8 text; save it as UTF-8"
        ) from None
    except csv.Error as error:
        raise SaefeaturesError(
            f"ratings file {source_path} is not readable CSV ({error}); fix the file"
        ) from None
    if not valence:
        raise SaefeaturesError(f"ratings file {source_path} has no rows")
    return Ratings(valence, arousal, source)


def store_ratings(store: Store, run_id: str, ratings: Ratings) -> None:
    """Put the ratings a stage used into `emotion_ratings`, so SQL can join them. The same
    ratings stay as they are, so that stages reading them do not replace each other's rows."""
    emotions = sorted(ratings.valence)
    table = {
        "run_id": [run_id] * len(emotions),
        "emotion": emotions,
        "valence": [ratings.valence[e] for e in emotions],
        "arousal": [ratings.arousal[e] for e in emotions],
        "source": [ratings.source[e] for e in emotions],
    }
    stored = store.query(
        "SELECT emotion, valence, arousal, source FROM emotion_ratings ORDER BY emotion"
    ).to_pylist()
    if stored == [
        dict(zip(list(table)[1:], row, strict=True))
        for row in zip(*list(table.values())[1:], strict=True)
    ]:
        return
    with store.transaction():
        store.con.execute("DELETE FROM emotion_ratings")
        store.insert("emotion_ratings", table)


# -- reading passages ---------------------------------------------------------


def read_jsonl(path: Path) -> list[Passage]:
    """Passages from JSONL: `emotion` with `stories` (a list) or `text`; `topic` optional.

    A malformed line is an error with its line number; nothing is skipped silently.
    """
    if not path.is_file():
        raise SaefeaturesError(f"corpus file {path} does not exist")
    passages: list[Passage] = []
    for number, line in jsonl.numbered_lines(path, "corpus file"):
        passages.extend(_passages_of_line(path, number, line))
    if not passages:
        raise SaefeaturesError(f"corpus file {path} is empty: no passages found")
    return passages


def _passages_of_line(path: Path, number: int, line: str) -> list[Passage]:
    where = f"{path} line {number}"
    record = jsonl.object_of_line(where, line)
    emotion = record.get("emotion")
    if emotion is not None and (not isinstance(emotion, str) or not emotion.strip()):
        raise SaefeaturesError(f"{where}: `emotion` must be a non-empty string")
    if "stories" in record:
        texts = record["stories"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise SaefeaturesError(f"{where}: `stories` must be a list of strings")
    elif isinstance(record.get("text"), str):
        texts = [record["text"]]
    else:
        raise SaefeaturesError(f"{where}: needs `stories` (a list of strings) or `text`")
    topic = record.get("topic") if isinstance(record.get("topic"), str) else None
    meta: dict[str, Any] = {"line": number}
    if isinstance(record.get("split"), str):
        meta["split"] = record["split"]
    return [
        Passage(text.strip(), emotion.strip() if emotion else None, topic, meta)
        for text in texts
        if text.strip()
    ]


def read_hf_dataset(name: str) -> list[Passage]:
    """A Hugging Face dataset with the same fields (needs network)."""
    import datasets  # heavy; import on use
    import huggingface_hub

    # The hub client logs every retry; the user gets one line from us instead.
    huggingface_hub.utils.logging.set_verbosity_error()
    datasets.utils.logging.set_verbosity_error()
    try:
        rows = datasets.load_dataset(name, split="train")
    except Exception as error:  # the hub client raises many types for "unreachable"
        raise SaefeaturesError(
            f"cannot load Hugging Face dataset {name!r} ({' '.join(str(error).split())[:200]}); "
            "offline, download it elsewhere and import the JSONL file"
        ) from None
    lines = (json.dumps(row, default=str) for row in rows)
    return [p for i, line in enumerate(lines, 1) for p in _passages_of_line(Path(name), i, line)]


def builtin_passages(name: str) -> list[Passage]:
    filename, _ = BUILTIN[name]
    return read_jsonl(project_data("corpora") / filename)


# -- the store ----------------------------------------------------------------


def write_corpus(
    store: Store, run_id: str, name: str, kind: str, source: str, passages: list[Passage]
) -> int:
    """Replace corpus `name` in the store with `passages`, in one transaction."""
    meta = {"emotions": len({p.emotion for p in passages if p.emotion})}
    with store.transaction():
        store.con.execute("DELETE FROM passages WHERE corpus = ?", [name])
        store.con.execute("DELETE FROM corpora WHERE corpus = ?", [name])
        store.insert(
            "corpora",
            {
                "run_id": [run_id],
                "corpus": [name],
                "kind": [kind],
                "source": [source],
                "n_passages": [len(passages)],
                "meta": [json.dumps(meta)],
            },
        )
        store.insert(
            "passages",
            pa.table(
                {
                    "run_id": [run_id] * len(passages),
                    "corpus": [name] * len(passages),
                    "passage_id": list(range(len(passages))),
                    "emotion": [p.emotion for p in passages],
                    "topic": [p.topic for p in passages],
                    "text": [p.text for p in passages],
                    "meta": [json.dumps(p.meta) for p in passages],
                }
            ),
        )
    return len(passages)


def _stored(store: Store, name: str) -> bool:
    found = store.query("SELECT count(*) AS n FROM corpora WHERE corpus = ?", [name])
    return found["n"][0].as_py() > 0


def ensure_builtin(store: Store, run_id: str, name: str) -> None:
    """Write a built-in corpus to the store the first time it is used."""
    if name in BUILTIN and not _stored(store, name):
        _, description = BUILTIN[name]
        write_corpus(store, run_id, name, "builtin", description, builtin_passages(name))


def read_corpus(store: Store, name: str) -> list[Passage]:
    """A corpus from the store, in passage order; a built-in one from its file if not stored yet."""
    if name in BUILTIN and not _stored(store, name):
        return builtin_passages(name)
    rows = store.query(
        # Generated corpora keep dropped stories as rows with empty text (see stories.py).
        "SELECT passage_id, emotion, topic, text, meta FROM passages WHERE corpus = ? AND "
        "text <> '' ORDER BY passage_id",
        [name],
    ).to_pylist()
    if not rows:
        known = [r["corpus"] for r in store.query("SELECT corpus FROM corpora").to_pylist()]
        raise SaefeaturesError(
            f"unknown corpus {name!r}; the store has: {', '.join(known) or 'none'} "
            f"(built in: {', '.join(BUILTIN)}; add one with `saefeatures corpus import`)"
        )
    return [
        Passage(r["text"], r["emotion"], r["topic"], json.loads(r["meta"] or "{}"), r["passage_id"])
        for r in rows
    ]


def by_emotion(passages: list[Passage], emotions: list[str]) -> dict[str, list[str]]:
    """The passages' texts grouped by emotion; an emotion with none is an error."""
    grouped: dict[str, list[str]] = {emotion: [] for emotion in emotions}
    for passage in passages:
        if passage.emotion in grouped:
            grouped[passage.emotion].append(passage.text)
    empty = [emotion for emotion, texts in grouped.items() if not texts]
    if empty:
        raise SaefeaturesError(
            f"no passages for emotion(s) {', '.join(empty)} in this corpus; "
            "choose --emotions that the corpus covers (see `saefeatures corpus show`)"
        )
    return grouped


def emotion_counts(passages: list[Passage]) -> Counter[str]:
    return Counter(p.emotion or "(none)" for p in passages)


def import_corpus(store: Store, source: str, name: str) -> int:
    """`saefeatures corpus import`: a JSONL file or `hf:DATASET`, validated whole first."""
    if name in BUILTIN:
        raise SaefeaturesError(f"{name!r} is a built-in corpus name; choose another --name")
    if not name.strip():
        raise SaefeaturesError("the corpus --name is empty; give the corpus a name")
    for what, value in (("--name", name), ("source", source)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # non-UTF-8 bytes on the command line
            raise SaefeaturesError(
                f"the {what} {value!r} is not UTF-8 text; use UTF-8 names and paths"
            ) from None
    from_hub = source.startswith("hf:")
    passages = read_hf_dataset(source[3:]) if from_hub else read_jsonl(Path(source))
    with store.run("corpus import", {"source": source, "name": name}, atomic=True) as run_id:
        return write_corpus(store, run_id, name, "import", source, passages)


def listing(store: Store) -> pa.Table:
    stored = store.query(
        "SELECT corpus, kind, source, n_passages FROM corpora ORDER BY corpus"
    ).to_pylist()
    names = {row["corpus"] for row in stored}
    for name, (_, description) in BUILTIN.items():
        if name not in names:
            count = len(builtin_passages(name))
            stored.append(
                {"corpus": name, "kind": "builtin", "source": description, "n_passages": count}
            )
    return pa.Table.from_pylist(stored)


@dataclass(frozen=True)
class Description:
    """What `corpus show` prints: passages per emotion, token lengths, a sample."""

    counts: list[tuple[str, int]]
    tokens: dict[str, float]
    sample: list[tuple[str, str]]


def describe(store: Store, name: str, model_name: str) -> Description:
    """Counts per emotion, token-length statistics with the model's tokenizer, a sample."""
    import numpy as np

    from saefeatures import models

    passages = read_corpus(store, name)
    tokenizer = models.load_tokenizer(model_name)
    lengths = np.array([len(ids) for ids in tokenizer([p.text for p in passages])["input_ids"]])
    tokens = {
        "passages": len(passages),
        "mean": float(lengths.mean()),
        "median": float(np.median(lengths)),
        "min": int(lengths.min()),
        "max": int(lengths.max()),
        "under 50 tokens": int((lengths < 50).sum()),
    }
    seen: dict[str, str] = {}
    for passage in passages:
        seen.setdefault(passage.emotion or "(none)", passage.text[:160])
    sample = list(seen.items())[:5]
    return Description(sorted(emotion_counts(passages).items()), tokens, sample)
