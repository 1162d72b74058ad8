"""`saefeatures schema` (and docs/store.md, its output) and `saefeatures sql` with bound
parameters and a row limit, through the command line's own entry point."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from saefeatures.config import DB_ENV
from saefeatures.store import schema_doc
from saefeatures.store.database import Store
from tests.conftest import assert_refused, assert_user_error, run_cli_here

DOC = Path(__file__).resolve().parents[2] / "docs" / "store.md"


@pytest.fixture
def env(tmp_path):
    db = tmp_path / "w.duckdb"
    Store(db).close()
    return {DB_ENV: str(db)}


def test_docs_store_md_is_the_schema_command_output():
    result = run_cli_here("schema", "--markdown")
    assert result.code == 0, result.stderr
    assert DOC.read_text() == result.stdout, (
        f"docs/store.md is out of date with db/schema.sql; regenerate it with "
        f"`{schema_doc.REGENERATE}`"
    )


def test_the_markdown_documents_every_table_column_and_metric_name(tmp_path):
    text = run_cli_here("schema", "--markdown").stdout
    with Store(tmp_path / "w.duckdb") as store:
        columns = store.query(
            "SELECT table_name, column_name, comment FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        ).to_pylist()
        names = store.query("SELECT name FROM metrics")["name"].to_pylist()
    for column in columns:
        assert f"### {column['table_name']}\n" in text
        cell = column["comment"].replace("|", "\\|")
        assert f"| {column['column_name']} | " in text and cell in text, column
    assert all(f"`{name}`" in text for name in names)


def test_schema_prints_one_table_with_its_columns_and_comments():
    result = run_cli_here("schema", "pair_scores")
    assert result.code == 0, result.stderr
    assert "pair_scores (table)" in result.stdout
    assert "clean_score" in result.stdout and "Score of the clean prompt" in result.stdout
    assert "runs (table)" not in result.stdout


def test_schema_without_a_table_prints_every_table_and_view():
    result = run_cli_here("schema")
    assert result.code == 0, result.stderr
    for name in ("runs (table)", "metrics (table)", "sae_features (view)", "patching_peaks"):
        assert name in result.stdout


def test_an_unknown_table_is_one_line():
    assert_user_error(run_cli_here("schema", "pair_score"), "no table or view", "pair_scores")


def test_a_param_binds_a_named_parameter(env):
    result = run_cli_here(
        "sql",
        "SELECT version, $word AS word FROM schema_version WHERE version = $version",
        "--param",
        "version=3",
        "--param",
        "word=a=b",
        "--format",
        "json",
        env=env,
    )
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == [{"version": 3, "word": "a=b"}]


def test_printed_rows_stop_at_the_limit_and_say_how_many_more(env):
    query = "SELECT range AS n FROM range(120)"
    default = run_cli_here("sql", query, "--format", "csv", env=env)
    assert default.code == 0, default.stderr
    assert list(csv.reader(io.StringIO(default.stdout)))[1:] == [[str(n)] for n in range(50)]
    assert "70 more rows" in default.stderr
    five = run_cli_here("sql", query, "--format", "json", "--limit", "5", env=env)
    assert [row["n"] for row in json.loads(five.stdout)] == list(range(5))
    assert "115 more rows" in five.stderr
    every = run_cli_here("sql", query, "--format", "csv", "--all", env=env)
    assert len(every.stdout.splitlines()) == 121 and "more rows" not in every.stderr


def test_a_shipped_query_takes_its_parameter(env):
    result = run_cli_here(
        "sql", "feature_snippets", "--param", "emotion=happy", "--format", "csv", env=env
    )
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == ["feature,value,corpus,passage_id,position,snippet"]


def test_bad_sql_options_are_one_line_each(env):
    assert_refused(
        Path(env[DB_ENV]),
        env,
        ("sql",),
        [
            (("feature_snippets",), ("$emotion", "--param emotion=VALUE")),
            (("SELECT 1", "--param", "emotion"), ("cannot read --param 'emotion'", "NAME=VALUE")),
            (("SELECT 1", "--param", "=happy"), ("cannot read --param",)),
            (("SELECT $a", "--param", "a=1", "--param", "a=2"), ("given twice",)),
            (("SELECT $a", "--param", "a=1", "--param", "b=2"), ("no parameter $b", "$a")),
            (("SELECT 1", "--limit", "0"), ("--limit 0",)),
            (("SELECT 1", "--limit", "-3"), ("--limit -3",)),
        ],
    )
