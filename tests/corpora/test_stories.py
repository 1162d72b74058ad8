"""Model-written stories: cleaning, deterministic batches, resume, bad input."""

from __future__ import annotations

from dataclasses import replace

import pytest

from saefeatures.corpora import stories
from saefeatures.errors import SaefeaturesError
from saefeatures.options import StoryOptions
from saefeatures.store.database import Store
from tests.conftest import assert_user_error, run_cli

LONG = (
    "She walked home slowly with her old dog and her best friend, who had always been "
    "there for her, and they laughed a lot today"
)


@pytest.mark.parametrize(
    ("text", "emotion", "verdict"),
    [
        (f"Title: A walk\n{LONG}, and it was fine. And then she", "happy", "kept"),
        (f"{LONG}, happily.", "happy", "named the emotion"),
        (f"{LONG}, in her sadness.", "sad", "named the emotion"),
        (f"It happened at noon. {LONG}.", "happy", "kept"),
        ("Too short.", "calm", "too short"),
        (" ".join(["a lone figure waited on the bench"] * 10) + ".", "sad", "repetitive"),
    ],
)
def test_clean(text, emotion, verdict):
    story, got = stories.clean(text, emotion)
    assert got == verdict
    if verdict == "kept":
        assert story.endswith("fine.") or story.endswith("today.")
        assert not story.lower().startswith("title")


def _raw(db):
    with Store(db, read_only=True) as store:
        rows = store.query(
            "SELECT passage_id, json_extract_string(meta, '$.raw') AS raw FROM passages "
            "ORDER BY passage_id"
        )
        return rows.to_pylist()


def test_generation_is_deterministic_and_resumes(tmp_path, tiny_chat_dir):
    options = StoryOptions(
        model=str(tiny_chat_dir),
        emotions=("happy", "sad"),
        topics=1,
        stories_per_topic=2,
        batch_size=2,
        max_new_tokens=24,
        dtype="float32",
    )
    full = tmp_path / "full.duckdb"
    with Store(full) as store:
        summary = stories.generate(store, options)
    assert summary.planned == 4
    resumed = tmp_path / "resumed.duckdb"
    with Store(resumed) as store:
        stories.generate(store, options)
        # As if the process died before the second batch was committed.
        store.con.execute("DELETE FROM passages WHERE json_extract(meta, '$.batch')::INT = 1")
        stories.generate(store, options)
    assert _raw(resumed) == _raw(full)
    # 4 planned stories, then 3 rounds of 4 top-ups (the tiny model's stories are too short)
    assert len({row["raw"] for row in _raw(full)}) == 16
    with Store(resumed) as store, pytest.raises(SaefeaturesError, match="other settings"):
        stories.generate(store, replace(options, seed=1))


def test_generation_bad_input(tmp_path, tiny_llama_dir, tiny_chat_dir):
    db = tmp_path / "w.duckdb"
    Store(db).close()
    common = ["corpus", "generate", "--db", str(db)]
    assert_user_error(run_cli(*common, "--model", str(tiny_llama_dir)), "no chat template")
    assert_user_error(run_cli(*common, "--model", str(tiny_chat_dir), "--topics", "0"), "--topics")
    assert_user_error(
        run_cli(*common, "--model", str(tiny_chat_dir), "--emotions", "zzz"), "unknown"
    )
    with Store(db, read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM runs")["n"][0].as_py() == 0


def test_an_emotion_short_of_stories_is_topped_up_with_new_seeds(tmp_path, tiny_chat_dir, capsys):
    """The tiny model's 16-token stories are all too short: every emotion gets three rounds
    of top-ups, each with its own recorded seed, then a warning names it."""
    options = StoryOptions(
        model=str(tiny_chat_dir),
        emotions=("bored", "calm"),
        topics=2,
        batch_size=3,
        max_new_tokens=16,
        seed=7,
        dtype="float32",
    )
    with Store(tmp_path / "w.duckdb") as store:
        summary = stories.generate(store, options)
        rows = store.query(
            "SELECT emotion, json_extract(meta, '$.round')::INT AS round, "
            "json_extract(meta, '$.batch')::INT AS batch, json_extract(meta, '$.seed')::INT "
            "AS seed FROM passages ORDER BY passage_id"
        ).to_pylist()
    assert summary.planned == 4 and summary.top_ups == 12
    assert summary.below_minimum == "bored, calm"
    assert [sum(row["round"] == r for row in rows) for r in range(4)] == [4, 4, 4, 4]
    assert all(row["seed"] == 7 + row["batch"] for row in rows)
    assert len({row["batch"] for row in rows}) == 8  # 2 batches a round, none reused
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 2 and "bored kept 0 of the 2" in warned[0]


@pytest.mark.embedded
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_smollm_keeps_its_stories_in_either_dtype(tmp_path, dtype):
    """The embedded model's story stage, as the job runs it, for emotions it tends to name:
    after top-ups every emotion has its stories, whichever arithmetic the CPU uses."""
    options = StoryOptions(
        model="smollm2-135m-instruct",
        emotions=("bored", "lonely", "proud"),
        topics=2,
        max_new_tokens=120,
        batch_size=6,
        dtype=dtype,
    )
    with Store(tmp_path / "w.duckdb") as store:
        summary = stories.generate(store, options)
        kept = store.query(
            "SELECT emotion, count(*) AS n FROM passages WHERE text <> '' GROUP BY 1 ORDER BY 1"
        ).to_pylist()
    assert summary.below_minimum == "none", summary
    assert [row["n"] for row in kept] == [2, 2, 2]
