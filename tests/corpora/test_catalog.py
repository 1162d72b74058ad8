"""Corpora: emotion lists, ratings, JSONL reading, and import through the CLI."""

from __future__ import annotations

import json

import pytest

from saefeatures.corpora import catalog
from saefeatures.errors import SaefeaturesError
from saefeatures.options import all_emotions, default_emotions
from saefeatures.store.database import Store
from tests.conftest import assert_user_error, run_cli

REQUIRED = "happy joyful sad angry furious calm panicked afraid desperate loving disgusted "
REQUIRED += "nostalgic proud grateful excited"


def test_default_emotions_span_the_four_quadrants():
    ratings = catalog.load_ratings()
    default = default_emotions()
    quadrants = {(ratings.valence[e] > 0, ratings.arousal[e] > 0) for e in default}
    assert len(quadrants) == 4


def test_shipped_ratings_cover_every_word_with_a_source():
    ratings = catalog.load_ratings()
    words = all_emotions()
    assert ratings.missing(words) == []
    assert all(-1 <= ratings.valence[w] <= 1 and -1 <= ratings.arousal[w] <= 1 for w in words)
    assert all(ratings.source[w].startswith("nrc_vad_v1") for w in words)
    assert ratings.valence["happy"] > 0.9 > -0.5 > ratings.valence["sad"]


def test_user_ratings_csv_is_checked(tmp_path):
    good = tmp_path / "r.csv"
    good.write_text("emotion,valence,arousal\nhappy,0.9,0.5\nsad,-0.8,-0.3\n")
    assert catalog.load_ratings(good).valence == {"happy": 0.9, "sad": -0.8}
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,valence,arousal\nhappy,0.9,0.5\nsad,low,-0.3\n")
    with pytest.raises(SaefeaturesError, match="line 3"):
        catalog.load_ratings(bad)
    (tmp_path / "nohead.csv").write_text("happy,0.9\n")
    with pytest.raises(SaefeaturesError, match="header"):
        catalog.load_ratings(tmp_path / "nohead.csv")


def test_read_jsonl_stories_and_text(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [
        {"emotion": "happy", "topic": "t", "stories": ["one", "two", " "]},
        {"emotion": "sad", "text": "three"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    passages = catalog.read_jsonl(path)
    assert [(p.emotion, p.text) for p in passages] == [
        ("happy", "one"),
        ("happy", "two"),
        ("sad", "three"),
    ]
    assert passages[0].topic == "t"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"emotion": "happy", "text": "ok"}\n{"emotion": "sad", "text": \n', "line 2"),
        ('{"emotion": "happy", "stories": "not a list"}\n', "line 1"),
        ('{"emotion": "happy"}\n', "line 1"),
        ("\n\n", "empty"),
    ],
)
def test_malformed_jsonl(tmp_path, content, message):
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    with pytest.raises(SaefeaturesError, match=message):
        catalog.read_jsonl(path)


def test_import_list_show_through_the_cli(tmp_path, tiny_llama_dir):
    db = tmp_path / "w.duckdb"
    source = tmp_path / "c.jsonl"
    source.write_text(
        '{"emotion": "happy", "stories": ["a happy day", "more joy"]}\n'
        '{"emotion": "sad", "text": "a grey day"}\n'
    )
    result = run_cli("corpus", "import", str(source), "--name", "mine", "--db", str(db))
    assert result.code == 0, result.stderr
    assert "imported 3 passages" in result.stdout
    listed = run_cli("corpus", "list", "--db", str(db))
    assert "mine" in listed.stdout and "templates" in listed.stdout
    shown = run_cli("corpus", "show", "mine", "--model", str(tiny_llama_dir), "--db", str(db))
    assert shown.code == 0, shown.stderr
    assert "happy" in shown.stdout and "tokens per passage" in shown.stdout


def test_bad_imports_write_nothing(tmp_path):
    db = tmp_path / "w.duckdb"
    Store(db).close()
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"emotion": "happy", "text": "ok"}\n{not json}\n')
    assert_user_error(
        run_cli("corpus", "import", str(broken), "--name", "x", "--db", str(db)), "line 2"
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_user_error(
        run_cli("corpus", "import", str(empty), "--name", "x", "--db", str(db)), "empty"
    )
    assert_user_error(
        run_cli("corpus", "import", str(tmp_path / "nope.jsonl"), "--name", "x", "--db", str(db)),
        "does not exist",
    )
    with Store(db, read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM passages")["n"][0].as_py() == 0
        assert store.query("SELECT count(*) AS n FROM runs")["n"][0].as_py() == 0


def test_hub_import_offline_is_one_clear_line(tmp_path):
    result = run_cli(
        "corpus",
        "import",
        "hf:snae/emotion_stories_gemma_4_4B",
        "--name",
        "hub",
        "--db",
        str(tmp_path / "w.duckdb"),
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert_user_error(result, "cannot load Hugging Face dataset", "import the JSONL file")
