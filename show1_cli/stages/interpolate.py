"""Stage 2: frame interpolation (show-1-interpolation), N frames -> 4N-3 (8 -> 29 by default).

Every pair of neighbouring frames (i, i+1) becomes a 5-frame window whose frames 0 and 4 are the pair
and frames 1-3 are new. The UNet sees [noisy window (3), condition (3), mask (1)]: the condition is the
linear-in-time (trilinear, corner-aligned) interpolation from frame i to frame i+1 over the 5 frames, the
mask is 1 on frames 0 and 4. All windows start from the same noise, as in the original.

Unlike the original, which denoises the windows one after another, all windows (times two for
guidance) go through the UNet together, in one call per step; `windows_per_call` caps that batch for
memory. Batching changes nothing but float rounding, since every window is an independent sample.

Assembly: window i is written to output frames 4i..4i+4 in order, so a window's generated endpoint is
overwritten by the next window's first frame, as in the original (the endpoints are regenerated, close to
but not exactly the input frames). `keep_input_frames` pastes the input frames back at 0, 4, 8, ...
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from show1_cli.errors import InputError
from show1_cli.presets import SIZE_MULTIPLE
from show1_cli.progress import StepCallback
from show1_cli.stages import StageContext
from show1_cli.stages.sampling import guided_noise, load_scheduler, step_kwargs, step_per_frame, text_batch

COMPONENT = "show-1-interpolation"
WINDOW = 5  # frames per window: the two given frames and three new ones between them
NEW_PER_PAIR = WINDOW - 2


def output_frames(num_frames: int) -> int:
    """How many frames interpolating `num_frames` gives: 4N-3."""
    return (num_frames - 1) * (WINDOW - 1) + 1


def window_conditions(video: torch.Tensor) -> torch.Tensor:
    """(pairs, 4, 5, H, W): per pair, the interpolated condition (3 channels) and the endpoint mask (1)."""
    pairs = torch.stack([video[:-1], video[1:]], dim=2)  # (pairs, 3, 2, H, W)
    height, width = video.shape[-2:]
    condition = F.interpolate(pairs, size=(WINDOW, height, width), mode="trilinear", align_corners=True)
    mask = torch.zeros_like(condition[:, :1])
    mask[:, :, 0] = 1
    mask[:, :, -1] = 1
    return torch.cat([condition, mask], dim=1)


@torch.no_grad()
def denoise_windows(
    unet: torch.nn.Module,
    scheduler,
    conditions: torch.Tensor,
    noise: torch.Tensor,
    *,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    steps: int,
    guidance_scale: float,
    generator: torch.Generator | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Denoise a batch of windows together: conditions (B, 4, 5, H, W), noise (B, 3, 5, H, W) -> (B, 3, 5, H, W)."""
    guided = guidance_scale > 1.0
    count = conditions.shape[0]
    states = text_batch(prompt_embeds, negative_embeds, count, guided).to(noise.device, noise.dtype)
    condition_input = torch.cat([conditions] * 2) if guided else conditions
    scheduler.set_timesteps(steps, device=noise.device)
    sample = noise * scheduler.init_noise_sigma
    extra = step_kwargs(scheduler, generator)
    for index, timestep in enumerate(scheduler.timesteps):
        model_input = torch.cat([sample] * 2) if guided else sample
        model_input = scheduler.scale_model_input(model_input, timestep)
        model_input = torch.cat([model_input, condition_input], dim=1)
        prediction = guided_noise(unet, scheduler, model_input, timestep, states, guidance_scale)
        sample = step_per_frame(scheduler, prediction, timestep, sample, **extra)
        if on_step is not None:
            on_step(index + 1, steps)
    return sample


def assemble(windows: torch.Tensor, video: torch.Tensor, keep_input_frames: bool) -> torch.Tensor:
    """(pairs, 3, 5, H, W) denoised windows -> (4N-3, 3, H, W), later windows overwriting shared endpoints."""
    frames = windows.transpose(1, 2)  # (pairs, 5, 3, H, W)
    out = torch.empty((output_frames(video.shape[0]), *video.shape[1:]), dtype=frames.dtype, device=frames.device)
    step = WINDOW - 1
    for pair in range(frames.shape[0]):
        out[pair * step : pair * step + WINDOW] = frames[pair]
    if keep_input_frames:
        out[::step] = video.to(out.dtype)
    return out


@torch.no_grad()
def interpolate_video(
    unet: torch.nn.Module,
    scheduler,
    video: torch.Tensor,
    *,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    steps: int,
    guidance_scale: float,
    generator: torch.Generator,
    keep_input_frames: bool = False,
    windows_per_call: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (4N-3, 3, H, W) in [-1, 1] (on the CPU, float32).

    `windows_per_call`: at most this many windows share one UNet batch (None: all of them); the result
    is the same either way, up to float rounding.
    """
    check_video(video)
    pairs = video.shape[0] - 1
    per_call = pairs if windows_per_call is None else max(1, min(windows_per_call, pairs))
    height, width = video.shape[-2:]
    source = video.to(device, dtype)
    conditions = window_conditions(source)
    # One noise tensor for every window, drawn on the CPU generator (same start on every device).
    noise = randn_tensor((1, 3, WINDOW, height, width), generator=generator, device=torch.device(device), dtype=dtype)
    calls = -(-pairs // per_call)
    total = calls * steps
    results = []
    for call in range(calls):
        chunk = conditions[call * per_call : (call + 1) * per_call]

        def chunk_step(completed: int, _total: int, offset: int = call * steps) -> None:
            if on_step is not None:
                on_step(offset + completed, total)

        results.append(
            denoise_windows(
                unet,
                scheduler,
                chunk,
                noise.expand(chunk.shape[0], -1, -1, -1, -1),
                prompt_embeds=prompt_embeds,
                negative_embeds=negative_embeds,
                steps=steps,
                guidance_scale=guidance_scale,
                generator=generator,
                on_step=chunk_step,
            )
        )
    windows = torch.cat(results)
    return assemble(windows, source, keep_input_frames).clamp(-1, 1).float().cpu()


def check_video(video: torch.Tensor) -> None:
    if video.ndim != 4 or video.shape[1] != 3:
        raise InputError(f"expected a (frames, 3, height, width) video, got shape {tuple(video.shape)}", "give an RGB video")
    if video.shape[0] < 2:
        raise InputError(f"interpolation needs at least 2 frames, the video has {video.shape[0]}", "give a video with 2 or more frames")
    multiple = SIZE_MULTIPLE["keyframes"]
    height, width = video.shape[-2:]
    if height % multiple or width % multiple:
        raise InputError(
            f"frames are {width}x{height}; the interpolation model needs sizes divisible by {multiple}",
            "use a video made by `show1 generate --stages keyframes` (64x40), or resize it",
        )


def run(context: StageContext, video: torch.Tensor) -> torch.Tensor:
    from show1_cli.models import load_unet

    settings = context.preset.interpolate
    runtime = context.runtime
    check_video(video)
    root: Path = context.weights.resolve(COMPONENT)
    unet = context.models.get(f"{COMPONENT}/unet", lambda: load_unet(root, torch_dtype=runtime.dtype), unet=True)
    return interpolate_video(
        unet,
        load_scheduler(root, solver=settings.scheduler),
        video,
        prompt_embeds=context.text_embeddings[context.prompt],
        negative_embeds=context.text_embeddings[settings.negative_prompt],
        steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        generator=context.generator(),
        keep_input_frames=bool(context.options.get("keep_input_frames", False)),
        windows_per_call=context.options.get("windows_per_call"),
        device=runtime.device,
        dtype=runtime.dtype,
        on_step=context.on_step,
    )
