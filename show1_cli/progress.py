"""Progress reporting: one callback contract for the stages, one rich display for the chain.

Stages know nothing of the display. They call `on_step(completed, total)` after each denoising step,
where `total` counts every step of the stage (all windows of all passes). The chain tells a
`ChainProgress` when each stage starts and ends; it draws the bars and collects the per-stage summary.
"""

from __future__ import annotations

import logging
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

logger = logging.getLogger("show1")


@dataclass
class StageReport:
    name: str
    seconds: float
    peak_memory_bytes: int


@dataclass
class ChainProgress:
    """Shows "stage k of n" and the current stage's steps on stderr (when it is a terminal and not quiet)."""

    runtime: Runtime
    total_stages: int
    show: bool = True
    reports: list[StageReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        console = Console(stderr=True)
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

    @contextmanager
    def stage(self, name: str) -> Iterator[StepCallback]:
        """Run one stage: yields its step callback; records its time and peak memory when it ends."""
        index = len(self.reports) + 1
        self._progress.update(self._chain_task, description=f"stage {index}/{self.total_stages}: {name}")
        if self._stage_task is not None:
            self._progress.remove_task(self._stage_task)
        self._stage_task = self._progress.add_task(f"  {name} steps", total=None, rate="")
        logger.info("stage %d/%d: %s", index, self.total_stages, name)
        self.runtime.reset_peak_memory()
        started = time.perf_counter()

        def on_step(completed: int, total: int) -> None:
            elapsed = time.perf_counter() - started
            rate = f"{completed / elapsed:.2f} it/s" if elapsed > 0 else ""
            self._progress.update(self._stage_task, completed=completed, total=total, rate=rate)

        yield on_step
        report = StageReport(name, time.perf_counter() - started, self.runtime.peak_memory_bytes())
        self.reports.append(report)
        self._progress.advance(self._chain_task)
        logger.info("stage %s done in %.1f s, peak memory %s", name, report.seconds, format_bytes(report.peak_memory_bytes))


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
