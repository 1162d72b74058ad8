"""Interruption: each long command is stopped (Ctrl-C, SIGKILL) at fixed points, then rerun.

After every stop the store opens, holds no run left `running` (a run of a dead process is
marked failed on the next writable open) and no row of a run that did not end `ok`; the
last rerun finishes, and the store and the artifacts folder end as after one
uninterrupted run of the same command in a separate workspace.

The stop points are exact, not timed: the CLI under test (`python -m saefeatures`) runs
with a `sitecustomize`, written by this file into the child's PYTHONPATH, that pauses at
the N-th call of the function named in SAEFEATURES_TEST_PAUSE, says so on stderr and
waits for a byte on stdin; the test signals the paused process, then releases it (a
handler that does not raise, like `train`'s first Ctrl-C, then carries on from there).
Without the variable the hook does nothing. Each command's stops form one chain on one
store: stop, check, rerun and stop again further on, check, ..., and a last rerun to the end.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saefeatures.config import project_data
from saefeatures.store.database import Store
from tests.conftest import CliResult
from tests.tiny import BAD, GOOD, save_sae, write_pairs

TEXT = str(project_data("corpora") / "templates.jsonl")
EMOTIONS = "happy,sad,angry,calm"
PAUSE_ENV = "SAEFEATURES_TEST_PAUSE"
MARK = "@@paused"
TIMEOUT = 300

HOOK = f'''"""Pauses the CLI under test at one call (tests/pipeline/test_interruption.py)."""
import functools, importlib, os, sys


def _install(spec):
    """spec: module:Qualified.name:before|after:N[:argument] -- the N-th call (counting only
    calls with `argument` among their string arguments, when given)."""
    module, qualname, when, nth, *argument = spec.split(":")
    owner = importlib.import_module(module)
    *parents, name = qualname.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original, calls = getattr(owner, name), [0]

    def pause():
        sys.stderr.write("{MARK} " + spec + "\\n")
        sys.stderr.flush()
        os.read(0, 1)

    @functools.wraps(original)
    def paused(*args, **kwargs):
        counted = not argument or argument[0] in [a for a in args if isinstance(a, str)]
        calls[0] += counted
        here = counted and calls[0] == int(nth)
        if here and when == "before":
            pause()
        result = original(*args, **kwargs)
        if here and when == "after":
            pause()
        return result

    setattr(owner, name, paused)


if os.environ.get("{PAUSE_ENV}"):
    sys.path.insert(0, os.getcwd())  # import what `python -m` will run, as it will
    _install(os.environ["{PAUSE_ENV}"])
'''


@dataclass(frozen=True)
class Stop:
    pause: str  # where, as SAEFEATURES_TEST_PAUSE: module:function:before|after:N[:argument]
    signal: signal.Signals


# -- running the CLI -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Runs `python -m saefeatures ARGS`, to the end or to a stop."""
    hook_dir = tmp_path_factory.mktemp("hook")
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(hook_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    env.setdefault("OMP_NUM_THREADS", "1")  # the same threads everywhere: identical floats

    def run(args: list[str], stop: Stop | None = None) -> CliResult:
        child = subprocess.Popen(
            [sys.executable, "-m", "saefeatures", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, PAUSE_ENV: stop.pause} if stop else env,
            preexec_fn=_ctrl_c_restored,
        )
        stdout: list[str] = []
        reader = threading.Thread(target=lambda: stdout.append(child.stdout.read()))
        reader.start()
        timer = threading.Timer(TIMEOUT, child.kill)
        timer.start()
        stderr, paused = [], False
        try:
            for line in child.stderr:
                stderr.append(line)
                if stop and line.startswith(MARK):
                    paused = True
                    child.send_signal(stop.signal)
                    if stop.signal != signal.SIGKILL:
                        _release(child)
                    break
            stderr.append(child.stderr.read())
            code = child.wait()
        finally:
            timer.cancel()
            reader.join()
        result = CliResult(code, "".join(stdout), "".join(stderr))
        assert not stop or paused, (f"never reached {stop.pause}", result)
        return result

    return run


def _ctrl_c_restored() -> None:
    """In the child before exec: Ctrl-C at its default and not blocked, whatever state this
    test process is in (in a pytest-xdist worker that had run other test files first, the
    children ignored SIGINT; an ignored or blocked signal stays so across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _release(child: subprocess.Popen) -> None:
    """One byte on stdin: the paused child goes on (or, with a raising handler, dies there)."""
    try:
        child.stdin.write("\n")
        child.stdin.flush()
    except BrokenPipeError:
        pass


def _after_pause(stderr: str) -> list[str]:
    """What the CLI printed on stderr once signalled, blank lines left out."""
    tail = stderr[stderr.index(MARK) :].splitlines()[1:]
    return [line for line in tail if line.strip()]


# -- the store after a stop --------------------------------------------------------------

# Rows that the job (`run`) keeps on purpose when it dies, each complete: the record of
# its finished stages (so a rerun skips them), the model and the built-in corpora it
# registered. A stage's own results never belong to a run that did not end `ok`.
JOB_CHECKPOINTS = frozenset({"stage_runs", "models", "corpora", "passages"})
INTERRUPTED = "interrupted: the process ended before the run finished"


def _check_store(db: Path, stop: Stop, result: CliResult) -> None:
    """After a stop: what the CLI said, then the store as the next command finds it."""
    if stop.signal == signal.SIGKILL:
        assert result.code == -signal.SIGKILL, result
    else:  # Ctrl-C: one line (`train` says where its checkpoint is first), no traceback
        assert result.code == 130, result
        said = _after_pause(result.stderr)
        printed = result.stdout + result.stderr
        assert "Traceback" not in printed and "Exception ignored" not in printed, result
        assert said[-1] == "interrupted", said
        assert all(line.startswith("checkpoint at ") for line in said[:-1]), said
    with Store(db, read_only=True) as store:  # as the killed process left it
        before = _runs(store)
    left = {run_id for run_id, run in before.items() if run["status"] == "running"}
    assert bool(left) == (stop.signal == signal.SIGKILL), before
    with Store(db) as store:  # a writer: it fails the dead process's runs
        runs = _runs(store)
        assert not [run for run in runs.values() if run["status"] == "running"], runs
        assert all(runs[run_id]["error"] == INTERRUPTED for run_id in left), runs
        _check_rows(store, runs)


def _runs(store: Store) -> dict[str, dict[str, Any]]:
    rows = store.query("SELECT run_id, command, status, error FROM runs").to_pylist()
    return {row["run_id"]: row for row in rows}


def _check_rows(store: Store, runs: dict[str, dict[str, Any]]) -> None:
    """Every row belongs to a recorded run that ended ok (or is one of the job's checkpoints),
    and every corpus is whole."""
    tables = store.query(
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'run_id' "
        "AND table_name <> 'runs' ORDER BY table_name"
    )["table_name"].to_pylist()
    for table in tables:
        owners = store.query(f'SELECT run_id, count(*) AS n FROM "{table}" GROUP BY run_id')
        for owner in owners.to_pylist():
            run = runs.get(owner["run_id"])
            assert run is not None, (table, owner, "no such run")
            kept = run["command"] == "run" and table in JOB_CHECKPOINTS
            assert run["status"] == "ok" or kept, (table, owner, run)
    partial = store.query(
        "SELECT c.corpus, any_value(c.n_passages) AS n, count(p.passage_id) AS stored "
        "FROM corpora c LEFT JOIN passages p USING (corpus) GROUP BY c.corpus "
        "HAVING any_value(c.n_passages) <> count(p.passage_id)"
    ).to_pylist()
    assert not partial, partial


# -- comparing two workspaces ----------------------------------------------------------

VOLATILE = re.compile(r"run_id|^runs$|seconds|per_s|started|finished|created|applied|peak_memory")
# A job's rerun skips what the stopped one finished: the same stages, recorded again as
# skipped (writing nothing), with the summaries of the stopped run.
DEDUPED = {"stage_runs": {"status", "written"}}
# The key of `compare` digests the ids of the runs it reads: unique to each workspace.
RUN_IDS_KEY = "<a digest of run ids>"


def dump(db: Path, root: Path) -> dict[str, list[tuple]]:
    """Every table but `runs`, without its volatile columns (run ids, times, durations),
    with `root` in paths written as <root>, rows sorted by all the columns left:
    comparable across workspaces."""
    dumped = {}
    with Store(db, read_only=True) as store:
        columns = store.query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_name NOT IN ('runs', 'schema_version') "
            "ORDER BY table_name, ordinal_position"
        ).to_pylist()
        for table in sorted({c["table_name"] for c in columns}):
            kept = [
                c["column_name"]
                for c in columns
                if c["table_name"] == table
                and not VOLATILE.search(c["column_name"])
                and not c["data_type"].startswith("TIMESTAMP")
                and c["column_name"] not in DEDUPED.get(table, ())
            ]
            listed = ", ".join(f'"{name}"' for name in kept)
            rows = store.query(f'SELECT {listed} FROM "{table}"').to_pylist()
            for row in rows:
                if table == "stage_runs" and row["stage"] == "compare":
                    row["key"] = RUN_IDS_KEY
            normal = [tuple(_normal(row[name], str(root)) for name in kept) for row in rows]
            if table in DEDUPED:
                normal = list(dict.fromkeys(normal))
            dumped[table] = sorted(normal, key=repr)
    return dumped


def _normal(value: Any, root: str) -> Any:
    if isinstance(value, str):
        value = value.replace(root, "<root>")
        if value.startswith(("{", "[")):
            try:
                return json.dumps(_normal(json.loads(value), root), sort_keys=True)
            except json.JSONDecodeError:
                return value
        return value
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {key: _normal(v, root) for key, v in value.items() if not VOLATILE.search(key)}
    if isinstance(value, list | tuple):
        return [_normal(v, root) for v in value]
    return value


def _files(out: Path) -> list[str]:
    return sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())


def _assert_same(expected: dict[str, list[tuple]], got: dict[str, list[tuple]]) -> None:
    assert list(got) == list(expected)
    for table, rows in expected.items():
        assert len(got[table]) == len(rows), (table, len(got[table]), len(rows))
        for index, (a, b) in enumerate(zip(got[table], rows, strict=True)):
            assert a == b, (table, index, a, b)


# -- the chain -------------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "w.duckdb"

    @property
    def out(self) -> Path:
        return self.root / "out"


Args = Callable[[Workspace], list[str]]


@pytest.fixture(scope="module")
def references(tmp_path_factory, cli):
    """One uninterrupted run per command, dumped; made on first use."""
    made: dict[str, tuple[dict, list[str]]] = {}

    def reference(name: str, args: Args, base: Path | None = None) -> tuple[dict, list[str]]:
        if name not in made:
            space = _workspace(tmp_path_factory.mktemp(f"reference-{name}"), base)
            done = cli(args(space))
            assert done.code == 0, done
            _check_store_ok(space.db)
            made[name] = (dump(space.db, space.root), _files(space.out))
        return made[name]

    return reference


def _workspace(root: Path, base: Path | None) -> Workspace:
    space = Workspace(root)
    if base is not None:  # a prepared store (read by both runs, never written after)
        shutil.copy(base / "w.duckdb", space.db)
    return space


def _chain(
    tmp_path: Path,
    cli,
    references,
    name: str,
    args: Args,
    stops: list[Stop],
    base: Path | None = None,
) -> None:
    """Stop after stop on one store, each checked, then a rerun to the end: as the reference."""
    expected, files = references(name, args, base)
    space = _workspace(tmp_path, base)
    for stop in stops:
        _check_store(space.db, stop, cli(args(space), stop))
    done = cli(args(space))
    assert done.code == 0, done
    _check_store_ok(space.db)
    _assert_same(expected, dump(space.db, space.root))
    assert _files(space.out) == files  # no half-written or stale artifact left behind


def _check_store_ok(db: Path) -> None:
    with Store(db) as store:
        _check_rows(store, _runs(store))


# -- the commands ----------------------------------------------------------------------


def test_vectors(tmp_path, cli, references, tiny_llama_dir):
    def args(space: Workspace) -> list[str]:
        return [
            "vectors",
            "--model",
            str(tiny_llama_dir),
            "--layers",
            "1,3",
            "--offset",
            "10",
            "--emotions",
            EMOTIONS,
            "--dtype",
            "float32",
            "--db",
            str(space.db),
        ]

    stops = [
        Stop("saefeatures.activations:harvest:before:3", signal.SIGINT),  # pooling passages
        Stop(
            "saefeatures.store.database:Store._finish:before:1:ok", signal.SIGKILL
        ),  # written, not ok
    ]
    _chain(tmp_path, cli, references, "vectors", args, stops)


def test_train(tmp_path, cli, references, tiny_llama_dir):
    def args(space: Workspace) -> list[str]:
        return [
            "train",
            "--model",
            str(tiny_llama_dir),
            "--config",
            "tiny",
            "--dataset",
            TEXT,
            "--layer",
            "2",
            "--dtype",
            "float32",
            "--db",
            str(space.db),
            "--out",
            str(space.out),
        ]

    training = "saefeatures.sae.training"
    stops = [
        # Ctrl-C: the step ends, a checkpoint is written, the rerun resumes from it
        Stop(f"{training}:Coordinator.save_checkpoint:after:1", signal.SIGINT),
        Stop(f"{training}:save_final:after:1", signal.SIGKILL),  # saved, not registered
    ]
    _chain(tmp_path, cli, references, "train", args, stops)


@pytest.fixture(scope="module")
def with_sae(tmp_path_factory, tiny_llama_dir) -> Path:
    """Vectors at layer 2 and an SAE there: what `align` and `steer` read (the reference
    and the stopped runs each start from a copy)."""
    from saefeatures.options import LoadOptions, VectorOptions
    from saefeatures.sae import api
    from saefeatures.vectors import extraction

    root = tmp_path_factory.mktemp("with-sae")
    folder = save_sae(root / "sae", "blocks.2.hook_resid_post", 64)
    with Store(root / "w.duckdb") as store:
        made = VectorOptions(
            model=str(tiny_llama_dir),
            emotions=tuple(EMOTIONS.split(",")),
            layers=(2,),
            offset=10,
            dtype="float32",
        )
        extraction.extract(store, made)
        api.load(store, root / "out", LoadOptions(model=str(tiny_llama_dir), path=folder))
    return root


ALIGN = [
    "--text",
    TEXT,
    "--sample-rows",
    "4",
    "--null-directions",
    "200",
    "--top",
    "10",
    "--k-max",
    "8",
    "--dtype",
    "float32",
]


def test_align(tmp_path, cli, references, tiny_llama_dir, with_sae):
    def args(space: Workspace) -> list[str]:
        return [
            "align",
            "--layer",
            "2",
            "--model",
            str(tiny_llama_dir),
            *ALIGN,
            "--db",
            str(space.db),
        ]

    stops = [
        Stop("saefeatures.activations:harvest:before:2", signal.SIGINT),  # scanning features
        Stop("saefeatures.store.database:Store.insert:after:1:alignments", signal.SIGKILL),
    ]
    _chain(tmp_path, cli, references, "align", args, stops, base=with_sae)


def test_steer(tmp_path, cli, references, tiny_llama_dir, with_sae):
    def args(space: Workspace) -> list[str]:
        return [
            "steer",
            "--model",
            str(tiny_llama_dir),
            "--layer",
            "2",
            "--level",
            "direction",
            "--emotions",
            "happy,sad,calm",
            "--scales",
            "0.1,0.2",
            "--max-new-tokens",
            "3",
            "--dtype",
            "float32",
            "--db",
            str(space.db),
            "--out",
            str(space.out),
        ]

    stops = [
        Stop("saefeatures.steering:_generation_rows:before:1", signal.SIGINT),
        Stop("saefeatures.store.database:Store.insert:after:1:steering_results", signal.SIGKILL),
    ]
    _chain(tmp_path, cli, references, "steer", args, stops, base=with_sae)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", [GOOD, BAD])


def test_patch(tmp_path, cli, references, tiny_chat_dir, pairs):
    def args(space: Workspace) -> list[str]:
        return [
            "patch",
            "--model",
            str(tiny_chat_dir),
            "--pairs",
            str(pairs),
            "--dtype",
            "float32",
            "--db",
            str(space.db),
            "--out",
            str(space.out),
        ]

    stops = [
        Stop("saefeatures.patching.patch:_patch_pair:before:2", signal.SIGINT),  # one pair done
        Stop("saefeatures.store.database:Store.insert:after:1:patching_results", signal.SIGKILL),
    ]
    _chain(tmp_path, cli, references, "patch", args, stops)


def test_run(tmp_path, cli, references, tiny_llama_dir):
    def args(space: Workspace) -> list[str]:
        return [
            "run",
            "--model",
            str(tiny_llama_dir),
            "--layers",
            "1,3",
            "--dtype",
            "float32",
            "--db",
            str(space.db),
            "--out",
            str(space.out),
        ]

    stops = [
        # 1st: the sample prompt, 2nd on: the vectors stage pooling passages
        Stop("saefeatures.activations:harvest:before:3", signal.SIGINT),
        # the rerun: vectors and geometry done, steering written but not yet ok
        Stop("saefeatures.store.database:Store._finish:before:3:ok", signal.SIGKILL),
    ]
    _chain(tmp_path, cli, references, "run", args, stops)
