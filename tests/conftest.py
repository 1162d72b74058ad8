"""Shared fixtures: tiny local models (fast) and the real embedded models (loaded once)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from saefeatures import models
from saefeatures.config import DB_ENV, OUT_ENV
from tests.tiny import BAD, GOOD, save_sae, save_tiny, write_pairs

# `make test` runs one worker per core (pytest-xdist, each file on one worker, so that its
# module fixtures are built once): one thread each.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"  # for the CLI subprocesses too
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_chat_dir(tmp_path_factory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("tiny-chat"), chat=True)


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory) -> Path:
    return save_tiny("gemma3", tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def smollm() -> models.LoadedModel:
    return models.load("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma() -> models.LoadedModel:
    return models.load("gemma-3-270m")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> CliResult:
    """The real command line in a subprocess, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "saefeatures", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        # A hang fails the test; a two-model job on tiny models reading the shipped stories
        # takes several minutes on a busy 2-core CPU.
        timeout=1800,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def run_cli_here(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """The command line's own entry point (`saefeatures.cli.main`) in this process: the
    same parsing, errors and exit codes as `run_cli` without starting an interpreter,
    which costs seconds a call on a busy machine."""
    from saefeatures.cli import app

    saved_env = {key: os.environ.get(key) for key in env or {}}
    saved_argv = sys.argv
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    os.environ.update(env or {})
    sys.argv = ["saefeatures", *args]
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            app.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        sys.argv = saved_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return CliResult(code, stdout.getvalue(), stderr.getvalue())


def digest(path: Path) -> str:
    """The file's SHA-256: a store that bad input must leave as it was."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_user_error(result: CliResult, *fragments: str) -> None:
    """Exit 2, one line on stderr that names the problem, no traceback."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def assert_refused(
    db: Path,
    env: dict[str, str],
    base: tuple[str, ...],
    cases: list[tuple[tuple[str, ...], tuple[str, ...]]],
) -> None:
    """Each `base + args` command line (run here) is one user-error line naming its
    fragments, and the store stays as it was."""
    before = digest(db)
    for args, fragments in cases:
        assert_user_error(run_cli_here(*base, *args, env=env), *fragments)
    assert digest(db) == before


@pytest.fixture(scope="session")
def populated_workspace(tmp_path_factory, tiny_llama_dir, tiny_chat_dir) -> dict[str, Any]:
    """A store with every kind of result, made through the CLI: `run` on a tiny model with
    an SAE loaded first, then patching (all levels) on a tiny chat model with its own SAE,
    then `compare`. Shared because it takes minutes; tests only read it."""
    tmp = tmp_path_factory.mktemp("populated")
    env = {DB_ENV: str(tmp / "w.duckdb"), OUT_ENV: str(tmp / "out")}
    pairs = write_pairs(tmp / "pairs.jsonl", [GOOD, BAD])
    steps = [
        (
            "load",
            "--path",
            str(save_sae(tmp / "sae3", "blocks.3.hook_resid_post", 64)),
            "--model",
            str(tiny_llama_dir),
        ),
        ("run", "--model", str(tiny_llama_dir), "--layers", "1,3"),
        (
            "load",
            "--path",
            str(save_sae(tmp / "sae1", "blocks.1.hook_resid_post", 64)),
            "--model",
            str(tiny_chat_dir),
        ),
        ("patch", "--model", str(tiny_chat_dir), "--pairs", str(pairs), "--dtype", "float32"),
        ("compare",),
    ]
    stdout = {}
    for step in steps:
        result = run_cli(*step, env=env)
        assert result.code == 0, (step, result.stderr)
        stdout[step[0]] = result.stdout
    return {"env": env, "db": tmp / "w.duckdb", "out": tmp / "out", "tmp": tmp, "stdout": stdout}
