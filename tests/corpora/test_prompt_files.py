"""Hand-written prompt corpora: schema and minimum counts (no model needed)."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

CORPORA = Path(__file__).resolve().parents[2] / "corpora"
ACTIVITY_CATEGORIES = {
    "pleasant",
    "tedious",
    "harmful",
    "creative",
    "social",
    "helpful",
    "risky",
    "restful",
}
PRESSURE_CATEGORIES = {
    "cheating",
    "hiding_mistake",
    "rule_shortcut",
    "lying",
    "taking_credit",
    "sabotage",
}


def read_jsonl(name: str, fields: set[str]) -> list[dict]:
    lines = (CORPORA / name).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    for row in rows:
        assert set(row) == fields, row
        assert all(v != "" for v in row.values()), row
    return rows


def assert_unique(values: list) -> None:
    duplicates = [v for v, n in Counter(values).items() if n > 1]
    assert not duplicates, duplicates


def test_news_pairs():
    fields = {"id", "situation", "condition", "topic", "clean", "corrupted"}
    rows = read_jsonl("news_pairs.jsonl", fields)
    assert_unique([r["id"] for r in rows])
    situations: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        assert r["condition"] not in situations[r["situation"]], r["id"]
        situations[r["situation"]][r["condition"]] = r
    for name, pair in situations.items():
        assert set(pair) == {"good", "bad"}, name
        good, bad = pair["good"], pair["bad"]
        assert good["topic"] == bad["topic"] and good["corrupted"] == bad["corrupted"], name
        assert good["corrupted"] not in (good["clean"], bad["clean"]), name
    conditions = Counter(r["condition"] for r in rows)
    assert conditions["good"] >= 50 and conditions["bad"] >= 50
    topics = Counter(pair["good"]["topic"] for pair in situations.values())
    assert set(topics) == {"academia", "career", "personal"}
    assert min(topics.values()) >= 18, topics


def test_quantity_families():
    """Half the families put danger in falling numbers, each paired with a rising family on
    the same numbers, at about the same length: a reading that drifts with the number's
    size, digits or the prompt's length cancels across the pairs."""
    fields = {"family", "template", "quantities", "unit", "stakes", "pair"}
    rows = read_jsonl("quantity.jsonl", fields)
    assert len(rows) >= 12
    assert_unique([r["family"] for r in rows])
    by_name = {r["family"]: r for r in rows}
    for r in rows:
        assert r["template"].count("{q}") == 1 and r["stakes"] in ("rise", "fall"), r["family"]
        qs = r["quantities"]
        assert len(qs) == 8 and all(isinstance(q, int | float) and q > 0 for q in qs), qs
        assert qs == sorted(set(qs)), f"{r['family']}: not strictly ascending"
        partner = by_name[r["pair"]]
        assert partner["pair"] == r["family"] and partner["stakes"] != r["stakes"]
        assert partner["quantities"] == qs, r["family"]
        words = len(r["template"].split()), len(partner["template"].split())
        assert max(words) <= 1.25 * min(words), (r["family"], words)
    stakes = Counter(r["stakes"] for r in rows)
    assert stakes["rise"] == stakes["fall"]


def test_activities():
    with (CORPORA / "activities.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["activity", "category"]
        rows = list(reader)
    assert len(rows) >= 48
    assert_unique([r["activity"] for r in rows])
    assert all(set(r) == {"activity", "category"} and r["activity"] for r in rows), "stray comma"
    categories = Counter(r["category"] for r in rows)
    assert set(categories) == ACTIVITY_CATEGORIES
    assert min(categories.values()) >= 6, categories


def test_pressure_scenarios():
    fields = {"id", "category", "scenario", "option_a", "option_b", "unethical"}
    rows = read_jsonl("pressure_scenarios.jsonl", fields)
    assert len(rows) >= 30
    assert_unique([r["id"] for r in rows])
    assert {r["category"] for r in rows} <= PRESSURE_CATEGORIES
    letters = Counter(r["unethical"] for r in rows)
    assert set(letters) == {"A", "B"} and min(letters.values()) >= 10, letters
