"""The main job survives what a first run on a new machine can bring: an emotion with no
passages, a stage that fails, either arithmetic (float32 or bfloat16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saefeatures import models, steering
from saefeatures.config import DB_ENV, OUT_ENV, project_data
from saefeatures.store.database import Store
from tests.conftest import run_cli, run_cli_here


def _env(tmp_path: Path) -> dict[str, str]:
    return {DB_ENV: str(tmp_path / "w.duckdb"), OUT_ENV: str(tmp_path / "out")}


def _stages(db: Path, run: int = -1) -> dict[tuple[str, str], str]:
    """(stage, part) -> status of the job's `run`-th run (the last by default)."""
    with Store(db, read_only=True) as store:
        runs = store.query("SELECT run_id FROM runs WHERE command = 'run' ORDER BY started")
        run_id = runs["run_id"].to_pylist()[run]
        rows = store.query(
            "SELECT stage, part, status FROM stage_runs WHERE run_id = ? ORDER BY finished",
            [run_id],
        ).to_pylist()
    return {(row["stage"], row["part"]): row["status"] for row in rows}


def test_a_corpus_without_one_emotion_still_gives_a_whole_job(tmp_path, tiny_llama_dir):
    """Through the real command line: a warning names the emotion, every stage runs on the
    others, the report shows what was left out, and the store records it."""
    templates = project_data("corpora") / "templates.jsonl"
    kept = [line for line in templates.read_text().splitlines() if '"bored"' not in line]
    thin = tmp_path / "thin.jsonl"
    thin.write_text("\n".join(kept) + "\n")
    env = _env(tmp_path)
    assert run_cli("corpus", "import", str(thin), "--name", "thin", env=env).code == 0
    args = ("run", "--model", str(tiny_llama_dir), "--layers", "1", "--corpora", "thin")
    result = run_cli(*args, "--dtype", "float32", env=env)
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "bored" in warnings[0] and "thin" in warnings[0], warnings
    statuses = _stages(tmp_path / "w.duckdb")
    assert set(statuses.values()) == {"ran"}
    assert {stage for stage, _ in statuses} >= {"vectors", "geometry", "steer", "validate"}
    with Store(tmp_path / "w.duckdb", read_only=True) as store:
        left = store.query("SELECT corpus, emotion, stage, n_passages FROM left_out").to_pylist()
        covered = store.query(
            "SELECT count(DISTINCT emotion) AS n FROM emotion_vectors WHERE corpus = 'thin'"
        )["n"][0].as_py()
    assert left == [{"corpus": "thin", "emotion": "bored", "stage": "vectors", "n_passages": 0}]
    assert covered == 29
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Coverage" in report and "bored" in report


def _broken_steer(*args, **kwargs):
    raise RuntimeError("steering broke")


def test_a_failing_stage_leaves_the_others_and_a_rerun_retries_it(
    tmp_path, tiny_llama_dir, monkeypatch
):
    env = _env(tmp_path)
    args = ("run", "--model", str(tiny_llama_dir), "--layers", "1", "--dtype", "float32")
    monkeypatch.setattr(steering, "steer", _broken_steer)
    failed = run_cli_here(*args, env=env)
    assert failed.code == 1, failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    assert "failed: steer (layer 1, stories)" in failed.stdout
    assert "RuntimeError: steering broke (traceback in " in failed.stdout
    statuses = _stages(tmp_path / "w.duckdb")
    assert statuses[("steer", "layer 1, stories")] == "failed"
    after = [key for key in statuses if key[0] in ("patch", "validate", "compare")]
    assert len(after) == 6 and all(statuses[key] == "ran" for key in after), statuses
    assert (tmp_path / "out" / "report.html").is_file()
    logs = list((tmp_path / "out" / "logs").glob("*steer*.log"))
    assert len(logs) == 1 and "steering broke" in logs[0].read_text()
    with Store(tmp_path / "w.duckdb", read_only=True) as store:
        job = store.query("SELECT status, error FROM runs WHERE command = 'run'").to_pylist()
    assert job == [
        {
            "status": "failed",
            "error": f"stages failed: steer (layer 1, stories) [{tiny_llama_dir}]",
        }
    ]

    monkeypatch.undo()
    again = run_cli_here(*args, env=env)
    assert again.code == 0, again.stderr
    rerun = _stages(tmp_path / "w.duckdb")
    ran = sorted(stage for (stage, _), status in rerun.items() if status == "ran")
    # compare reads every result, and the new steering run is one
    assert ran == ["compare", "steer"], rerun


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_job_runs_in_either_arithmetic(tmp_path, tiny_llama_dir, dtype, monkeypatch):
    """bfloat16 is emulated where the CPU lacks it: the job must work on both kinds of CPU,
    and the store records what it computed with. Every stage works on the one model the
    job loaded."""
    env = _env(tmp_path)
    loads = []
    load_hf = models._load_hf
    monkeypatch.setattr(models, "_load_hf", lambda *a, **k: loads.append(a) or load_hf(*a, **k))
    args = ("run", "--model", str(tiny_llama_dir), "--layers", "1", "--dtype", dtype)
    result = run_cli_here(*args, env=env)
    assert result.code == 0, result.stderr
    assert len(loads) == 1
    with Store(tmp_path / "w.duckdb", read_only=True) as store:
        configs = store.query(
            "SELECT command, config FROM runs WHERE command IN ('vectors', 'steer')"
        ).to_pylist()
    for row in configs:
        config = json.loads(row["config"])
        assert config["dtype_used"] == dtype, row
        assert isinstance(config["native_bfloat16"], bool) and config["torch_threads"] >= 1
    assert set(_stages(tmp_path / "w.duckdb").values()) == {"ran"}
