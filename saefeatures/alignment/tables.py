"""What each SAE feature does on text: the `features`, `feature_activations` and
`passage_tokens` tables, built from feature scans.

Tables are Arrow with dictionary-encoded constant columns (run, SAE, corpus), so a
few million sparse rows go into DuckDB in one bulk insert without a string per row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from saefeatures.activations import logit_lens
from saefeatures.alignment.scan import FeatureScan, Source
from saefeatures.models import LoadedModel

SNIPPETS = 5
CONTEXT_BEFORE, CONTEXT_AFTER = 10, 4
LENS_TOKENS = 10
_LENS_CHUNK = 512  # decoder rows per unembedding matmul: 512 x vocab floats at a time


@dataclass
class ScannedCorpus:
    """One corpus's sequences and one SAE's scan of them."""

    corpus: str
    passage_ids: np.ndarray  # [n_sequences] ids in the store
    sequences: list[list[int]]
    scan: FeatureScan


def constant(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))


def activation_table(run_id: str, sae_id: str, scanned: ScannedCorpus) -> pa.Table:
    scan, n = scanned.scan, len(scanned.scan.value)
    return pa.table(
        {
            "run_id": constant(run_id, n),
            "sae_id": constant(sae_id, n),
            "corpus": constant(scanned.corpus, n),
            "passage_id": scanned.passage_ids[scan.sequence].astype(np.int32),
            "position": scan.position,
            "feature": scan.feature,
            "value": scan.value,
        }
    )


def emotion_activity_table(
    run_id: str, sae_id: str, scanned: ScannedCorpus, emotions: np.ndarray, d_sae: int
) -> pa.Table:
    """Summed activation per emotion and feature over every token of the emotion's passages.

    `emotions` labels each scanned sequence. One bincount over the sparse rows does what
    a GROUP BY over millions of rows would do at every query.
    """
    names, index = np.unique(emotions, return_inverse=True)
    passages = np.bincount(index, minlength=len(names))
    key = index[scanned.scan.sequence].astype(np.int64) * d_sae + scanned.scan.feature
    totals = np.bincount(key, weights=scanned.scan.value, minlength=len(names) * d_sae)
    fired = np.flatnonzero(totals)
    emotion, feature = np.divmod(fired, d_sae)
    n = len(fired)
    return pa.table(
        {
            "run_id": constant(run_id, n),
            "sae_id": constant(sae_id, n),
            "corpus": constant(scanned.corpus, n),
            "emotion": pa.DictionaryArray.from_arrays(emotion.astype(np.int32), pa.array(names)),
            "feature": feature.astype(np.int32),
            "passages": passages[emotion].astype(np.int32),
            "total": totals[fired],
            "mean_per_passage": totals[fired] / passages[emotion],
        }
    )


def token_texts(model: LoadedModel, ids: Iterable[int]) -> dict[int, str]:
    """Each distinct token id as it reads (decoded alone, so a split character shows as �),
    not as its vocabulary entry ('Ġhappy')."""
    distinct = sorted({int(i) for i in ids})
    return dict(zip(distinct, model.tokenizer.batch_decode([[i] for i in distinct]), strict=True))


def token_strings(model: LoadedModel, sequences: list[list[int]]) -> dict[int, str]:
    """Every token id of the sequences as text."""
    return token_texts(model, (token for sequence in sequences for token in sequence))


def token_table(
    run_id: str, model: str, corpus: str, source: Source, strings: dict[int, str]
) -> pa.Table:
    """Every scanned token of a source (`ids`, `sequences`) with its text, for snippet SQL."""
    lengths = np.array([len(s) for s in source.sequences])
    ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in source.sequences])
    n = len(ids)
    return pa.table(
        {
            "run_id": constant(run_id, n),
            "model": constant(model, n),
            "corpus": constant(corpus, n),
            "passage_id": np.repeat(source.ids, lengths).astype(np.int32),
            "position": np.concatenate([np.arange(length) for length in lengths]).astype(np.int32),
            "token_id": ids.astype(np.int32),
            "token": [strings[int(i)] for i in ids],
        }
    )


def _top_per_feature(feature: np.ndarray, value: np.ndarray, k: int) -> np.ndarray:
    """Indices of each feature's k largest values, grouped by feature, largest first."""
    order = np.lexsort((-value, feature))
    grouped = feature[order]
    starts = np.searchsorted(grouped, grouped, side="left")
    return order[np.arange(len(order)) - starts < k]


def snippets(scanned: list[ScannedCorpus], strings: dict[int, str], d_sae: int) -> list[str]:
    """Per feature, a JSON list of its top activations with the text around each token.

    The firing token is marked [[like this]]; context is the tokens just before and after.
    """
    parts = [(c, np.full(len(c.scan.value), i)) for i, c in enumerate(scanned)]
    feature = np.concatenate([c.scan.feature for c, _ in parts])
    value = np.concatenate([c.scan.value for c, _ in parts])
    source = np.concatenate([which for _, which in parts])
    sequence = np.concatenate([c.scan.sequence for c, _ in parts])
    position = np.concatenate([c.scan.position for c, _ in parts])
    found: list[list[dict]] = [[] for _ in range(d_sae)]
    for row in _top_per_feature(feature, value, SNIPPETS):
        corpus = scanned[source[row]]
        tokens = corpus.sequences[sequence[row]]
        at = int(position[row])
        before = "".join(strings[t] for t in tokens[max(0, at - CONTEXT_BEFORE) : at])
        after = "".join(strings[t] for t in tokens[at + 1 : at + 1 + CONTEXT_AFTER])
        found[feature[row]].append(
            {
                "corpus": corpus.corpus,
                "passage_id": int(corpus.passage_ids[sequence[row]]),
                "position": at,
                "value": round(float(value[row]), 4),
                "text": f"{before}[[{strings[tokens[at]]}]]{after}",
            }
        )
    return [json.dumps(items) for items in found]


@dataclass(frozen=True)
class Lens:
    """Per decoder row, the tokens it promotes and suppresses most, as text, and their logits."""

    promoted: list[list[str]]
    promoted_logits: list[list[float]]
    suppressed: list[list[str]]
    suppressed_logits: list[list[float]]


def lens_tokens(model: LoadedModel, decoder: np.ndarray) -> Lens:
    """The logit lens of every decoder row (final norm, then unembedding)."""
    parts = [
        logit_lens(model, decoder[start : start + _LENS_CHUNK], LENS_TOKENS)
        for start in range(0, len(decoder), _LENS_CHUNK)
    ]
    up, up_logits, down, down_logits = (
        np.concatenate(column) for column in zip(*parts, strict=True)
    )
    texts = token_texts(model, np.concatenate([up.ravel(), down.ravel()]).tolist())
    return Lens(
        [[texts[int(i)] for i in row] for row in up],
        up_logits.astype(np.float64).tolist(),
        [[texts[int(i)] for i in row] for row in down],
        down_logits.astype(np.float64).tolist(),
    )


def feature_table(
    run_id: str,
    sae_id: str,
    model: LoadedModel,
    decoder: np.ndarray,
    scanned: list[ScannedCorpus],
    n_tokens: int,
    strings: dict[int, str],
) -> pa.Table:
    """One row per feature: density over all scanned tokens, peak, mean when active, lens."""
    active = sum(c.scan.active for c in scanned)
    total = sum(c.scan.total for c in scanned)
    peak = np.max([c.scan.peak for c in scanned], axis=0)
    mean_active = np.divide(total, active, out=np.full(len(active), np.nan), where=active > 0)
    lens = lens_tokens(model, decoder)
    d_sae = len(decoder)
    return pa.table(
        {
            "run_id": constant(run_id, d_sae),
            "sae_id": constant(sae_id, d_sae),
            "feature": np.arange(d_sae, dtype=np.int32),
            "density": active / max(n_tokens, 1),
            "max_activation": peak.astype(np.float64),
            "mean_active": pa.array(mean_active, from_pandas=True),  # NaN (never fired) -> NULL
            "promoted_tokens": lens.promoted,
            "promoted_logits": lens.promoted_logits,
            "suppressed_tokens": lens.suppressed,
            "suppressed_logits": lens.suppressed_logits,
            "top_snippets": snippets(scanned, strings, d_sae),
        }
    )
