"""Stage 3: pixel super-resolution (show-1-sr1), 64x40 -> 256x160 by default.

The low-resolution video is bilinearly upscaled to the target size, noised to the preset's noise level
with the checkpoint's image-noising DDPM scheduler and concatenated to the noisy sample; the noise level
is also the UNet's class label. The video is processed in overlapping windows (8 frames, stride 7 by
default), one after another: the first frame of each window's condition is replaced, un-noised, by an
anchor frame - the first-frame super-resolution (IF-II-L) for the first window, the previous window's
output for the later ones - so the windows join into one continuous video.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from show1_cli.errors import InputError
from show1_cli.presets import SIZE_MULTIPLE
from show1_cli.stages import StageContext
from show1_cli.stages.sampling import guided_noise, load_scheduler, step_kwargs, step_per_frame, text_batch

COMPONENT = "show-1-sr1"

Tick = Callable[[], None]
"""Called once after every denoising step."""


class StepCounter:
    """Turns per-step ticks of several loops (first frame, windows) into the stage's (completed, total).

    `start`: steps counted as done before the first tick (those a denoising strength below 1 skips).
    """

    def __init__(self, on_step: Callable[[int, int], None], total: int, start: int = 0):
        self.on_step = on_step
        self.total = total
        self.completed = start

    def __call__(self) -> None:
        self.completed += 1
        self.on_step(self.completed, self.total)


def windows(num_frames: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of each window: `window` frames every `stride`, the last one shorter where needed.

    Consecutive windows share `window - stride` frames; every frame is in at least one window. With 29
    frames, window 8 and stride 7: 0-8, 7-15, 14-22, 21-29 (end exclusive).
    """
    if num_frames < 1:
        raise ValueError("a video has at least one frame")
    starts = range(0, max(num_frames - (window - stride), 1), stride)
    return [(start, min(start + window, num_frames)) for start in starts]


def upscale_condition(low: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear (corner-aligned, as the original) upscaling of (N, 3, h, w) frames to (N, 3, height, width)."""
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=True)


@torch.no_grad()
def denoise_conditioned(
    unet: torch.nn.Module,
    scheduler,
    image_noising_scheduler,
    condition: torch.Tensor,
    *,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    steps: int,
    guidance_scale: float,
    noise_level: int,
    generator: torch.Generator,
    anchor: torch.Tensor | None = None,
    tick: Tick | None = None,
) -> torch.Tensor:
    """One pixel super-resolution sampling run (the IF-II recipe) on an already upscaled condition.

    `condition` is (1, 3, H, W) for an image UNet or (1, 3, F, H, W) for a video UNet, in [-1, 1], on
    the model's device and dtype. It is noised to `noise_level`; `anchor` (3, H, W), if given, then
    replaces its first frame un-noised. Returns the denoised sample, shaped like `condition`.
    Classifier-free guidance runs as one batched UNet call when `guidance_scale` > 1.
    """
    device, dtype = condition.device, condition.dtype
    sample = randn_tensor(condition.shape, generator=generator, device=device, dtype=dtype)
    sample = sample * scheduler.init_noise_sigma
    noise = randn_tensor(condition.shape, generator=generator, device=device, dtype=dtype)
    levels = torch.tensor([noise_level], device=device)
    condition = image_noising_scheduler.add_noise(condition, noise, levels)
    if anchor is not None:
        if condition.dim() != 5:
            raise ValueError("an anchor frame needs a video condition (1, 3, F, H, W)")
        condition[:, :, 0] = anchor.to(device, dtype)

    guided = guidance_scale > 1.0
    text = text_batch(prompt_embeds, negative_embeds, 1, guided).to(device, dtype)
    # The noise level is the UNet's class label, for both halves of the guidance batch.
    conditioned_unet = functools.partial(unet, class_labels=levels.repeat(2) if guided else levels)

    scheduler.set_timesteps(steps, device=device)
    extra = step_kwargs(scheduler, generator)
    for t in scheduler.timesteps:
        model_input = torch.cat([sample, condition], dim=1)
        if guided:
            model_input = torch.cat([model_input] * 2)
        model_input = scheduler.scale_model_input(model_input, t)
        noise = guided_noise(conditioned_unet, scheduler, model_input, t, text, guidance_scale)
        if sample.dim() == 5:
            sample = step_per_frame(scheduler, noise, t, sample, **extra)
        else:
            sample = scheduler.step(noise, t, sample, **extra, return_dict=False)[0]
        if tick is not None:
            tick()
    return sample


def super_resolve(
    unet: torch.nn.Module,
    scheduler,
    image_noising_scheduler,
    video: torch.Tensor,
    *,
    height: int,
    width: int,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    steps: int,
    guidance_scale: float,
    noise_level: int,
    window: int,
    stride: int,
    generator: torch.Generator,
    first_frame: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    tick: Tick | None = None,
) -> torch.Tensor:
    """Upscale a (frames, 3, h, w) video in [-1, 1] to (frames, 3, height, width), window by window.

    `first_frame` (3, height, width) anchors the first window; without it the first window starts from
    its noised upscaled condition like every other frame. Each later window is anchored on the frame
    the previous window produced at its start, as produced (not clamped: the last sampling step can end
    slightly outside [-1, 1]), and its own output for that frame replaces the earlier one (as in the
    original), so every frame is written by the last window that covers it. The video is clamped once done.
    """
    upscaled = upscale_condition(video.to(device, torch.float32), height, width).to(dtype)
    output = torch.empty_like(upscaled)
    seeded = generator.get_state()
    for start, end in windows(video.shape[0], window, stride):
        generator.set_state(seeded)  # every window draws from the run's seed, as the original reseeds per window
        anchor = first_frame if start == 0 else output[start].clone()
        condition = upscaled[start:end].permute(1, 0, 2, 3).unsqueeze(0)  # (1, 3, F, H, W)
        result = denoise_conditioned(
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
            anchor=anchor,
            tick=tick,
        )
        output[start:end] = result[0].permute(1, 0, 2, 3)
    return output.clamp(-1, 1)


def check_sizes(in_height: int, in_width: int, height: int, width: int, stage: str = "sr1") -> None:
    """Refuse what the stage's model cannot do: a target it cannot halve down its UNet, or shrinking frames."""
    multiple = SIZE_MULTIPLE[stage]
    if height % multiple or width % multiple:
        raise InputError(
            f"{stage} target {width}x{height} is not a multiple of {multiple}, which its model needs",
            f"use --set {stage}.width=W --set {stage}.height=H with multiples of {multiple}",
        )
    if in_height > height or in_width > width:
        raise InputError(
            f"input frames are {in_width}x{in_height}, larger than the {stage} target {width}x{height}",
            f"{stage} only enlarges: give a smaller video or raise --set {stage}.width/height",
        )


def run(context: StageContext, video: torch.Tensor) -> torch.Tensor:
    from show1_cli.models import load_unet
    from show1_cli.stages import first_frame

    preset = context.preset
    settings = preset.sr1
    runtime = context.runtime
    check_sizes(*video.shape[-2:], settings.height, settings.width)
    prompt_embeds = context.text_embeddings[context.prompt]
    negative_embeds = context.text_embeddings[settings.negative_prompt]

    root = context.weights.resolve(COMPONENT)
    method = first_frame.choose(context)
    spans = windows(video.shape[0], settings.window, settings.stride)
    first_steps = preset.first_frame.steps if method == "if" else 0
    tick = StepCounter(context.on_step, len(spans) * settings.steps + first_steps)

    anchor = None
    if method == "if":
        anchor = first_frame.upscale_first_frame(
            context, video[0], settings.height, settings.width, prompt_embeds, negative_embeds, context.generator(), tick
        )

    unet = context.models.get(f"{COMPONENT}/unet", lambda: load_unet(root, torch_dtype=runtime.dtype), unet=True)
    return super_resolve(
        unet,
        load_scheduler(root, "scheduler", settings.scheduler),
        load_scheduler(root, "image_noising_scheduler"),
        video,
        height=settings.height,
        width=settings.width,
        prompt_embeds=prompt_embeds,
        negative_embeds=negative_embeds,
        steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        noise_level=settings.noise_level,
        window=settings.window,
        stride=settings.stride,
        generator=context.generator(),
        first_frame=anchor,
        device=runtime.device,
        dtype=runtime.dtype,
        tick=tick,
    ).cpu().float()
