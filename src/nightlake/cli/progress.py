"""The one progress helper of the CLI: bars on stderr while long work runs.

On a terminal, a transient rich bar per stage. Elsewhere (a log, a pipe) nothing, unless
the command asks for ``plain`` lines: ``stage: done/total`` about every 10 %, so a long
batch job still shows it is alive. Small jobs (fewer than ``min_total`` steps) show nothing.
"""

from __future__ import annotations

import sys

import typer


class Progress:
    """A context manager; ``update(stage, done, total, label)`` or ``advance(stage, total)``."""

    def __init__(self, *, plain: bool = False, min_total: int = 0) -> None:
        self.terminal = sys.stderr.isatty()
        self.plain, self.min_total = plain and not self.terminal, min_total
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._next: dict[str, int] = {}

    @property
    def active(self) -> bool:
        """Whether anything is shown at all (callers skip computing progress otherwise)."""
        return self.terminal or self.plain

    def __enter__(self) -> Progress:
        return self

    def update(self, stage: str, done: int, total: int, label: str = "") -> None:
        if total < self.min_total:
            return
        if self.terminal:
            bar = self._start()
            if stage not in self._tasks:
                self._tasks[stage] = bar.add_task(stage, total=total, label="")
            bar.update(self._tasks[stage], completed=done, total=total, label=label)
        elif (
            self.plain
            and total
            and (done * 10 >= self._next.get(stage, 0) * total or done == total)
        ):
            typer.echo(f"{stage}: {done}/{total}", err=True)
            self._next[stage] = done * 10 // total + 1

    def advance(self, stage: str, total: int) -> None:
        """One more step of ``stage`` done."""
        self._done[stage] = self._done.get(stage, 0) + 1
        self.update(stage, self._done[stage], total)

    def _start(self):
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[label]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
        return self._bar

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
