"""Progress reporting: one callback contract for the stages, one display for the chain.

Stages know nothing of the display. They call `on_step(completed, total)` after each denoising step,
where `total` counts every step of the stage (all windows of all passes). The chain tells a
`ChainProgress` when each stage starts and ends; it draws the bars on a terminal or writes plain lines
elsewhere, and collects the per-stage summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from show1_cli.runtime import Runtime

StepCallback = Callable[[int, int], None]
"""Called by a stage after each step with (steps completed, total steps of the stage)."""


@dataclass
class StageReport:
    name: str
    seconds: float
    peak_memory_bytes: int


@dataclass
class ChainProgress:
    """Where a chain run is, on stderr (nothing when `show` is false).

    On a terminal: a bar for the stages and one for the current stage's steps, and a line with each
    finished stage's time and peak memory that stays on screen. Elsewhere (a log file, a pipe, CI): plain
    lines, one when a stage starts, one every `log_every` seconds with its step, rate and time left, and one
    when it ends.
    """

    runtime: Runtime
    total_stages: int
    show: bool = True
    log_every: float = 5.0
    reports: list[StageReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        self._log = console if self.show and not console.is_terminal else None
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=not (self.show and console.is_terminal),
            transient=False,
        )
        self._chain_task = self._progress.add_task("chain", total=self.total_stages, rate="")
        self._stage_task: int | None = None

    def __enter__(self) -> ChainProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log.print(line, markup=False)

    @contextmanager
    def stage(self, name: str) -> Iterator[StepCallback]:
        """Run one stage: yields its step callback; records its time and peak memory when it ends."""
        label = f"stage {len(self.reports) + 1}/{self.total_stages} {name}"
        self._progress.update(self._chain_task, description=label)
        if self._stage_task is not None:
            self._progress.remove_task(self._stage_task)
        self._stage_task = self._progress.add_task(f"  {name} steps", total=None, rate="")
        self._say(f"{label}: started")
        self.runtime.reset_peak_memory()
        started = time.perf_counter()
        origin: int | None = None  # steps already counted as done at the first report
        steps_run = 0
        last_said = started

        def on_step(completed: int, total: int) -> None:
            nonlocal origin, steps_run, last_said
            now = time.perf_counter()
            if origin is None:
                # A stage may start part-way (sr2 skips the steps its strength leaves out): rates count from here.
                origin = completed - 1
            steps_run = completed - origin
            per_step = (now - started) / steps_run
            self._progress.update(self._stage_task, completed=completed, total=total, rate=f"{1 / per_step:.2f} it/s")
            if now - last_said >= self.log_every and completed < total:
                last_said = now
                left = format_seconds(per_step * (total - completed))
                self._say(f"{label}: step {completed}/{total}, {per_step:.2f} s/step, {left} left")

        yield on_step
        report = StageReport(name, time.perf_counter() - started, self.runtime.peak_memory_bytes())
        self.reports.append(report)
        self._progress.advance(self._chain_task)
        done = (f"{label}: done in {format_seconds(report.seconds)} ({plural(steps_run, 'step')}), "
                f"peak memory {format_bytes(report.peak_memory_bytes)}")
        self._say(done)
        if not self._progress.disable:
            self._progress.console.print(done, markup=False)


def plural(count: int, noun: str) -> str:
    """"1 step", "2 steps"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def format_seconds(seconds: float) -> str:
    """42.1 s below a minute, then 3:05 or 1:02:05."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class TrainingProgress:
    """A training run's bar on stderr: step, loss, it/s and ETA (only on a terminal and when `show`)."""

    def __init__(self, total_steps: int, show: bool = True):
        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=not (show and console.is_terminal),
        )
        self._task = self._progress.add_task("train", total=total_steps, loss="-", rate="")
        self._started = time.perf_counter()
        self._first_step: int | None = None

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, step: int, loss: float) -> None:
        if self._first_step is None:  # a resumed run starts counting its rate at its first step
            self._first_step, self._started = step - 1, time.perf_counter()
        elapsed = time.perf_counter() - self._started
        rate = f"{(step - self._first_step) / elapsed:.2f} it/s" if elapsed > 0 else ""
        self._progress.update(self._task, completed=step, loss=f"{loss:.4f}", rate=rate)
