"""Benchmark: feature-activation ingest into DuckDB and the top-features-per-emotion query.

Synthetic but SAE-shaped data (10 M sparse rows: 32 active features per token, feature
frequencies log-normal like a trained SAE's, 30 emotions over 1,000 passages) goes into
a fresh store the way the alignment stage writes it. Printed against peers doing the
same work in the same run:

- ingest: our dictionary-encoded Arrow insert vs. the same rows as plain Arrow strings
  and as a pandas DataFrame (the usual route into DuckDB);
- query: the shipped `top_features_per_emotion` query, which reads the per-emotion
  aggregate the stage writes (`emotion_feature_activity`), vs. the same answer
  aggregated from the 10 M raw rows at query time.

Run: python scripts/bench_features.py [--rows 10000000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from saefeatures.alignment import tables
from saefeatures.alignment.scan import FeatureScan
from saefeatures.store import queries
from saefeatures.store.database import Store

D_SAE, K, PASSAGES, EMOTIONS = 9216, 32, 1000, 30
RAW_TOP_FEATURES = """
WITH counts AS (SELECT emotion, count(*) AS n FROM passages WHERE corpus = 'bench' GROUP BY ALL),
sums AS (
    SELECT p.emotion, a.feature, sum(a.value) AS total
    FROM feature_activations a JOIN passages p USING (corpus, passage_id)
    GROUP BY ALL
), scored AS (
    SELECT s.emotion, s.feature,
           s.total / c.n - sum(s.total) OVER (PARTITION BY s.feature)
               / (SELECT sum(n) FROM counts) AS selectivity
    FROM sums s JOIN counts c USING (emotion)
)
SELECT emotion, feature, round(selectivity, 3) AS selectivity FROM scored
QUALIFY row_number() OVER (PARTITION BY emotion ORDER BY selectivity DESC) <= 3
ORDER BY emotion, selectivity DESC
"""


def synthetic_scan(rows: int, seed: int = 0) -> tuple[FeatureScan, np.ndarray]:
    """Sparse rows shaped like a TopK SAE's output on 1,000 passages, and their emotions."""
    rng = np.random.default_rng(seed)
    tokens = rows // K
    per_passage = tokens // PASSAGES
    frequency = rng.lognormal(0, 1.5, D_SAE)
    frequency /= frequency.sum()
    feature = rng.choice(D_SAE, size=per_passage * PASSAGES * K, p=frequency).astype(np.int32)
    n = len(feature)
    token = np.arange(n) // K
    value = rng.exponential(3.0, n).astype(np.float32)
    scan = FeatureScan(
        passage_mean=np.zeros((0, D_SAE), np.float32),
        passage_max=np.zeros((0, D_SAE), np.float32),
        sequence=(token // per_passage).astype(np.int32),
        position=(token % per_passage).astype(np.int32),
        feature=feature,
        value=value,
        active=np.zeros(D_SAE, np.int64),
        total=np.zeros(D_SAE),
        peak=np.zeros(D_SAE, np.float32),
    )
    emotions = np.array([f"emotion{i:02d}" for i in np.arange(PASSAGES) * EMOTIONS // PASSAGES])
    return scan, emotions


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _median_ms(store: Store, sql: str, repeats: int = 7) -> float:
    store.query(sql)  # warm: the first read pulls the table from disk
    return 1000 * statistics.median(_timed(lambda: store.query(sql)) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    scan, emotions = synthetic_scan(args.rows)
    corpus = tables.ScannedCorpus("bench", np.arange(PASSAGES), [], scan)
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "bench.duckdb") as store:
        with store.run("bench", {}) as run_id:
            store.insert(
                "passages",
                {
                    "run_id": [run_id] * PASSAGES,
                    "corpus": ["bench"] * PASSAGES,
                    "passage_id": list(range(PASSAGES)),
                    "emotion": list(emotions),
                    "text": [""] * PASSAGES,
                },
            )
            ours = tables.activation_table(run_id, "sae", corpus)
            plain = ours.cast(
                pa.schema(
                    [
                        pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                        for f in ours.schema
                    ]
                )
            )
            frame = plain.to_pandas()
            n = ours.num_rows
            timings = {}
            for name, data in (
                ("pandas DataFrame", frame),
                ("Arrow, plain strings", plain),
                ("Arrow, dictionary-encoded (ours)", ours),
            ):
                store.con.execute("DELETE FROM feature_activations")
                store.con.register("_bench", data)
                timings[name] = _timed(
                    lambda: store.con.execute(
                        "INSERT INTO feature_activations BY NAME SELECT * FROM _bench"
                    )
                )
                store.con.unregister("_bench")
            activity = tables.emotion_activity_table(run_id, "sae", corpus, emotions, D_SAE)
            aggregate = _timed(
                lambda: tables.emotion_activity_table(run_id, "sae", corpus, emotions, D_SAE)
            )
            store.insert("emotion_feature_activity", activity)
            store.con.execute("CHECKPOINT")
        shipped = queries.resolve("top_features_per_emotion")
        ours_ms, raw_ms = _median_ms(store, shipped), _median_ms(store, RAW_TOP_FEATURES)
        same = [(r["emotion"], r["feature"]) for r in store.query(shipped).to_pylist()] == [
            (r["emotion"], r["feature"]) for r in store.query(RAW_TOP_FEATURES).to_pylist()
        ]
    print(f"feature activations: {n:,} rows, {PASSAGES} passages, {EMOTIONS} emotions")
    print("ingest (one bulk INSERT into DuckDB):")
    ours_rate = n / timings["Arrow, dictionary-encoded (ours)"]
    for name, seconds in timings.items():
        print(
            f"  {name:34s} {n / seconds / 1e6:6.2f} M rows/s  "
            f"(ours {ours_rate / (n / seconds):.2f}x)"
        )
    print(f"  target >= 1 M rows/s: {'met' if ours_rate >= 1e6 else 'NOT met'}")
    print(f"per-emotion aggregate at write time (numpy bincount): {aggregate * 1000:.0f} ms")
    print("top features per emotion (median of 7, warm):")
    print(f"  shipped query on emotion_feature_activity  {ours_ms:7.1f} ms")
    print(
        f"  same answer aggregated from the raw rows   {raw_ms:7.1f} ms "
        f"(shipped {raw_ms / ours_ms:.0f}x faster)"
    )
    print(
        f"  same top features: {same}; target <= 200 ms: {'met' if ours_ms <= 200 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
