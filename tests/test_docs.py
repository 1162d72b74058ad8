"""README.md and docs/ speak to users: short enough to read, free of words about how the
tool is developed, every relative link pointing at something that exists, and every
command they show accepted by the command line as written."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from saefeatures.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 350

# Phrases that belong to a tool's development, never to its manual (case-insensitive,
# whole words). A user reads what the tool does, not who asked for it, when, or on
# which machine it was written.
DEVELOPMENT_WORDS = (
    "session",
    "sessions",
    "budget",
    "budgets",
    "target met",
    "development machine",
    "dev machine",
    "shared CPU",
    "issue #",
    "TODO",
    "FIXME",
    "helper",
    "helpers",
    "earlier run",
    "this stop",
    "we were asked",
    "we were told",
    "as requested",
    "on this machine",
    "pull request",
    "this commit",
    "WIP",
    "/work/main",
)
# A commit hash: 7 to 40 hex digits with at least one digit and one letter a-f (a word
# of digits alone is a number, of letters alone a word such as "facade"). Not after "#"
# (a colour such as #b2182bff) or "0x" (a hex literal): those are not hashes.
HASH = re.compile(
    r"(?<![\w#])(?<!0x)(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?!\w)", re.I
)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
CODE_SPAN = re.compile(r"`+[^`]*`+")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)
SHELL_BLOCKS = {"", "sh", "bash", "shell", "console"}
SEPARATORS = {"&&", "||", ";", "|"}
CLI = typer.main.get_command(app)


def documents() -> list[Path]:
    """README.md, CHANGELOG.md when there is one, and every page under docs/."""
    top = [ROOT / name for name in ("README.md", "CHANGELOG.md") if (ROOT / name).is_file()]
    return top + sorted((ROOT / "docs").rglob("*.md"))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclass(frozen=True)
class Line:
    number: int
    text: str
    in_code_block: bool

    language: str = ""


def lines(path: Path) -> list[Line]:
    """The file's lines, each marked when it lies inside a fenced code block (with the
    block's language)."""
    fenced, language, out = False, "", []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = text.lstrip().startswith(("```", "~~~"))
        if fence and not fenced:
            language = text.lstrip().strip("`~ ").lower()
        out.append(Line(number, text, fenced or fence, language if fenced else ""))
        fenced ^= fence
    return out


def development_words(path: Path) -> list[str]:
    """`file:line: "word"` for each development phrase or commit hash in the file."""
    patterns = [
        (word, re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.I)) for word in DEVELOPMENT_WORDS
    ]
    found = []
    for line in lines(path):
        hits = [word for word, pattern in patterns if pattern.search(line.text)]
        hits += [f"commit hash {match}" for match in HASH.findall(line.text)]
        found += [f'{_name(path)}:{line.number}: "{hit}"' for hit in hits]
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a link can name in the file: headings (repeats get -1, -2, ...) and
    explicit <a id=...> tags."""
    seen: dict[str, int] = {}
    names = set()
    for line in lines(path):
        names.update(HTML_ANCHOR.findall(line.text))
        if line.in_code_block or not (match := HEADING.match(line.text)):
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        names.add(base if count == 0 else f"{base}-{count}")
    return names


def link_targets(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link outside code: inline, image and reference links."""
    targets = []
    for line in lines(path):
        if line.in_code_block:
            continue
        text = CODE_SPAN.sub("", line.text)
        found = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
        targets += [(line.number, target) for target in found]
    return targets


def broken_links(path: Path) -> list[str]:
    """`file:line: target` for each relative link whose file or heading does not exist."""
    broken = []
    for number, target in link_targets(path):
        if SCHEME.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{_name(path)}:{number}: {target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{_name(path)}:{number}: {target} (no such heading)")
    return broken


def _shell_lines(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each shell line in fenced shell blocks, continuations joined."""
    joined: list[tuple[int, str]] = []
    carry: tuple[int, str] | None = None
    for line in lines(path):
        fence = line.text.lstrip().startswith(("```", "~~~"))
        if fence or not line.in_code_block or line.language not in SHELL_BLOCKS:
            continue
        number, text = carry if carry else (line.number, "")
        text += " " + line.text.rstrip()
        carry = (number, text[:-1]) if text.endswith("\\") else None
        if carry is None:
            joined.append((number, text.strip()))
    return joined


def _inline_commands(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each code span outside code blocks that shows a command: it starts
    with `saefeatures`, or with a command's name and gives an option (`patch --limit N`)."""
    found = []
    for line in lines(path):
        if line.in_code_block:
            continue
        for span in CODE_SPAN.findall(line.text):
            text = span.strip("`").strip()
            first = text.split(" ", 1)[0]
            if first == "saefeatures":
                found.append((line.number, text))
            elif first in CLI.commands and " --" in text:
                found.append((line.number, f"saefeatures {text}"))
    return found


def _words(text: str) -> list[list[str]]:
    """Each `saefeatures ...` invocation in a shell line, as the words after the program."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        words = text.split()
    invocations, current = [], None
    for word in words:
        if word in SEPARATORS:
            current = None
        elif current is not None:
            current.append(word)
        elif word.endswith("saefeatures"):
            current = []
            invocations.append(current)
    return invocations


def _options(command: Any) -> set[str]:
    return {"--help"} | {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def wrong_commands(path: Path) -> list[str]:
    """`file:line: saefeatures ...: what is wrong` for each command or option shown in the
    page that the command line does not have. Where a command is expected, a word in
    capitals (COMMAND) or an ellipsis stands for any command and is not checked."""
    wrong = []
    for number, text in _shell_lines(path) + _inline_commands(path):
        for words in _words(text):
            command, rest = CLI, list(words)
            while isinstance(command, typer.core.TyperGroup) and rest:
                if rest[0] in command.commands:
                    command = command.commands[rest.pop(0)]
                    continue
                if rest[0].isupper() or rest[0] in ("...", "…"):
                    command = None
                break
            if command is None:
                continue
            shown = f"{_name(path)}:{number}: saefeatures {' '.join(words)}"
            if isinstance(command, typer.core.TyperGroup) and rest and not rest[0].startswith("-"):
                wrong.append(f"{shown}: no command {rest[0]!r}")
                continue
            options = [word.split("=")[0] for word in rest if word.startswith("--")]
            known = _options(command)
            wrong += [f"{shown}: no option {option}" for option in options if option not in known]
    return wrong


def test_readme_is_short_enough_to_read():
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= MAX_README_LINES, f"README.md has {count} lines; at most {MAX_README_LINES}"


@pytest.mark.parametrize("path", documents(), ids=_name)
def test_docs_speak_only_of_the_tool(path):
    found = development_words(path)
    assert not found, "development words in user docs:\n" + "\n".join(found)


@pytest.mark.parametrize("path", documents(), ids=_name)
def test_relative_links_resolve(path):
    broken = broken_links(path)
    assert not broken, "links to nothing:\n" + "\n".join(broken)


@pytest.mark.parametrize("path", documents(), ids=_name)
def test_commands_shown_are_the_command_lines(path):
    wrong = wrong_commands(path)
    assert not wrong, "commands the CLI does not have:\n" + "\n".join(wrong)


def test_the_checks_catch_what_they_look_for(tmp_path):
    (tmp_path / "there.md").write_text("# Real heading\n\n## Real heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n"
        "Measured in this Session on a shared cpu.\n"
        "Fixed in 3f2a9c1; 1234567 rows, a facade, colour #b2182bff, 0xdeadbee5.\n"
        "[ok](there.md) [ok](there.md#real-heading-1) [ok](#page) [web](https://example.org)\n"
        "[gone](missing.md) [bad](there.md#nowhere) `[code](absent.md)`\n"
        "```\n"
        "[fenced](absent.md)\n"
        "```\n"
        "```sh\n"
        "saefeatures run --model m --no-train && saefeatures nosuch  # --comment\n"
        "torchrun -m saefeatures train \\\n"
        "  --layers 1 --bogus=2\n"
        "```\n"
        "`saefeatures COMMAND --help`, `saefeatures validate ...`, `patch --limit N`, "
        "`align --topk 5`, `saefeatures db info --db x`\n",
        encoding="utf-8",
    )
    name = _name(page)
    assert development_words(page) == [
        f'{name}:2: "session"',
        f'{name}:2: "shared CPU"',
        f'{name}:3: "commit hash 3f2a9c1"',
    ]
    assert broken_links(page) == [
        f"{name}:5: missing.md (no such file)",
        f"{name}:5: there.md#nowhere (no such heading)",
    ]
    assert wrong_commands(page) == [
        f"{name}:10: saefeatures nosuch: no command 'nosuch'",
        f"{name}:11: saefeatures train --layers 1 --bogus=2: no option --bogus",
        f"{name}:14: saefeatures align --topk 5: no option --topk",
    ]
