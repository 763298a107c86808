"""Prompts-file batches over many processes: which items a process owns, and the batch's summary.

A batch runs unchanged under torchrun or accelerate launch (one process per GPU, on one machine or
many) and in job arrays (`--shard K/N`, one independent job per shard); both combine. Item i belongs to
the process in slot i mod (shards x processes), so each item has exactly one owner and keeps the seed
and file name it has in a one-process run. The launcher's environment is read through accelerate's
`PartialState`; beyond that the processes share nothing but the output folder: each loads the models
once, skips the items already written (a rerun resumes) and writes its own atomically. The one exchange
is the gather of outcomes at the end, for the summary the main process prints.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field
from typing import Any

from show1_cli.chain import DONE, FAILED, SKIPPED, JobResult
from show1_cli.errors import InputError

GATHER_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Shard:
    """Slot `index` of `count`: the items whose position modulo `count` is `index`."""

    index: int = 0
    count: int = 1

    def owns(self, item: int) -> bool:
        return item % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None) -> Shard:
    """--shard K/N (0 <= K < N); None: the whole batch."""
    if text is None:
        return Shard()
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or not int(match[1]) < int(match[2]):
        raise InputError(f"--shard {text!r} is not K/N with 0 <= K < N",
                         "write for example --shard 0/4 (the first of 4); in a SLURM array "
                         "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-3")
    return Shard(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class Processes:
    """This process's place among those a launcher started (rank, count, rank on its machine)."""

    rank: int = 0
    count: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, shard: Shard) -> Shard:
        """This process's slot within `shard`: the shards' items are dealt out over the processes in turn."""
        return Shard(shard.index * self.count + self.rank, shard.count * self.count)

    def device(self, device: str) -> str:
        """--device for this process: under a launcher "auto" and "cuda" mean the GPU of its local rank."""
        import torch

        if self.count > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return device

    def gather(self, values: list[Any]) -> list[Any]:
        """Every process's `values`, concatenated in rank order (a collective: all processes call it)."""
        if self.count == 1:
            return values
        from accelerate.utils import gather_object

        return gather_object(values)

    def close(self) -> None:
        if self.count > 1:
            from accelerate import PartialState

            PartialState().destroy_process_group()


def launched_processes() -> Processes:
    """The launcher's processes (torchrun, accelerate launch), or this one alone when none started it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    from accelerate import PartialState
    from accelerate.utils import InitProcessGroupKwargs

    # The one collective is the small gather at the end, so the group is a CPU (gloo) one whatever the device:
    # no GPU memory for communicators, and any number of processes per GPU. Processes that finish their
    # share early wait there for the slowest, which may be many items behind: hence the long timeout.
    wait = InitProcessGroupKwargs(timeout=GATHER_TIMEOUT).to_kwargs()
    state = PartialState(cpu=True, **wait)
    return Processes(state.process_index, state.num_processes, state.local_process_index)


@dataclass
class Summary:
    """How a batch (or a shard of it) went."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def items_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed, "seconds": round(self.seconds, 3),
                "items_per_second": round(self.items_per_second, 4), "failures": self.failures}


def outcomes(results: list[JobResult]) -> list[dict[str, str | None]]:
    """What the summary needs of each result, small and picklable for the gather."""
    return [{"output": str(result.output), "status": result.status, "error": result.error} for result in results]


def summarise(items: list[dict[str, str | None]], seconds: float) -> Summary:
    summary = Summary(seconds=seconds)
    for item in items:
        status = item["status"]
        if status == DONE:
            summary.done += 1
        elif status == SKIPPED:
            summary.skipped += 1
        elif status == FAILED:
            summary.failed += 1
            summary.failures.append({"output": item["output"], "error": item["error"]})
    return summary
