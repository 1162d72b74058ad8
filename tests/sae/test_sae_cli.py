"""The SAE commands through the real command line: a tiny run, and every bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from saefeatures.config import project_data
from saefeatures.store.database import Store
from tests.conftest import assert_user_error, run_cli
from tests.tiny import save_sae

DATASET = str(project_data("corpora") / "templates.jsonl")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    db = tmp_path / "w.duckdb"
    with Store(db) as store, store.run("seed", {}):
        pass
    return {"SAEFEATURES_DB": str(db), "SAEFEATURES_OUT": str(tmp_path / "out")}


def test_train_list_evaluate(env, tiny_llama_dir):
    common = ("--model", str(tiny_llama_dir), "--config", "tiny", "--dataset", DATASET)
    trained = run_cli("train", *common, "--layer", "2", "--training-tokens", "4096", env=env)
    assert trained.code == 0, trained.stderr
    assert "resid_post" in trained.stdout and "explained_variance" in trained.stdout
    listed = run_cli("saes", "--format", "csv", env=env)
    assert listed.code == 0, listed.stderr
    header, row = listed.stdout.strip().splitlines()
    assert header.startswith("sae_id,layer,architecture") and ",2,topk,256,8,4096," in row
    sae_id = row.split(",")[0]
    evaluated = run_cli("evaluate", sae_id, env=env)
    assert evaluated.code == 0, evaluated.stderr
    assert "ce_loss_recovered" in evaluated.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--layer", "9"), "out of range"),
        (("--set", "k=999"), "must be <= d_sae"),
        (("--training-tokens", "10"), "fewer than one training batch"),
        (("--dataset", "/nonexistent/notes.txt"), "does not exist"),
        (("--hook", "hook_nothing"), "hook"),
    ],
)
def test_bad_train_input(env, tiny_llama_dir, args, fragment):
    db = Path(env["SAEFEATURES_DB"])
    before = _digest(db)
    common = ("--model", str(tiny_llama_dir), "--config", "tiny", "--dataset", DATASET)
    assert_user_error(run_cli("train", *common, *args, env=env), fragment)
    assert _digest(db) == before


def test_config_with_an_unknown_key(env, tiny_llama_dir, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("k: 8\nexpansion: 4\nwarmup: 3\n")
    db = Path(env["SAEFEATURES_DB"])
    before = _digest(db)
    result = run_cli("train", "--model", str(tiny_llama_dir), "--config", str(config), env=env)
    assert_user_error(result, "unknown key 'warmup'")
    assert _digest(db) == before


def test_bad_sae_folders(env, tiny_llama_dir, tmp_path):
    wide = save_sae(tmp_path / "wide", "blocks.1.hook_resid_post", 128)
    no_hook = save_sae(tmp_path / "nohook", "blocks.1.hook_nothing", 64)
    corrupt = save_sae(tmp_path / "corrupt", "blocks.1.hook_resid_post", 64)
    (corrupt / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    db = Path(env["SAEFEATURES_DB"])
    before = _digest(db)
    for folder, fragment in (
        (wide, "d_in is 128"),
        (no_hook, "has no hook blocks.1.hook_nothing"),
        (corrupt, "corrupt"),
    ):
        result = run_cli("load", "--path", str(folder), "--model", str(tiny_llama_dir), env=env)
        assert_user_error(result, fragment)
    assert _digest(db) == before


def test_pretrained_without_network_and_unknown_ids(env, tiny_llama_dir):
    db = Path(env["SAEFEATURES_DB"])
    before = _digest(db)
    offline = run_cli(
        "load",
        "--release",
        "gpt2-small-res-jb",
        "--saelens-id",
        "blocks.0.hook_resid_pre",
        "--model",
        str(tiny_llama_dir),
        env={**env, "HF_ENDPOINT": "http://nonexistent.invalid"},
    )
    assert_user_error(offline, "cannot reach the Hugging Face hub")
    assert_user_error(run_cli("evaluate", "no-such-sae", env=env), "no SAE 'no-such-sae'")
    assert _digest(db) == before
