"""Stage 1: text -> keyframes (show-1-base), pixel diffusion at 64x40, 8 frames by default.

Pure noise is denoised with the base UNet and its DPM-Solver++ scheduler (cosine betas, epsilon
prediction, dynamic thresholding, as the checkpoint's scheduler config says), or the preset's `scheduler`. Classifier-free guidance
runs the negative and the positive prompt through the UNet in one batched call. The UNet's learned-variance
channels are split off before the scheduler step unless the scheduler itself uses learned variance.
"""

from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor

from show1_cli.progress import StepCallback
from show1_cli.stages import StageContext
from show1_cli.stages.sampling import guided_noise, load_scheduler, step_kwargs, step_per_frame, text_batch

COMPONENT = "show-1-base"


@torch.no_grad()
def generate_keyframes(
    unet: torch.nn.Module,
    scheduler,
    *,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    frames: int,
    height: int,
    width: int,
    steps: int,
    guidance_scale: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    on_step: StepCallback | None = None,
    initial_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample a (frames, 3, height, width) video in [-1, 1] from noise, conditioned on T5 embeddings (1, 77, D).
    `initial_noise` (1, 3, frames, height, width) replaces the drawn start noise (motion inversion)."""
    guided = guidance_scale > 1.0
    states = text_batch(prompt_embeds, negative_embeds, 1, guided).to(device, dtype)
    scheduler.set_timesteps(steps, device=device)
    # The noise is drawn on the CPU generator, so a seed gives the same start on every device.
    if initial_noise is None:
        sample = randn_tensor((1, 3, frames, height, width), generator=generator, device=torch.device(device), dtype=dtype)
    else:
        sample = initial_noise.to(device, dtype)
    sample = sample * scheduler.init_noise_sigma
    extra = step_kwargs(scheduler, generator)
    for index, timestep in enumerate(scheduler.timesteps):
        model_input = torch.cat([sample] * 2) if guided else sample
        model_input = scheduler.scale_model_input(model_input, timestep)
        noise = guided_noise(unet, scheduler, model_input, timestep, states, guidance_scale)
        sample = step_per_frame(scheduler, noise, timestep, sample, **extra)
        if on_step is not None:
            on_step(index + 1, steps)
    return sample[0].transpose(0, 1).clamp(-1, 1).float().cpu()


def run(context: StageContext, video: torch.Tensor | None) -> torch.Tensor:
    from show1_cli.finetune.adapter import apply_motion_options
    from show1_cli.finetune.inversion import initial_noise
    from show1_cli.models import load_unet

    settings = context.preset.keyframes
    runtime = context.runtime
    root = context.weights.resolve(COMPONENT)
    # With `generate --motion`, the motion adapter is blended in once, when the UNet is loaded.
    base = context.weights.lock()[COMPONENT]
    unet = context.models.get(
        f"{COMPONENT}/unet", lambda: apply_motion_options(load_unet(root, torch_dtype=runtime.dtype), context.options, base), unet=True
    )
    scheduler = load_scheduler(root, solver=settings.scheduler)
    return generate_keyframes(
        unet,
        scheduler,
        prompt_embeds=context.text_embeddings[context.prompt],
        negative_embeds=context.text_embeddings[settings.negative_prompt],
        frames=settings.frames,
        height=settings.height,
        width=settings.width,
        steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        generator=context.generator(),
        device=runtime.device,
        dtype=runtime.dtype,
        on_step=context.on_step,
        initial_noise=initial_noise(context, unet, scheduler.config),  # None unless --motion-init inversion
    )

