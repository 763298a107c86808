"""The four stages of the Show-1 cascade, one module each.

Every stage module holds a pure function that takes and returns tensors (videos are
`(frames, 3, height, width)` float tensors in [-1, 1]) and a `run(context, video)` entry point that
gets the stage's models from `context.models` and calls it. Stages report progress only through
`context.on_step(completed, total)`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import torch

from show1_cli.errors import StageError
from show1_cli.presets import Preset
from show1_cli.progress import StepCallback
from show1_cli.runtime import ModelStore, Runtime
from show1_cli.weights import WeightSource


def _no_progress(completed: int, total: int) -> None:
    pass


@dataclass
class StageContext:
    """What every stage of one run shares: the prompt, settings, seed, where models come from and run."""

    prompt: str
    preset: Preset
    seed: int
    runtime: Runtime
    models: ModelStore
    weights: WeightSource = field(default_factory=WeightSource)
    on_step: StepCallback = _no_progress
    # T5 embeddings of the prompt and of each pixel stage's negative prompt, keyed by text; computed once
    # per prompt by the chain and shared by stages 1-3 (the original recomputes nothing either).
    text_embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    # Stage-specific choices from the command line (for example keep_input_frames, first_frame, motion).
    options: dict[str, Any] = field(default_factory=dict)

    def generator(self) -> torch.Generator:
        """A fresh generator seeded with the run's seed: every stage starts from it, as the original did."""
        return torch.Generator(device="cpu").manual_seed(self.seed)


def run_stage(name: str, context: StageContext, video: torch.Tensor | None) -> torch.Tensor:
    """Run stage `name` on `video` (None for keyframes) and return its output video."""
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
        raise StageError(
            f"stage {name!r} is not available in this version of show1", "run the stages that are, see `show1 --help`"
        ) from None
    return check_output(name, module.run(context, video))


def check_output(stage: str, video: torch.Tensor) -> torch.Tensor:
    """`video` if it holds a picture; a `StageError` for the numerical failures of low-precision runs (NaN or
    infinite values, or one value everywhere: the black video), so that nothing broken is written."""
    if not torch.isfinite(video).all():
        problem = "NaN or infinite values"
    elif video.numel() > 1 and float(video.max() - video.min()) == 0.0:
        problem = f"the same value ({float(video.flatten()[0]):.2f}) in every pixel"
    else:
        return video
    raise StageError(f"the {stage} stage produced {problem}, a numerical failure; its output was not written",
                     "rerun with --dtype bf16 or --dtype fp32 (fp16 overflows on some inputs)")
