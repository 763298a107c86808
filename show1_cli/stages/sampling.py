"""The denoising-loop pieces every stage shares: guided noise prediction, text batches, scheduler step options."""

from __future__ import annotations

import inspect

import torch

LEARNED_VARIANCE = ("learned", "learned_range")


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
    them) come from the conditional half and are kept only when the scheduler learns its variance.
    """
    prediction = unet(model_input, timestep, encoder_hidden_states=text_states).sample
    channels = prediction.shape[1]
    out_channels = 3 if channels == 6 else channels
    if guidance_scale > 1.0:
        uncond, cond = prediction.chunk(2)
        epsilon = uncond[:, :out_channels] + guidance_scale * (cond[:, :out_channels] - uncond[:, :out_channels])
        prediction = torch.cat([epsilon, cond[:, out_channels:]], dim=1)
    if scheduler.config.variance_type not in LEARNED_VARIANCE:
        prediction = prediction[:, :out_channels]
    return prediction


def step_kwargs(scheduler, generator: torch.Generator | None) -> dict:
    """`generator=` for schedulers whose step draws noise (DDPM), nothing for DPM-Solver."""
    return {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}


def text_batch(prompt_embeds: torch.Tensor, negative_embeds: torch.Tensor, copies: int, guided: bool) -> torch.Tensor:
    """Encoder states for a UNet batch of `copies` samples: [negative x copies, prompt x copies] with guidance."""
    positive = prompt_embeds.expand(copies, -1, -1)
    if not guided:
        return positive
    return torch.cat([negative_embeds.expand(copies, -1, -1), positive])
