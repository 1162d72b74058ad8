"""Progress that a person at a terminal and a log file can both read.

On a terminal, long steps show a rich bar with an ETA; once a step ends, one plain line
stays behind with what ran and how long it took. Without a terminal (a log, CI) the same
steps print plain lines, at most one every `LOG_EVERY` seconds, with no control codes.
Everything goes to stderr, so that tables on stdout stay clean for pipes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
LOG_EVERY = 15.0  # seconds between plain progress lines
QUIET_ENV = "SAEFEATURES_QUIET"  # 1: no progress lines at all (warnings still print)


def enabled() -> bool:
    return os.environ.get(QUIET_ENV, "") not in ("1", "true", "yes")


def interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def say(line: str) -> None:
    """One plain line on stderr (a stage starting or ending)."""
    if enabled():
        print(line, file=sys.stderr, flush=True)


def warn(line: str) -> None:
    """A warning line, printed even when progress is quiet."""
    print(f"warning: {line}", file=sys.stderr, flush=True)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield `items`, showing progress through them; `total` when `items` has no len()."""
    count = total if total is not None else len(items)  # type: ignore[arg-type]
    with bar(description, count) as shown:
        for item in items:
            yield item
            shown.advance()


class Bar:
    """One step's progress: `advance` it, and `note` what it is doing (e.g. a loss)."""

    def __init__(self, description: str, total: int, unit: str, start: int = 0) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = start
        self.started = time.perf_counter()
        self.first = start
        self.status = ""
        self.last_line = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.done >= self.total or (self.last_line and now - self.last_line < LOG_EVERY):
            return
        self.last_line = now
        say(f"  {self.description}: {self.count()}, {self.timing(now)}{self.suffix()}")

    def note(self, status: str) -> None:
        self.status = status

    def count(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.done:,}/{self.total:,}{unit} ({self.done / max(self.total, 1):.0%})"

    def timing(self, now: float) -> str:
        elapsed = now - self.started
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        return f"{duration(elapsed)} so far, about {duration(left)} to go"

    def suffix(self) -> str:
        return f"; {self.status}" if self.status else ""


class _RichBar(Bar):
    def __init__(self, progress: Any, task: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress, self.task = progress, task

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.progress.update(self.task, advance=n, status=self.suffix())


@contextmanager
def bar(
    description: str, total: int, unit: str = "", start: int = 0, shown: bool = True
) -> Iterator[Bar]:
    """A progress bar over `total` steps (`start` of them done before); the block gets the
    `Bar`. When the block ends, a line says how many steps took how long. `shown=False`
    shows nothing (work inside tests and benchmarks)."""
    if not shown or not enabled() or total <= 0:
        yield Bar(description, total, unit, start)
        return
    if interactive():
        with _rich_bar(description, total, unit, start) as shown:
            yield shown
    else:
        shown = Bar(description, total, unit, start)
        yield shown
    seconds = time.perf_counter() - shown.started
    say(f"  {description}: {shown.count()} in {duration(seconds)}{shown.suffix()}")


@contextmanager
def _rich_bar(description: str, total: int, unit: str, start: int) -> Iterator[Bar]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total, completed=start, status="")
        yield _RichBar(progress, task, description, total, unit, start)


def duration(seconds: float) -> str:
    if seconds != seconds:  # nan: not known yet
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"
