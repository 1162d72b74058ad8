"""The summary views of db/schema.sql against direct computations on hand-made rows."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from saefeatures.store.database import Store
from tests.tiny import model_row

MODEL = "m"


def _pair(pair_id: str, condition: str, clean: float, situation: str) -> dict:
    return {
        "run_id": "r",
        "model": MODEL,
        "pair_id": pair_id,
        "condition": condition,
        "situation": situation,
        "topic": None,
        "score_name": "anchors",
        "score_definition": "d",
        "clean_score": clean,
        "corrupted_score": 0.1,
        "aligned": True,
        "prefix_length": 2,
        "clean_tokens": 6,
        "corrupted_tokens": 6,
        "selection": False,
    }


def _patch(pair_id: str, layer: int, position: int, effect: float, differs: bool) -> dict:
    return {
        "run_id": "r",
        "model": MODEL,
        "level": "resid",
        "pair_id": pair_id,
        "condition": "good",
        "layer": layer,
        "position": position,
        "head": None,
        "feature": None,
        "effect": effect,
        "normalized": None,
        "differs": differs,
        "extra": '{"score": "anchors", "aligned": true}',
    }


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "w.duckdb") as opened:
        opened.register_model("r", model_row(MODEL, 5))
        yield opened


def test_a_peak_is_searched_where_the_prompts_differ_towards_the_clean_score(store):
    pairs = [
        _pair("good", "good", 2.0, "s1"),
        _pair("bad", "bad", -1.5, "s1"),
        _pair("zero", "good", 0.0, "s2"),
    ]
    patches = [
        _patch("good", 1, 3, 0.4, True),
        _patch("good", 2, 4, 0.9, True),  # the largest move towards a positive clean score
        _patch("good", 4, 5, 5.0, False),  # the last token: the same in both prompts
        _patch("bad", 1, 3, -0.7, True),  # towards a negative clean score: the peak
        _patch("bad", 3, 4, 0.8, True),
        _patch("zero", 2, 3, 1.0, True),  # no direction: no peak
        _patch("good", 3, 3, math.nan, True),  # a NaN effect is never a peak
    ]
    store.insert("pair_scores", pa.Table.from_pylist(pairs))
    store.insert("patching_results", pa.Table.from_pylist(patches))
    found = store.query(
        "SELECT pair_id, peak_layer, peak_position, peak_depth, max_effect, score_gap "
        "FROM patching_peaks ORDER BY pair_id"
    ).to_pylist()
    assert found == [
        {
            "pair_id": "bad",
            "peak_layer": 1,
            "peak_position": 3,
            "peak_depth": 0.25,
            "max_effect": pytest.approx(0.7),
            "score_gap": -1.5,
        },
        {
            "pair_id": "good",
            "peak_layer": 2,
            "peak_position": 4,
            "peak_depth": 0.5,
            "max_effect": pytest.approx(0.9),
            "score_gap": 2.0,
        },
    ]


def _steer(level: str, emotion: str, target: str | None, scale: float, metric: str, value):
    return {
        "run_id": "r",
        "model": MODEL,
        "layer": 2,
        "level": level,
        "emotion": emotion,
        "target": target,
        "k": None,
        "scale": scale,
        "metric": metric,
        "value": value,
        "extra": None,
    }


def test_steering_effects_and_the_self_effect_headline(store):
    rows = []
    for scale, own, other in ((0.1, 1.0, 0.2), (0.4, 3.0, -1.0)):
        for emotion in ("happy", "sad"):
            for target in ("happy", "sad"):
                rows.append(
                    _steer(
                        "direction",
                        emotion,
                        target,
                        scale,
                        "delta_logprob",
                        own if emotion == target else other,
                    )
                )
            rows.append(_steer("direction", emotion, None, scale, "effective_scale", scale))
    store.insert("steering_results", pa.Table.from_pylist(rows))
    effects = store.query(
        "SELECT scale, self_effect, other_effect, specificity, effective_scale "
        "FROM steering_effects ORDER BY scale"
    ).to_pylist()
    assert effects == [
        {
            "scale": 0.1,
            "self_effect": 1.0,
            "other_effect": 0.2,
            "specificity": pytest.approx(0.8),
            "effective_scale": 0.1,
        },
        {
            "scale": 0.4,
            "self_effect": 3.0,
            "other_effect": -1.0,
            "specificity": 4.0,
            "effective_scale": 0.4,
        },
    ]
    headline = store.query("SELECT scale, self_effect FROM steering_self_effect").to_pylist()
    assert headline == [{"scale": 0.1, "self_effect": 1.0}]
