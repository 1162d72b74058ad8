"""Property-based search over bad input: input files and command-line options.

Every generated case either succeeds or fails as a user error: one line `error: ...`,
exit code 2, no traceback; and a failure leaves the database file's bytes unchanged.
Validation functions and stages are called in-process (the CLI is a thin wrapper over
them); the command line runs in-process for option parsing, and a few cases run it in a
real subprocess. Only the tiny models of `tests/tiny.py` are loaded.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import shutil
import sys
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from saefeatures import activations, steering
from saefeatures.cli import app
from saefeatures.cli import sae as cli_sae
from saefeatures.cli.common import parse_emotions, parse_floats, parse_layers
from saefeatures.config import project_data
from saefeatures.corpora import catalog, stories
from saefeatures.errors import SaefeaturesError
from saefeatures.options import (
    GeometryOptions,
    PatchOptions,
    SteerOptions,
    StoryOptions,
    TrainOptions,
    VectorOptions,
    all_emotions,
    check_emotions,
    check_scales,
)
from saefeatures.patching import conclusions, patch
from saefeatures.sae import api as sae_api
from saefeatures.sae import config as sae_config
from saefeatures.store.database import Store
from saefeatures.vectors import extraction, geometry
from tests.conftest import CliResult, assert_user_error, run_cli
from tests.tiny import BAD, GOOD


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same examples on every run, so CI is reproducible
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- what every outcome must look like -----------------------------------------------------


def _digest(db: Path) -> str:
    """The database's bytes, with its write-ahead log if one is left."""
    wal = db.with_name(db.name + ".wal")
    return hashlib.sha256(db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")).hexdigest()


def _attempt(call: Callable[[], Any]) -> tuple[Any, SaefeaturesError | None]:
    """The call's result, or the user error it raised, checked to print as one line;
    any other exception propagates and fails the test (the user would see a traceback)."""
    try:
        return call(), None
    except SaefeaturesError as error:
        printed = f"error: {error}"
        assert len(printed.splitlines()) == 1, printed
        assert str(error).strip(), "an empty error message"
        return None, error


class Workspace:
    """Fresh copies of a seeded database, one per generated case."""

    def __init__(self, root: Path, template: Path) -> None:
        self.root, self.template = root, template

    def fresh(self) -> tuple[Path, Path]:
        folder = self.root / uuid.uuid4().hex[:10]
        folder.mkdir()
        db = folder / "w.duckdb"
        shutil.copy(self.template, db)
        return db, folder / "out"

    def file(self, name: str, content: bytes) -> Path:
        path = self.root / f"{uuid.uuid4().hex[:10]}-{name}"
        path.write_bytes(content)
        return path


def _in_store(
    workspace: Workspace, stage: Callable[[Store, Path], Any], valid: bool = False
) -> Any:
    """Run a stage on a fresh database: it succeeds, or fails as a user error and leaves
    the database's bytes as they were. With `valid`, the input is good and must succeed."""
    db, out = workspace.fresh()
    before = _digest(db)

    def call() -> Any:
        with Store(db) as store:
            return stage(store, out)

    result, error = _attempt(call)
    if error is not None:
        assert not valid, f"good input was refused: {error}"
        assert _digest(db) == before, f"the database changed on: {error}"
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("bad-input")
    template = root / "seed.duckdb"
    with Store(template) as store, store.run("seed", {}):
        pass
    return Workspace(root, template)


MINI = [  # a corpus of four rated emotions, long enough for small offsets
    {"emotion": "happy", "text": "She laughed in the sun and hugged every friend she met."},
    {"emotion": "happy", "text": "The whole family cheered when the good letter arrived."},
    {"emotion": "sad", "text": "He sat alone by the window as the cold rain kept falling."},
    {"emotion": "sad", "text": "The empty chair at dinner made the evening very quiet."},
    {"emotion": "angry", "text": "He slammed the door and shouted that nobody ever listens."},
    {"emotion": "calm", "text": "The lake was still and she breathed slowly by the shore."},
]


@pytest.fixture(scope="module")
def vector_workspace(tmp_path_factory, tiny_llama_dir) -> Workspace:
    """A store with the tiny model's vectors of the `mini` corpus at every layer."""
    root = tmp_path_factory.mktemp("bad-input-vectors")
    template = root / "vectors.duckdb"
    source = root / "mini.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in MINI))
    with Store(template) as store:
        catalog.import_corpus(store, str(source), "mini")
        made = VectorOptions(
            model=str(tiny_llama_dir),
            corpus="mini",
            emotions=("happy", "sad", "angry", "calm"),
            offset=0,
            min_passages=1,
            dtype="float32",
        )
        extraction.extract(store, made)
    return Workspace(root, template)


# -- generated content ---------------------------------------------------------------------

# Arabic-Indic one, one half and fullwidth "inf" among them: Unicode that looks numeric.
ODD_NUMBERS = [
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "-1",
    "0",
    "1e999",
    "-1e999",
    "",
    " ",
    "1,5",
    "0x10",
    "1_0",
    "\u0661",
    "\u00bd",
    "\uff49\uff4e\uff46",
    "9" * 400,
    "1e-999",
    "+0.5",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", " ", "\t\n", "good", "bad", "GOOD", "happy", "\u2028", "\x85"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
words = st.text(min_size=1, max_size=30).filter(str.strip)


def _record(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict]:
    """A record with the right fields, then some dropped, some given odd values, some
    extra keys added."""

    @st.composite
    def build(draw) -> dict:
        record = draw(st.fixed_dictionaries(fields))
        for key in draw(st.sets(st.sampled_from(sorted(fields)), max_size=2)):
            del record[key]
        for key in draw(st.sets(st.sampled_from(sorted(fields)), max_size=2)):
            record[key] = draw(json_values)
        record.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
        return record

    return build()


def _line(records: st.SearchStrategy[dict]) -> st.SearchStrategy[str]:
    """One line of a JSONL file: a record, truncated JSON, or stray text."""
    dumped = st.tuples(records, st.booleans()).map(
        lambda pair: json.dumps(pair[0], ensure_ascii=pair[1])
    )
    truncated = st.tuples(dumped, st.integers(min_value=1)).map(
        lambda pair: pair[0][: pair[1] % max(len(pair[0]), 1)]
    )
    stray = st.sampled_from(
        [
            "",
            "  ",
            "[]",
            "null",
            "42",
            '"text"',
            "{",
            "}",
            "NaN",
            "emotion,valence,arousal",
            "{'id': 'x'}",
        ]
    )
    return st.one_of(dumped, dumped, truncated, stray, st.text(max_size=40))


@st.composite
def _encoded(draw, lines: st.SearchStrategy[str], max_lines: int = 5) -> bytes:
    """Lines joined by a random line break, in a random encoding."""
    chosen = draw(st.lists(lines, max_size=max_lines))
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(chosen)
    if draw(st.booleans()):
        text += "\n"
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "cp1252"]))
    return text.encode(encoding, errors="replace")


NASTY_JSONL = [
    b"",
    b"\n\n   \n",
    b"[" * 50_000,
    b'{"a": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    b'{"id": ' + b"9" * 5_000 + b"}",
    b"\xff\xfe\x00{",
    b"\x00" * 64,
    bytes(range(256)),
]


def _files(records: st.SearchStrategy[dict], extra: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        _encoded(_line(records)),
        st.binary(max_size=200),
        st.sampled_from(NASTY_JSONL + extra),
    )


PAIR_FIELDS = {
    "id": st.sampled_from(["p1", "p2", "p1 ", "s1-good"]) | words,
    "condition": st.sampled_from(["good", "bad", "neutral", "Good"]),
    "clean": words,
    "corrupted": words,
    "situation": st.sampled_from(["s1", "s2"]) | words,
}
pair_records = _record(PAIR_FIELDS)
PAIR_EXTRA = [
    (json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n").encode(),  # duplicate ids
    json.dumps({**GOOD, "clean": "\ud800"}).encode(),  # an unpaired surrogate escape
    json.dumps({**GOOD, "clean": "a\u2028b\x85c"}, ensure_ascii=False).encode(),
    json.dumps({**GOOD, "topic": float("nan")}).encode(),
    (json.dumps(GOOD) + "\n" + json.dumps(BAD)).encode("utf-16"),
    b"id,condition,clean,corrupted\ns1,good,Great news.,Fresh news.\n",
]

CORPUS_FIELDS = {
    "emotion": st.sampled_from(["happy", "sad", "", " ", "blorp"]) | words,
    "text": words,
    "stories": st.lists(words | st.sampled_from(["", " "]), max_size=3),
    "topic": words,
}
corpus_records = _record(CORPUS_FIELDS)
CORPUS_EXTRA = [
    json.dumps({"emotion": "happy", "text": "a \ud800 b"}).encode(),
    json.dumps({"emotion": "happy", "stories": ["ok", "\udfff"]}).encode(),
    b'{"emotion": "happy", "text": "caf\xe9"}\n',  # latin-1, not UTF-8
    b"emotion,text\nhappy,a good day\n",  # CSV given to the JSONL importer
    json.dumps({"emotion": "happy", "text": "one\u2028two"}, ensure_ascii=False).encode(),
]


# -- 1. input files ------------------------------------------------------------------------


def _storable(rows: list[dict]) -> None:
    """What the store does with text: Arrow must take every string as UTF-8."""
    pa.Table.from_pylist(rows)


@_settings(300)
@given(content=_files(pair_records, PAIR_EXTRA))
def test_pairs_files_are_read_or_refused_in_one_line(workspace, content):
    path = workspace.file("pairs.jsonl", content)
    pairs, error = _attempt(lambda: conclusions.read_pairs(path))
    if error is None:
        assert pairs and len({p.id for p in pairs}) == len(pairs)
        for pair in pairs:
            assert pair.condition in conclusions.CONDITIONS
            assert pair.clean.strip() and pair.corrupted.strip() and pair.id.strip()
        _storable([asdict(pair) for pair in pairs])


@_settings(150)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "id": words,
                "condition": st.sampled_from(["good", "bad"]),
                "clean": words,
                "corrupted": words,
            }
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda row: row["id"],
    ),
    ascii_only=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_well_formed_pairs_are_read_back_whatever_their_text(workspace, rows, ascii_only, newline):
    """Valid JSON whatever the characters: U+2028, U+0085 and U+001C may stand raw in a
    JSON string (json.dumps(ensure_ascii=False) writes them so) and do not end a line."""
    text = newline.join(json.dumps(row, ensure_ascii=ascii_only) for row in rows)
    path = workspace.file("pairs.jsonl", text.encode())
    pairs = conclusions.read_pairs(path)
    assert [(p.id, p.clean, p.corrupted) for p in pairs] == [
        (row["id"], row["clean"].strip(), row["corrupted"].strip()) for row in rows
    ]


CORPUS_NAMES = st.sampled_from(
    ["mine", "mine", "mine", "", "  ", "templates", "neutral", "ünïcödé", "a\udcffb", "a'b\"c;--"]
)


@_settings(120)
@given(content=_files(corpus_records, CORPUS_EXTRA), name=CORPUS_NAMES)
@example(content=CORPUS_EXTRA[0], name="mine")  # was: a traceback and a `failed` run row
def test_corpus_import_stores_all_or_nothing(workspace, content, name):
    path = workspace.file("corpus.jsonl", content)
    count = _in_store(workspace, lambda store, _: catalog.import_corpus(store, str(path), name))
    if count is not None:
        assert count > 0


RATING_HEADERS = st.lists(
    st.sampled_from(["emotion", "valence", "arousal", "source", "extra", "Emotion", ""]),
    min_size=0,
    max_size=5,
)
rating_cells = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["happy", "sad", " calm ", "", '"', "a\x00b", "\u2028"]),
    st.text(max_size=10),
)


@st.composite
def _ratings_csv(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(
            st.sampled_from(
                [
                    b"",
                    b"\xff\xfe\xfa",
                    b"emotion,valence,arousal\n" + b"a" * 200_000 + b",1,1\n",
                    b'emotion,valence,arousal\n"open quote,1,1\n',
                    b"emotion;valence;arousal\nhappy;1;1\n",
                    "emotion,valence,arousal\ncafé,0.1,0.2\n".encode("cp1252"),
                ]
            )
        )
    rows = [draw(RATING_HEADERS)]
    rows += draw(st.lists(st.lists(rating_cells, max_size=5), max_size=4))
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])))


@_settings(300)
@given(content=_ratings_csv())
@example(content=b"valence,arousal,emotion\n0.1,0.2\n")  # was: AttributeError on None
@example(content=b"emotion,valence,arousal\nsad,-0.1,0.2\n\xff,0.1,0.2\n")  # UnicodeDecodeError
def test_ratings_csv_is_read_or_refused_in_one_line(workspace, content):
    path = workspace.file("ratings.csv", content)
    ratings, error = _attempt(lambda: catalog.load_ratings(path))
    if error is None:
        assert ratings.valence and set(ratings.valence) == set(ratings.arousal)
        for emotion in ratings.valence:
            assert emotion and emotion == emotion.strip()
            assert math.isfinite(ratings.valence[emotion]) and math.isfinite(
                ratings.arousal[emotion]
            )
        _storable([{"emotion": e, "source": s} for e, s in ratings.source.items()])


TINY_PRESET = yaml.safe_load((project_data("sae_configs") / "tiny.yaml").read_text())
# `dataset` is left out: a hub-like name would make the check try the network.
CONFIG_KEYS = sorted(set(sae_config.SaeConfig.model_fields) - {"dataset"})
yaml_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            float("nan"),
            float("inf"),
            -float("inf"),
            10**30,
            -(10**30),
            0,
            -1,
            1e300,
            "1e999",
            "auto",
            "topk",
            "standard",
            "all",
            [1],
            [1, 9],
            [-1],
            "1,2",
        ]
    ),
)


@st.composite
def _sae_config_file(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=100))
    if kind == 1:
        return draw(
            st.sampled_from(
                [
                    b"",
                    b"[1, 2]",
                    b"42",
                    b"k: [",
                    b"k: 8\nk: 9\n",
                    b"? [1, 2]\n: 3\n",
                    b"1: 2\n",
                    b"[" * 5_000,
                    b"k: \xff\n",
                    b"a: &a [*a]\n",
                    b"k: !!python/object:os.system x\n",
                    b"\tk: 8\n",
                    b"null: 3\n",
                    b"true: 3\n",
                ]
            )
        )
    values = dict(TINY_PRESET) if kind > 3 else {}
    for key in draw(st.sets(st.sampled_from(CONFIG_KEYS), max_size=2)):
        values.pop(key, None)
    for key in draw(st.sets(st.sampled_from([*CONFIG_KEYS, "warmup", "K", ""]), max_size=3)):
        values[key] = draw(yaml_values)
    text = yaml.safe_dump(values, allow_unicode=draw(st.booleans()))
    if draw(st.integers(0, 5)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode()


TRAIN_OK = {"layers": "1", "layer": None, "tokens": None, "dtype": None, "hook": None, "sets": []}
overrides = st.lists(
    st.tuples(
        st.sampled_from([*CONFIG_KEYS, "nope", "", " "]),
        st.sampled_from(["=", "", "=="]),
        st.sampled_from([*ODD_NUMBERS, "8", "[1, 2]", "{a: 1}", "[", "topk"]),
    ).map("".join),
    max_size=3,
)
layer_text = st.one_of(
    st.sampled_from(
        [
            "all",
            " all ",
            "ALL",
            "1",
            "0,3",
            "4,,8",
            "-1",
            "999",
            "a-b",
            "1-2",
            "",
            ",",
            " ",
            "1.0",
            "1e999",
            "\u0661",
            "0x1",
            "3,3,3",
            "\u2028",
            "+2",
        ]
    ),
    st.text(alphabet="0123456789,- a.", max_size=8),
)


@_settings(300)
@given(
    content=_sae_config_file(),
    layers=st.none() | layer_text,
    layer=st.none() | st.integers(-2, 5),
    tokens=st.none() | st.sampled_from([-1, 0, 1, 255, 256, 10**30]),
    dtype=st.none() | st.sampled_from(["float32", "bfloat16", "auto", "float8", "", "FLOAT32"]),
    hook=st.none() | st.sampled_from(["resid_post", "mlp_out", "hook_nothing", ""]),
    sets=overrides,
)
@example(**{**TRAIN_OK, "content": b"k: .inf\n"})  # was: OverflowError
@example(**{**TRAIN_OK, "content": b"lr: 1.0e+999\n"})  # was: accepted, lr = inf
@example(**{**TRAIN_OK, "content": b"1: 2\n"})  # was: TypeError
def test_sae_config_and_train_options_are_checked_before_training(
    workspace, tiny_llama_dir, content, layers, layer, tokens, dtype, hook, sets
):
    """`saefeatures train` plans every check before anything runs or is written."""
    path = workspace.file("sae.yaml", content)

    def plan() -> Any:
        options = TrainOptions(
            model=str(tiny_llama_dir),
            layers=cli_sae._train_layers(layer, layers),
            config=str(path),
            hook=hook,
            tokens=tokens,
            dtype=dtype,
            overrides=tuple(sets),
        )
        return sae_api.plan_training(options)

    plan, error = _attempt(plan)
    if error is None:
        cfg = plan.cfg
        floats = [value for value in cfg.model_dump().values() if isinstance(value, float)]
        assert all(math.isfinite(value) for value in floats), cfg
        assert plan.layers and all(0 <= layer < 4 for layer in plan.layers)
        assert plan.d_sae >= 1 and (cfg.k is None or cfg.k <= plan.d_sae)
        assert cfg.training_tokens >= cfg.train_batch_size


# -- 2. option values ----------------------------------------------------------------------


@_settings(400)
@given(text=layer_text)
def test_layer_lists(text):
    layers, error = _attempt(lambda: activations.select_layers(parse_layers(text), 4, "tiny"))
    if error is None:
        assert layers == sorted(set(layers)) and layers and all(0 <= x < 4 for x in layers)


@_settings(300)
@given(
    spec=st.one_of(
        st.lists(
            st.sampled_from(
                [
                    *all_emotions()[:40],
                    "",
                    " ",
                    "blorp",
                    "a\nb",
                    "x\x85",
                    "a\u2028b",
                    "HAPPY",
                ]
            ),
            max_size=60,
        ).map(",".join),
        st.text(max_size=20),
    )
)
@example(spec=",".join(all_emotions()))  # was: OSError, too long for a file name
@example(spec="happy\nsad")  # was: an error message of two lines
def test_emotion_lists(spec):
    def chosen() -> Any:
        emotions = parse_emotions(spec)
        check_emotions(emotions)
        return emotions

    emotions, error = _attempt(chosen)
    if error is None:
        assert emotions and set(emotions) <= set(all_emotions())


scale_text = st.one_of(
    st.lists(st.sampled_from([*ODD_NUMBERS, "0.1", "-0.2", "1e308", "0"]), max_size=4).map(
        ",".join
    ),
    st.text(alphabet="0123456789.,-+einfa ", max_size=12),
)


@_settings(400)
@given(text=scale_text)
def test_scale_lists(text):
    def chosen() -> Any:
        scales = parse_floats("--scales", text)
        check_scales("--scales", scales)
        return scales

    scales, error = _attempt(chosen)
    if error is None:
        assert scales and all(math.isfinite(scale) for scale in scales)


odd_floats = st.one_of(
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e308, 1e-308]),
    st.floats(min_value=-2, max_value=2),
)
odd_ints = st.sampled_from([-(2**70), -1, 0, 1, 2**64])
ODD_COMMON = {
    "dtype": st.sampled_from(["auto", "bfloat16", "float8", "", "FLOAT32"]),
    "device": st.sampled_from(["tpu", "cuda", "", "CPU"]),
}
emotion_lists = st.sampled_from(
    [
        "happy,sad,angry",
        "happy",
        "happy,,sad",
        "",
        ",",
        "blorp",
        "happy\nsad",
        "HAPPY",
        "joyful",
        "happy,sad,happy",
    ]
)


@st.composite
def _options(draw, valid: dict[str, Any], odd: dict[str, st.SearchStrategy]) -> dict[str, Any]:
    """Valid options with up to two of them given odd values; `_odd` names those (none:
    the input is good and the stage must succeed)."""
    chosen = draw(st.sets(st.sampled_from(sorted(odd)), max_size=2))
    drawn = {key: draw(odd[key]) for key in chosen}
    odd_keys = sorted(key for key, value in drawn.items() if value != valid.get(key))
    return {**valid, **drawn, "_odd": odd_keys}


def _valid(options: dict[str, Any]) -> bool:
    """Drawn with no odd value: good input (an explicit @example is not judged)."""
    return options.get("_odd") == []


TEXT_FIELDS = {"emotions": parse_emotions, "layers": parse_layers}


def _made(make: Callable[..., Any], options: dict[str, Any], **fixed: Any) -> Callable[[], Any]:
    """Options built as the command line builds them: text fields parsed, then checked."""

    def build() -> Any:
        fields = {key: value for key, value in options.items() if key != "_odd"}
        for key, parse in TEXT_FIELDS.items():
            if isinstance(fields.get(key), str):
                fields[key] = parse(fields[key])
        if isinstance(fields.get("scales"), str):
            fields["scales"] = parse_floats("--scales", fields["scales"])
        return make(**fixed, **fields)

    return build


def _stage(options: dict[str, Any], make: Callable[[], Any], run: Callable[..., Any]) -> Callable:
    """A stage call whose options are built inside it, so refusing them counts as its error."""
    return lambda store, out: run(store, out, make())


OK = {"dtype": "float32", "device": "cpu"}
STEER_OK = {
    **OK,
    "layer": 1,
    "level": "direction",
    "emotions": "happy,sad",
    "scales": "0.1",
    "gen_scale": 0.1,
    "corpus": "mini",
    "method": "denoised",
    "gen_tokens": 1,
}
STEER_ODD = {
    **ODD_COMMON,
    "layer": st.sampled_from([None, -1, 4, 999, 2**64]),
    "level": st.sampled_from(["features", "both", "", "all", "Direction"]),
    "emotions": emotion_lists,
    "scales": scale_text,
    "gen_scale": odd_floats,
    "corpus": st.sampled_from(["nope", "templates", ""]),
    "method": st.sampled_from(["raw", "cooked", ""]),
    "gen_tokens": st.sampled_from([-1, 0, 2]),
}


@_settings(16)
@given(options=_options(STEER_OK, STEER_ODD))
@example(options={**STEER_OK, "_odd": []})  # good input must succeed
@example(options={**STEER_OK, "gen_scale": float("nan")})  # was: refused inside the run
def test_steer_options(vector_workspace, tiny_llama_dir, options):
    made = _made(SteerOptions, options, model=str(tiny_llama_dir))
    valid = _valid(options)
    _in_store(vector_workspace, _stage(options, made, steering.steer), valid)


VECTORS_OK = {
    **OK,
    "corpus": "mini",
    "emotions": "happy,sad",
    "layers": "1",
    "offset": 0,
    "min_passages": 1,
    "denoise_var": 0.5,
    "batch_size": 8,
}
VECTORS_ODD = {
    **ODD_COMMON,
    "corpus": st.sampled_from(["nope", ""]),
    "emotions": emotion_lists,
    "layers": layer_text,
    "offset": st.sampled_from([-1, 40, 10**6, 2**70]),
    "min_passages": st.sampled_from([-1, 0, 3]),
    "denoise_var": odd_floats,
    "batch_size": st.sampled_from([-1, 0, 1, 10**9]),
}


@_settings(16)
@given(options=_options(VECTORS_OK, VECTORS_ODD))
@example(options={**VECTORS_OK, "_odd": []})  # good input must succeed
@example(options={**VECTORS_OK, "batch_size": 0})  # was: range() arg 3 must not be zero
@example(options={**VECTORS_OK, "offset": 10**6})  # was: refused inside the run
def test_vectors_options(vector_workspace, tiny_llama_dir, options):
    made = _made(VectorOptions, options, model=str(tiny_llama_dir))
    run = lambda store, _, chosen: extraction.extract(store, chosen)  # noqa: E731
    _in_store(vector_workspace, _stage(options, made, run), _valid(options))


STORIES_OK = {
    **OK,
    "name": "gen",
    "emotions": "happy",
    "topics": 1,
    "stories_per_topic": 1,
    "batch_size": 16,
    "max_new_tokens": 16,
    "temperature": 0.8,
    "seed": 0,
}
STORIES_ODD = {
    **ODD_COMMON,
    "name": st.sampled_from(["mini", "templates", ""]),
    "emotions": emotion_lists,
    "topics": st.sampled_from([-1, 0, 2, 999]),
    "stories_per_topic": st.sampled_from([-1, 0, 2]),
    "batch_size": st.sampled_from([-1, 0, 1]),
    "max_new_tokens": st.sampled_from([-1, 0, 15]),
    "temperature": odd_floats,
    "seed": odd_ints,
}


@_settings(20)
@given(options=_options(STORIES_OK, STORIES_ODD))
@example(options={**STORIES_OK, "_odd": []})  # good input must succeed
@example(options={**STORIES_OK, "temperature": 0.0})  # was: a transformers traceback
@example(options={**STORIES_OK, "temperature": 1e-308})  # was: inf logits, a torch traceback
@example(options={**STORIES_OK, "stories_per_topic": 0})  # was: an empty corpus stored
@example(options={**STORIES_OK, "name": "mini"})  # was: refused inside the run
def test_story_generation_options(vector_workspace, tiny_chat_dir, options):
    made = _made(StoryOptions, options, model=str(tiny_chat_dir))
    run = lambda store, _, chosen: stories.generate(store, chosen)  # noqa: E731
    summary = _in_store(vector_workspace, _stage(options, made, run), _valid(options))
    if summary is not None:
        assert summary.planned >= 1


PAIR_FILES = [
    (json.dumps(GOOD) + "\n" + json.dumps(BAD) + "\n").encode(),
    (json.dumps(GOOD) + "\n{not json\n").encode(),
    json.dumps({**GOOD, "clean": "\ud800"}).encode(),
    b"\xff\xfe",
    b"",
]
PATCH_OK = {
    **OK,
    "pairs": PAIR_FILES[0],
    "level": "resid",
    "score": "anchors",
    "limit": None,
    "layers": None,
}
PATCH_ODD = {
    **ODD_COMMON,
    "pairs": st.sampled_from(PAIR_FILES[1:]),
    "level": st.sampled_from(["heads", "features", "", "mlp"]),
    "score": st.sampled_from(["replies", "vibes", ""]),
    "limit": odd_ints,
    "layers": layer_text,
}


@_settings(12)
@given(options=_options(PATCH_OK, PATCH_ODD))
@example(options={**PATCH_OK, "_odd": []})  # good input must succeed
@example(options={**PATCH_OK, "score": "replies"})  # was: zip() argument 2 is shorter
def test_patch_options(workspace, tiny_chat_dir, options):
    options = dict(options)  # an explicit example's dict is reused on a rerun
    path = workspace.file("pairs.jsonl", options.pop("pairs"))
    made = _made(PatchOptions, options, model=str(tiny_chat_dir), pairs=path)
    _in_store(workspace, _stage(options, made, patch.patch), _valid(options))


GEOMETRY_OK = {**OK, "ratings": None, "strict": False, "resamples": 100, "seed": 0}
GEOMETRY_ODD = {
    **ODD_COMMON,
    "ratings": st.sampled_from(
        [
            b"emotion,valence,arousal\nhappy,0.9,0.5\nsad,-0.8,-0.3\nangry,-0.6,0.8\n",
            b"emotion,valence,arousal\nhappy,0.9,0.5\n",
            b"valence,arousal,emotion\n0.1,0.2\n",
            b"emotion,valence,arousal\nhappy,nan,0.1\n",
        ]
    ),
    "strict": st.just(True),
    "resamples": st.sampled_from([-1, 0, 99]),
    "seed": odd_ints,
}


@_settings(10)
@given(options=_options(GEOMETRY_OK, GEOMETRY_ODD))
@example(options={**GEOMETRY_OK, "_odd": []})  # good input must succeed
@example(options={**GEOMETRY_OK, "seed": -1})  # was: numpy's ValueError inside the run
@example(options={**GEOMETRY_OK, "dtype": "float8"})  # was: refused inside the run
def test_geometry_options(vector_workspace, tiny_llama_dir, options):
    options = dict(options)
    ratings = options.pop("ratings")
    path = None if ratings is None else vector_workspace.file("ratings.csv", ratings)
    made = _made(GeometryOptions, options, model=str(tiny_llama_dir), corpus="mini", ratings=path)
    _in_store(vector_workspace, _stage(options, made, geometry.analyze), _valid(options))


# -- the command line ----------------------------------------------------------------------


def _cli_in_process(*args: str) -> CliResult:
    """`saefeatures ARGS` through `app.main`, in this process: what the user would see,
    with an escaping exception shown as the traceback it would print."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code, saved = 0, sys.argv
    sys.argv = ["saefeatures", *args]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            app.main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else int(done.code is not None)
    except Exception:
        code = 1
        stderr.write(traceback.format_exc())
    finally:
        sys.argv = saved
    return CliResult(code, stdout.getvalue(), stderr.getvalue())


def _check_cli(result: CliResult, db: Path, before: str) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    if result.code != 0:
        assert_user_error(result)
        assert _digest(db) == before


# Command-line text: no NUL (argv cannot hold one); "\udcff" is how Python shows a byte of
# an argument that is not UTF-8.
odd_option = st.one_of(
    st.sampled_from([*ODD_NUMBERS, "\udcff", "a\nb"]),
    st.text(st.characters(blacklist_characters="\x00"), max_size=6),
)
NO_DATASET = "/nonexistent/notes.txt"  # train: the last check fails, so nothing trains


@st.composite
def _command(draw, models: dict[str, str], files: dict[str, str]) -> list[str]:
    """A command with some options given odd values; each fails before it would run long."""
    value = draw(odd_option)
    kind = draw(st.sampled_from(["train", "steer", "patch", "vectors", "import", "geometry"]))
    if kind == "train":
        option = draw(
            st.sampled_from(
                [
                    "--training-tokens",
                    "--seed",
                    "--layers",
                    "--layer",
                    "--dtype",
                    "--hook",
                    "--set",
                    "--device",
                ]
            )
        )
        return [
            "train",
            "--model",
            models["llama"],
            "--config",
            "tiny",
            "--dataset",
            NO_DATASET,
            *(["--layer", "1"] if option not in ("--layer", "--layers") else []),
            option,
            value,
        ]
    if kind == "steer":  # the seeded store has no vectors: every case fails
        option = draw(
            st.sampled_from(
                [
                    "--scales",
                    "--gen-scale",
                    "--layer",
                    "--level",
                    "--emotions",
                    "--max-new-tokens",
                    "--dtype",
                    "--device",
                ]
            )
        )
        return ["steer", "--model", models["llama"], option, value]
    if kind == "patch":
        option = draw(
            st.sampled_from(["--limit", "--level", "--score", "--layers", "--dtype", "--device"])
        )
        return [
            "patch",
            "--model",
            models["chat"],
            "--pairs",
            files["pairs"],
            "--level",
            "features",
            option,
            value,
        ]
    if kind == "vectors":  # corpus `nope` is unknown: every case fails
        option = draw(
            st.sampled_from(
                [
                    "--offset",
                    "--denoise-var",
                    "--batch-size",
                    "--layers",
                    "--emotions",
                    "--dtype",
                    "--device",
                ]
            )
        )
        return ["vectors", "--model", models["llama"], "--corpus", "nope", option, value]
    if kind == "geometry":
        option = draw(st.sampled_from(["--resamples", "--seed", "--ratings", "--dtype"]))
        return ["geometry", "--model", models["llama"], option, value]
    return ["corpus", "import", files[draw(st.sampled_from(sorted(files)))], "--name", value]


@pytest.fixture(scope="module")
def cli_files(workspace) -> dict[str, str]:
    return {
        "pairs": str(workspace.file("pairs.jsonl", PAIR_FILES[0])),
        "corpus": str(workspace.file("c.jsonl", b'{"emotion": "happy", "text": "a fine day"}\n')),
        "broken": str(workspace.file("b.jsonl", CORPUS_EXTRA[0])),
        "binary": str(workspace.file("x.bin", bytes(range(256)))),
    }


@_settings(60)
@given(data=st.data())
def test_cli_options_in_process(workspace, tiny_llama_dir, tiny_chat_dir, cli_files, data):
    models = {"llama": str(tiny_llama_dir), "chat": str(tiny_chat_dir)}
    args = data.draw(_command(models, cli_files))
    db, out = workspace.fresh()
    before = _digest(db)
    has_out = args[0] in ("train", "steer", "patch", "geometry")
    result = _cli_in_process(*args, "--db", str(db), *(["--out", str(out)] if has_out else []))
    _check_cli(result, db, before)


@pytest.mark.parametrize(
    ("command", "content"),
    [
        ("patch", b"\xff\xfe\xfa not utf-8\n"),
        ("patch", b'{"id": ' + b"7" * 5000 + b"}\n"),
        ("corpus", json.dumps({"emotion": "happy", "text": "\ud800"}).encode()),
        ("train", b"k: .inf\nexpansion: 4\n"),
        ("train", b"1: 2\n"),
    ],
)
def test_cli_in_a_subprocess(workspace, tiny_llama_dir, tiny_chat_dir, command, content):
    """The real command line on a few bad files: one line, exit 2, database unchanged."""
    path = str(workspace.file("input", content))
    db, out = workspace.fresh()
    before = _digest(db)
    if command == "patch":
        args = ["patch", "--model", str(tiny_chat_dir), "--pairs", path, "--out", str(out)]
    elif command == "corpus":
        args = ["corpus", "import", path, "--name", "mine"]
    else:
        args = [
            "train",
            "--model",
            str(tiny_llama_dir),
            "--config",
            path,
            "--layer",
            "1",
            "--dataset",
            NO_DATASET,
            "--out",
            str(out),
        ]
    assert_user_error(run_cli(*args, "--db", str(db)))
    assert _digest(db) == before
