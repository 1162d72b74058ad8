"""Shared fixtures: tiny local models (fast) and the real embedded models (loaded once)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from saefeatures import models
from tests.tiny import save_tiny


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
        timeout=600,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def assert_user_error(result: CliResult, *fragments: str) -> None:
    """Exit 2, one line on stderr that names the problem, no traceback."""
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
