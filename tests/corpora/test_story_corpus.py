"""The project's own story corpus: every story read and checked against its rules."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest

from saefeatures.config import project_data
from saefeatures.corpora import stories
from saefeatures.options import all_emotions, read_lines

CORPORA = project_data("corpora")
FIELDS = {"emotion", "topic", "split", "text"}


def _read(name: str) -> list[dict]:
    return [json.loads(line) for line in (CORPORA / name).read_text().splitlines() if line]


STORIES = _read("stories.jsonl")
NEUTRAL = _read("stories_neutral.jsonl")
TOPICS = read_lines(CORPORA / "topics.txt")


def word_forms(word: str) -> re.Pattern[str]:
    """A word of the list in any inflection (calm, calmly, calmer; happy, happiness;
    worn out, worn-out), whole words only: 'made' is not a form of 'mad'."""
    escaped = re.escape(word).replace(r"\ ", "[ -]").replace(r"\-", "[ -]")
    forms = [escaped + "(s|es|ly|ness|er|est|ed|d)?"]
    if word.endswith("y"):
        forms.append(re.escape(word[:-1]) + "i(ly|ness|er|est|es|ed)")
    if word.endswith("e"):
        forms.append(re.escape(word[:-1]) + "ing")
    if re.fullmatch(r"[a-z]*[^aeiou][aeiou][bdgmnpt]", word):
        forms.append(escaped + re.escape(word[-1]) + "(er|est|en|ened|ening|ens|ing|ed)")
    return re.compile(r"\b(" + "|".join(forms) + r")\b", re.IGNORECASE)


EVERY_WORD = {word: word_forms(word) for word in all_emotions()}
# a feeling named rather than shown: "felt safe", "was so calm", "grew restless"
NAMING = {
    word: re.compile(
        r"\b(feel|feels|felt|feeling|am|'m|is|was|were|be|been|being|seemed|looked|grew|got"
        r"|became|become|so|too|very)\s+(so\s+|very\s+|too\s+|more\s+|most\s+|utterly\s+"
        r"|quite\s+|a little\s+|suddenly\s+)?" + forms.pattern,
        re.IGNORECASE,
    )
    for word, forms in EVERY_WORD.items()
}


def _matches(patterns: dict[str, re.Pattern[str]], expected: dict[str, list[str]]) -> dict:
    return {text: [w for w, p in patterns.items() if p.search(text)] for text in expected}


def test_word_forms_catch_inflections_and_nothing_else():
    expected = {
        "She felt sad": ["sad"],
        "saddened": ["sad"],
        "happiness": ["happy"],
        "a kind man": ["kind"],
        "worn-out shoes": ["worn out"],
        "hoping": ["hope"],
        "He made a cake": [],
        "The saddle": [],
        "contented": ["content"],
    }
    assert _matches(EVERY_WORD, expected) == expected


def test_naming_a_feeling_is_caught_and_other_senses_are_not():
    expected = {
        "She felt safe at last": ["safe"],
        "I was so calm": ["calm"],
        "a kind of bench": [],
        "the patient slept": [],
    }
    assert _matches(NAMING, expected) == expected


def test_every_emotion_has_its_stories():
    """12 stories per emotion, 9 to build its vector and 3 on held-out topics to retrieve."""
    split = Counter((story["emotion"], story["split"]) for story in STORIES)
    assert {story["emotion"] for story in STORIES} == set(all_emotions())
    odd = {e: (split[e, "train"], split[e, "heldout"]) for e in all_emotions()}
    assert {counts for counts in odd.values()} == {(9, 3)}, odd
    pairs = Counter((story["emotion"], story["topic"]) for story in STORIES)
    assert max(pairs.values()) == 1  # no emotion meets a topic twice


@pytest.mark.parametrize("corpus", ["stories", "neutral"])
def test_every_story_keeps_the_rules(corpus):
    rows = STORIES if corpus == "stories" else NEUTRAL
    for row in rows:
        assert set(row) == (FIELDS if corpus == "stories" else FIELDS - {"emotion"}), row
        words = len(row["text"].split())
        assert 80 <= words <= 160, (words, row["text"][:60])
        assert row["topic"] in TOPICS and row["split"] in ("train", "heldout")
        if corpus == "stories":  # the story cleaning's own check, as on model stories
            assert stories.clean(row["text"], row["emotion"])[1] == "kept", row
        listed = [word for word, forms in EVERY_WORD.items() if forms.search(row["text"])]
        if corpus == "neutral":
            assert not listed, (listed, row["text"][:60])
            continue
        assert row["emotion"] not in listed, row["text"][:60]
        assert len(listed) <= 3, (listed, row["text"][:60])  # a kind of, a patient, ...
        naming = [m.group(0) for word in listed if (m := NAMING[word].search(row["text"]))]
        assert not naming, (naming, row["text"][:60])


def test_the_split_is_by_topic_and_neutral_stories_match_it():
    split_of = defaultdict(set)
    for row in STORIES + NEUTRAL:
        split_of[row["topic"]].add(row["split"])
    assert all(len(splits) == 1 for splits in split_of.values()), split_of
    held = {topic for topic, splits in split_of.items() if splits == {"heldout"}}
    assert 6 <= len(held) <= len(TOPICS) // 3
    assert len(NEUTRAL) >= 60 and {row["topic"] for row in NEUTRAL} == set(TOPICS)
