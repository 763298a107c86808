"""The first frame of sr1: an image super-resolution of frame 0 that anchors the first window.

The original upscales frame 0 with DeepFloyd's IF-II-L (an image model, 70 steps, guidance 4, noise
level 150, same T5 prompt embeddings as the video stages) and puts it, un-noised, in the condition of
sr1's first window; every later window is anchored on the frame before it, so this one image sets the
detail the whole video inherits.

IF-II-L is gated on the hub, so it is optional. `--first-frame`:
- `if`: use IF-II-L (an error with the licence fix when it is not available);
- `none`: no anchor - sr1's first window starts from its noised upscaled condition, like every other
  frame of a window; the model handles that case for all other frames, so the result stays coherent,
  only the first frame's detail comes from sr1 itself instead of a stronger image model;
- `auto` (default): `if` when IF-II-L is present, else `none` with a warning saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from show1_cli.choices import FIRST_FRAMES
from show1_cli.errors import InputError
from show1_cli.stages import StageContext
from show1_cli.stages.sampling import load_scheduler
from show1_cli.stages.sr1 import denoise_conditioned, upscale_condition
from show1_cli.weights import WeightSource

logger = logging.getLogger("show1")

COMPONENT = "IF-II-L-v1.0"


def decide(wanted: str, weights: WeightSource) -> str:
    """The first frame `--first-frame wanted` gives with these weights: "if" or "none" (logs nothing)."""
    if wanted not in FIRST_FRAMES:
        raise InputError(f"unknown --first-frame {wanted!r}", f"use one of {', '.join(FIRST_FRAMES)}")
    if wanted == "none":
        return "none"
    if wanted == "auto" and (not weights.has(COMPONENT) or not weights.status(COMPONENT).any_present):
        return "none"
    if not weights.has(COMPONENT):
        raise InputError(f"--first-frame if: these weights have no {COMPONENT}", "use --first-frame auto or none")
    # "if", or "auto" with IF-II-L (partly) present: a missing, gated or broken model is an error with its fix.
    weights.resolve(COMPONENT)
    return "if"


def choose(context: StageContext) -> str:
    """Which first frame sr1 uses ("if" or "none"), said in the log and kept in `context.options["first_frame_used"]`."""
    wanted = context.options.get("first_frame", "auto")
    used = decide(wanted, context.weights)
    if used == "if":
        logger.info("first frame: upscaled with %s", COMPONENT)
    elif wanted == "auto" and context.weights.has(COMPONENT):
        logger.warning(
            "first frame: %s (gated) not found, sr1 runs without the first-frame anchor (--first-frame none); "
            "see `show1 weights list` for what it adds",
            COMPONENT,
        )
    else:
        logger.info("first frame: none (--first-frame none), sr1 runs without the first-frame anchor")
    context.options["first_frame_used"] = used
    return used


def upscale_image(
    unet: torch.nn.Module,
    scheduler,
    image_noising_scheduler,
    frame: torch.Tensor,
    *,
    height: int,
    width: int,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    steps: int,
    guidance_scale: float,
    noise_level: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    tick: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Super-resolve one (3, h, w) frame in [-1, 1] to (3, height, width) with an IF-II image UNet."""
    condition = upscale_condition(frame[None].to(device, torch.float32), height, width).to(dtype)
    image = denoise_conditioned(
        unet,
        scheduler,
        image_noising_scheduler,
        condition,
        prompt_embeds=prompt_embeds,
        negative_embeds=negative_embeds,
        steps=steps,
        guidance_scale=guidance_scale,
        noise_level=noise_level,
        generator=generator,
        tick=tick,
    )
    return image[0].clamp(-1, 1)


def upscale_first_frame(
    context: StageContext,
    frame: torch.Tensor,
    height: int,
    width: int,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    generator: torch.Generator,
    tick: Callable[[], None] | None = None,
) -> torch.Tensor:
    """IF-II-L's upscaling of `frame` with the preset's first-frame settings (on the runtime's device)."""
    from diffusers import UNet2DConditionModel


    runtime = context.runtime
    settings = context.preset.first_frame
    root = context.weights.resolve(COMPONENT)
    unet = context.models.get(
        f"{COMPONENT}/unet",
        lambda: UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=runtime.dtype),
        unet=True,
    )
    return upscale_image(
        unet,
        load_scheduler(root, "scheduler", settings.scheduler),
        load_scheduler(root, "image_noising_scheduler"),
        frame,
        height=height,
        width=width,
        prompt_embeds=prompt_embeds,
        negative_embeds=negative_embeds,
        steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        noise_level=settings.noise_level,
        generator=generator,
        device=runtime.device,
        dtype=runtime.dtype,
        tick=tick,
    )
