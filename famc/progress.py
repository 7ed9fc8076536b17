"""Progress of long stages, for a person at a terminal and for a CI log alike.

On a terminal a live bar; anywhere else (a CI log, a file) one plain line when a task starts, then at
most every ``interval`` seconds and when it ends: stage, done/total, its own fields (best reward so
far, ...), elapsed time and the remaining time estimated from the rate so far.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Mode = Literal["bar", "lines", "off"]


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


@dataclass
class Task:
    """One counted task; ``advance`` moves it on and updates its fields (shown after the count)."""

    title: str
    total: int
    emit: Reporter
    done: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    last: float = -1.0

    def advance(self, n: int = 1, **fields: str) -> None:
        self.done += n
        self.fields.update(fields)
        self.emit.update(self)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        parts = [f"{self.title}: {self.done}/{self.total}"]
        parts += [f"{k.replace('_', ' ')} {v}" for k, v in self.fields.items()]
        parts.append(f"elapsed {_clock(elapsed)}")
        if 0 < self.done < self.total:
            parts.append(f"ETA {_clock(elapsed / self.done * (self.total - self.done))}")
        return ", ".join(parts)


class Reporter:
    """Where progress goes: a rich bar (``bar``), plain periodic lines (``lines``) or nowhere."""

    def __init__(self, mode: Mode = "lines", interval: float = 30.0,
                 stream: TextIO | None = None) -> None:  # fmt: skip
        self.mode, self.interval = mode, interval
        self.stream = stream if stream is not None else sys.stderr
        self._bar: Progress | None = None
        self._ids: dict[int, TaskID] = {}

    @classmethod
    def auto(cls, enabled: bool = True) -> Reporter:
        """A bar on a terminal, lines otherwise (``enabled=False``: nothing)."""
        if not enabled:
            return cls("off")
        return cls("bar" if sys.stderr.isatty() else "lines")

    @contextmanager
    def task(self, title: str, total: int, **fields: str) -> Iterator[Task]:
        t = Task(title, total, self, fields=dict(fields))
        if self.mode == "bar":
            with self._progress() as bar:
                self._ids[id(t)] = bar.add_task(title, total=total, info=self._info(t))
                yield t
            return
        self.update(t)
        yield t
        if self.mode == "lines" and t.done != t.total:
            self._print(t)  # ended early: say where it stopped

    def update(self, t: Task) -> None:
        if self.mode == "bar" and self._bar is not None:
            self._bar.update(self._ids[id(t)], completed=t.done, info=self._info(t))
        elif self.mode == "lines":
            now = time.perf_counter()
            if t.last < 0 or now - t.last >= self.interval or t.done == t.total:
                self._print(t)

    def _print(self, t: Task) -> None:
        t.last = time.perf_counter()
        print(t.line(), file=self.stream, flush=True)

    @staticmethod
    def _info(t: Task) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in t.fields.items())

    @contextmanager
    def _progress(self) -> Iterator[Progress]:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=Console(file=self.stream)) as bar:
            self._bar = bar
            try:
                yield bar
            finally:
                self._bar = None
