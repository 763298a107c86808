"""The denoising-loop pieces every stage shares: schedulers as the checkpoints were released with them (or
another solver on their settings), guided noise prediction, text batches, and the scheduler step taken frame by frame."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import diffusers
import torch

LEARNED_VARIANCE = ("learned", "learned_range")
# The solvers `--scheduler` names besides "default" (the checkpoint's own): a diffusers class and the settings that
# make it that solver; everything else (betas, prediction type, thresholding) comes from the checkpoint's config.
SOLVERS = {
    "dpm": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": ("UniPCMultistepScheduler", {"solver_order": 2}),
}


def guided_noise(
    unet: torch.nn.Module,
    scheduler,
    model_input: torch.Tensor,
    timestep: torch.Tensor,
    text_states: torch.Tensor,
    guidance_scale: float,
) -> torch.Tensor:
    """One UNet call and classifier-free guidance: the noise prediction the scheduler step takes.

    With guidance, `model_input` and `text_states` hold the negative half first, then the positive
    half. The guided epsilon is uncond + scale * (cond - uncond); the variance channels (if the model has
    them) come from the conditional half and are kept only for a scheduler that reads them (`reads_variance`).
    """
    prediction = unet(model_input, timestep, encoder_hidden_states=text_states).sample
    channels = prediction.shape[1]
    out_channels = 3 if channels == 6 else channels
    if guidance_scale > 1.0:
        uncond, cond = prediction.chunk(2)
        epsilon = uncond[:, :out_channels] + guidance_scale * (cond[:, :out_channels] - uncond[:, :out_channels])
        prediction = torch.cat([epsilon, cond[:, out_channels:]], dim=1)
    if not reads_variance(scheduler):
        prediction = prediction[:, :out_channels]
    return prediction


def reads_variance(scheduler) -> bool:
    """Whether the scheduler's step reads learned-variance channels: only DDPM with a learned variance does.

    Its config alone cannot tell: DPM-Solver and UniPC built from IF-II's DDPM config keep its
    `variance_type: learned_range`, and UniPC, which never reads it, would take all 6 channels for epsilon.
    """
    return isinstance(scheduler, diffusers.DDPMScheduler) and scheduler.config.variance_type in LEARNED_VARIANCE


def load_scheduler(component_dir: Path, subfolder: str = "scheduler", solver: str = "default", **overrides):
    """The scheduler of a checkpoint's `subfolder/scheduler_config.json`: the one it names, or the `solver`
    built from it (see `scheduler_from_config`). `overrides` replace config values (training a checkpoint
    for another prediction type)."""
    config = json.loads((Path(component_dir) / subfolder / "scheduler_config.json").read_text(encoding="utf-8"))
    return scheduler_from_config(config, solver, **overrides)


def scheduler_from_config(config: dict, solver: str = "default", **overrides):
    """The diffusers scheduler a scheduler config names, as the checkpoints were released with it, or with
    `solver` ("dpm", "unipc": see SOLVERS) that solver on the config's betas, prediction type and thresholding.

    The Show-1 checkpoints were released with diffusers 0.19, whose multistep DPM-Solver ends on sigma_min;
    newer diffusers end on zero unless told otherwise. A config that does not say (all of Show-1's) gets
    `final_sigmas_type="sigma_min"`, so the last step is the one the models were tuned with.
    """
    name, settings = (config["_class_name"], {}) if solver == "default" else SOLVERS[solver]
    scheduler_class = getattr(diffusers, name)
    extra = {}
    if "final_sigmas_type" in inspect.signature(scheduler_class.__init__).parameters and "final_sigmas_type" not in config:
        extra["final_sigmas_type"] = "sigma_min"
    return scheduler_class.from_config(config, **extra, **settings, **overrides)


def step_per_frame(scheduler, model_output: torch.Tensor, timestep, sample: torch.Tensor, **kwargs) -> torch.Tensor:
    """One scheduler step on a video batch (B, C, F, H, W) with the frames folded into the batch, as the
    original pipelines step: per-sample operations (dynamic thresholding's quantile) then act per frame."""
    batch, channels, frames, height, width = sample.shape

    def fold(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 1, 3, 4).reshape(batch * frames, x.shape[1], height, width)

    folded = scheduler.step(fold(model_output), timestep, fold(sample), **kwargs, return_dict=False)[0]
    return folded.reshape(batch, frames, channels, height, width).permute(0, 2, 1, 3, 4)


def step_kwargs(scheduler, generator: torch.Generator | None) -> dict:
    """`generator=` for schedulers whose step draws noise (DDPM), nothing for DPM-Solver."""
    return {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}


def text_batch(prompt_embeds: torch.Tensor, negative_embeds: torch.Tensor, copies: int, guided: bool) -> torch.Tensor:
    """Encoder states for a UNet batch of `copies` samples: [negative x copies, prompt x copies] with guidance."""
    positive = prompt_embeds.expand(copies, -1, -1)
    if not guided:
        return positive
    return torch.cat([negative_embeds.expand(copies, -1, -1), positive])
