"""Model-written stories: cleaning, deterministic batches, resume, bad input."""

from __future__ import annotations

import pytest

from saefeatures import stories
from saefeatures.errors import SaefeaturesError
from saefeatures.store import Store
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
    options = stories.StoryOptions(
        model=str(tiny_chat_dir), emotions="happy,sad", topics=1, stories_per_topic=2,
        batch_size=2, max_new_tokens=24, dtype="float32",
    )  # fmt: skip
    full = tmp_path / "full.duckdb"
    with Store(full) as store:
        summary = stories.generate(store, options)
    assert summary["planned"] == 4
    resumed = tmp_path / "resumed.duckdb"
    with Store(resumed) as store:
        stories.generate(store, options)
        # As if the process died before the second batch was committed.
        store.con.execute("DELETE FROM passages WHERE json_extract(meta, '$.batch')::INT = 1")
        stories.generate(store, options)
    assert _raw(resumed) == _raw(full)
    assert len({row["raw"] for row in _raw(full)}) == 4
    with Store(resumed) as store, pytest.raises(SaefeaturesError, match="other settings"):
        stories.generate(store, stories.StoryOptions(**{**options.__dict__, "seed": 1}))


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
