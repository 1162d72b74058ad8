"""The command line: the commands a user runs, and every bad input of the foundation."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest

from saefeatures.store.database import Store, migrations
from tests.conftest import assert_user_error, run_cli, run_cli_here


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_models_lists_the_registry():
    result = run_cli("models")
    assert result.code == 0, result.stderr
    for fragment in ("smollm2-135m-instruct", "gemma-3-270m", "576", "640", "262144"):
        assert fragment in result.stdout


def test_models_info_prints_hooks(tiny_llama_dir):
    result = run_cli("models", "info", str(tiny_llama_dir))
    assert result.code == 0, result.stderr
    assert "blocks.{L}.hook_resid_post" in result.stdout
    assert "blocks.{L}.attn.hook_z" in result.stdout
    assert "LlamaForCausalLM" in result.stdout


def test_run_then_sql_and_db_info(tmp_path, tiny_llama_dir):
    env = {"SAEFEATURES_DB": str(tmp_path / "env.duckdb"), "SAEFEATURES_OUT": str(tmp_path / "o")}
    result = run_cli("run", "--model", str(tiny_llama_dir), "--layers", "1,3", env=env)
    assert result.code == 0, result.stderr
    assert "(1, " in result.stdout and "store tables" in result.stdout
    assert (tmp_path / "o").is_dir()
    runs = run_cli("sql", "SELECT command, status FROM runs", "--format", "csv", env=env)
    assert sorted(runs.stdout.splitlines()[1:]) == [
        "geometry,ok",  # templates, then the stories the later stages read
        "geometry,ok",
        "run,ok",
        "steer,ok",
        "validate behaviour,ok",
        "validate preferences,ok",
        "validate quantity,ok",
        "validate retrieval,ok",
        "vectors,ok",
        "vectors,ok",
    ]
    model = run_cli("sql", "SELECT n_layers, d_model FROM models", "--format", "json", env=env)
    assert '"n_layers": 4' in model.stdout and '"d_model": 64' in model.stdout
    best = run_cli(
        "sql",
        "SELECT count(DISTINCT layer) AS n FROM geometry WHERE corpus = 'templates'",
        "--format",
        "csv",
        env=env,
    )
    assert best.stdout.splitlines() == ["n", "2"], best.stdout  # --layers 1,3
    assert len(list((tmp_path / "o" / "geometry").rglob("*.html"))) == 2 * 3  # two corpora
    assert len(list((tmp_path / "o" / "steering").rglob("*.html"))) == 3
    assert f"report: {tmp_path / 'o' / 'report.html'}" in result.stdout
    assert "Geometry by layer" in (tmp_path / "o" / "report.html").read_text()
    info = run_cli("db", "info", env=env)
    latest = len(migrations())
    assert f"schema version {latest}" in info.stdout and "models" in info.stdout

    again = run_cli("run", "--model", str(tiny_llama_dir), "--layers", "1,3", env=env)
    assert again.code == 0, again.stderr
    assert _stage_lines(again.stdout) == [
        (stage, "ran" if stage in ("load", "report") else "skipped")
        for stage, _ in _stage_lines(result.stdout)
    ]  # the same inputs: every stage but loading and the report skipped, the same summaries
    assert _between(again.stdout, "geometry of", "store tables") == _between(
        result.stdout, "geometry of", "store tables"
    )
    forced = run_cli(
        "run", "--model", str(tiny_llama_dir), "--layers", "1,3", "--force", "geometry", env=env
    )
    assert forced.code == 0, forced.stderr
    # compare reads every result, and geometry's are new
    assert dict(_stage_lines(forced.stdout)) == {
        "load": "ran",
        "vectors": "skipped",
        "geometry": "ran",
        "steer": "skipped",
        "patch": "skipped",
        "validate": "skipped",
        "compare": "ran",
        "report": "ran",
    }


def _stage_lines(stdout: str) -> list[tuple[str, str]]:
    """(stage, status) rows of the printed stage table."""
    table = stdout[stdout.index("stages (skipped") :]
    return [
        (cells[1], cells[3])
        for line in table.splitlines()
        if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 6
        and cells[3] in ("ran", "skipped")
    ]


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def test_run_trains_saes_for_several_models_then_compares_them(
    tmp_path, tiny_llama_dir, tiny_gemma_dir
):
    env = {"SAEFEATURES_DB": str(tmp_path / "w.duckdb"), "SAEFEATURES_OUT": str(tmp_path / "o")}
    both = f"{tiny_llama_dir},{tiny_gemma_dir}"
    args = ("run", "--models", both, "--layers", "1,3", "--config", "tiny", "--dtype", "float32")
    result = run_cli(*args, env=env)
    assert result.code == 0, result.stderr
    with Store(tmp_path / "w.duckdb", read_only=True) as store:
        saes = store.query("SELECT model, layer FROM saes ORDER BY model").to_pylist()
        aligned = store.query("SELECT DISTINCT model, layer FROM alignment_summary").to_pylist()
        compared = store.query("SELECT DISTINCT model FROM comparisons").num_rows
    trained = sorted((row["model"], row["layer"]) for row in saes)
    assert trained == sorted([(str(tiny_llama_dir), 1), (str(tiny_gemma_dir), 1)])
    # the SAEs the job trained are the ones it aligned
    assert sorted((row["model"], row["layer"]) for row in aligned) == trained
    assert compared >= 1
    stages_run = _stage_lines(result.stdout)
    assert stages_run.count(("train", "ran")) == 2 and ("compare", "ran") in stages_run
    again = run_cli(*args, env=env)
    assert again.code == 0, again.stderr
    assert ("train", "skipped") in _stage_lines(again.stdout)
    assert ("train", "ran") not in _stage_lines(again.stdout)


def test_unknown_model_changes_nothing(db):
    before = _digest(db)
    assert_user_error(
        run_cli("run", "--model", "gpt-17", "--db", str(db)), "unknown model", "smollm2"
    )
    assert _digest(db) == before


def test_layer_out_of_range_changes_nothing(db, tiny_llama_dir):
    before = _digest(db)
    result = run_cli("run", "--model", str(tiny_llama_dir), "--layers", "4", "--db", str(db))
    assert_user_error(result, "out of range", "0..3")
    assert _digest(db) == before


def test_unknown_dtype_device_and_stage(db, tiny_llama_dir):
    before = _digest(db)
    assert_user_error(
        run_cli("run", "--dtype", "float8", "--db", str(db)), "'float8'", "'bfloat16'"
    )
    assert_user_error(run_cli("run", "--device", "tpu", "--db", str(db)), "'tpu'", "'mps'")
    assert_user_error(
        run_cli("run", "--force", "umap", "--db", str(db)), "'umap' is not one of", "'geometry'"
    )
    assert_user_error(
        run_cli("run", "--training-tokens", "0", "--db", str(db)), "--training-tokens"
    )
    assert_user_error(run_cli("run", "--set", "widthh=3", "--db", str(db)), "widthh")
    assert_user_error(run_cli("run", "--set", "eval_tokens=0", "--db", str(db)), "eval_tokens")
    assert_user_error(run_cli("run", "--config", "nope", "--db", str(db)), "SAE config nope")
    assert_user_error(run_cli("run", "--models", ",", "--db", str(db)), "no model given")
    assert_user_error(  # the second model is checked before the first one runs
        run_cli("run", "--models", f"{tiny_llama_dir},gpt-17", "--db", str(db)), "unknown model"
    )
    assert _digest(db) == before


@pytest.mark.parametrize(
    ("query", "fragments"),
    [
        ("SELEC 1", ("SQL error", "syntax error")),
        ("DELETE FROM runs", ("read-only",)),
        ("CREATE TABLE x (a INT)", ("read-only",)),
        ("SELECT * FROM no_such_table", ("SQL error", "no_such_table")),
    ],
)
def test_bad_sql_is_one_line_and_writes_nothing(db, query, fragments):
    before = _digest(db)
    assert_user_error(run_cli("sql", query, "--db", str(db)), *fragments)
    assert _digest(db) == before


def test_sql_on_a_missing_database(tmp_path):
    missing = tmp_path / "nope.duckdb"
    assert_user_error(run_cli("sql", "SELECT 1", "--db", str(missing)), "does not exist")
    assert not missing.exists()


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("report", "--out", "{blocker}"), "the report"),
        (("report", "--out", "{blocker}/sub"), "the report"),
        (("export", "--to", "{blocker}/sub"), "the export"),
        (("run", "--out", "{blocker}"), "the run's artifacts"),
        (("corpus", "list", "--db", "{blocker}/w.duckdb"), "the database"),
    ],
)
def test_an_output_path_under_a_file_is_one_line_and_writes_nothing(db, tmp_path, args, what):
    """A folder to write in that cannot be one (a file is there or above it) is refused
    with one line before any work, not with the traceback of a failed mkdir."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    before = _digest(db)
    filled = [arg.format(blocker=blocker) for arg in args]
    result = run_cli_here(*filled, "--db", str(db)) if "--db" not in args else run_cli_here(*filled)
    assert_user_error(result, f"cannot write {what} in {blocker}", "a folder you can write to")
    assert _digest(db) == before
    assert blocker.read_text() == "not a folder"


def test_newer_schema_through_the_cli(db):
    with Store(db) as store:
        store.con.execute("INSERT INTO schema_version VALUES (42, now(), 'future')")
    before = _digest(db)
    assert_user_error(run_cli("db", "info", "--db", str(db)), "schema version 42", "upgrade")
    assert_user_error(run_cli("run", "--db", str(db)), "schema version 42")
    assert _digest(db) == before


def test_locked_database_is_busy(db):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); print('ok', flush=True); "
            "time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        assert_user_error(run_cli("sql", "SELECT 1", "--db", str(db)), "busy")
        assert_user_error(run_cli("db", "info", "--db", str(db)), "busy")
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert run_cli("sql", "SELECT 1 AS one", "--db", str(db)).code == 0


def test_usage_errors_are_one_line():
    assert_user_error(run_cli("sql"), "Missing argument")
    assert_user_error(run_cli("sql", "SELECT 1", "--format", "xml"), "'xml'", "'json'")
