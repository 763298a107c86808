"""Stage 4: latent expert translation (show-1-sr2), 256x160 -> 576x320 by default.

The frames are resized to the target size, encoded with the VAE, noised to the preset's strength
(0.8: the expert was fine-tuned on timesteps 0-900 only), denoised by the sr2 UNet (zeroscope-derived)
with its own CLIP text encoder, scheduler and classifier-free guidance, and decoded frame by frame.
"""

# Why only this stage is latent: at 576x320 a pixel UNet would run on 8x8 = 64 times more positions than
# the VAE latents, and text alignment is already fixed by the pixel stages, so latent detail is enough.

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from show1_cli.errors import InputError
from show1_cli.stages import StageContext
from show1_cli.stages.sampling import guided_noise, load_scheduler, step_kwargs, text_batch
from show1_cli.stages.sr1 import check_sizes

COMPONENT = "show-1-sr2"
# Above this many pixels per frame even one frame's decoder activations get large: decode in tiles too.
TILING_ABOVE_PIXELS = 1024 * 1024


def resize_frames(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(F, 3, h, w) -> (F, 3, height, width), bicubic as the original's image resize, kept in [-1, 1]."""
    if video.shape[-2:] == (height, width):
        return video
    return F.interpolate(video, size=(height, width), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)


def configure_vae(vae, height: int, width: int, *, slicing: bool = True, tiling: bool = False) -> None:
    """Slicing (one frame at a time) keeps memory flat in the frame count; tiling for very large frames, or
    when the memory planner finds even one frame too large (`tiling`)."""
    vae.enable_slicing() if slicing else vae.disable_slicing()
    vae.enable_tiling() if tiling or height * width > TILING_ABOVE_PIXELS else vae.disable_tiling()


def encode_frames(vae, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(F, 3, H, W) in [-1, 1] -> scaled latents (F, C, H/8, W/8), sampled from the VAE's posterior."""
    posterior = vae.encode(frames).latent_dist
    return posterior.sample(generator=generator) * vae.config.scaling_factor


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents (F, C, h, w) -> frames (F, 3, 8h, 8w) in [-1, 1]; memory per configure_vae."""
    frames = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    return frames.clamp(-1, 1)


def encode_prompt(tokenizer, text_encoder, texts: list[str], device: torch.device | str) -> torch.Tensor:
    """CLIP text states (len(texts), 77, D) for the sr2 UNet's cross attention."""
    tokens = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
    mask = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]


def denoising_timesteps(scheduler, steps: int, strength: float, device: torch.device | str) -> torch.Tensor:
    """The last `int(steps * strength)` timesteps of a `steps`-step schedule (video-to-video)."""
    scheduler.set_timesteps(steps, device=device)
    run_steps = min(int(steps * strength), steps)
    if run_steps < 1:
        raise InputError(
            f"sr2 with {steps} steps at strength {strength} runs no denoising step (int(steps x strength) = 0)",
            f"raise sr2.steps to at least {int(1 / strength) + 1}",
        )
    start = (steps - run_steps) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:]


@torch.no_grad()
def translate(
    unet: torch.nn.Module,
    vae,
    scheduler,
    video: torch.Tensor,
    *,
    height: int,
    width: int,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    steps: int,
    guidance_scale: float,
    strength: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    slicing: bool = True,
    tiling: bool = False,
    tick: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Upscale a (frames, 3, h, w) video in [-1, 1] to (frames, 3, height, width) through the latent expert."""
    timesteps = denoising_timesteps(scheduler, steps, strength, device)
    frames = resize_frames(video.to(device, torch.float32), height, width).to(dtype)
    configure_vae(vae, height, width, slicing=slicing, tiling=tiling)
    latents = encode_frames(vae, frames, generator)  # (F, C, h, w)
    del frames
    # The noise is drawn frame-major, in the encoded frames' layout, as the original pipeline draws it.
    noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    latents = scheduler.add_noise(latents, noise, timesteps[:1])
    latents = latents.permute(1, 0, 2, 3).unsqueeze(0)  # (1, C, F, h, w) for the video UNet

    guided = guidance_scale > 1.0
    text = text_batch(prompt_embeds, negative_embeds, 1, guided).to(device, dtype)
    extra = step_kwargs(scheduler, generator)
    for t in timesteps:
        model_input = torch.cat([latents] * 2) if guided else latents
        model_input = scheduler.scale_model_input(model_input, t)
        noise = guided_noise(unet, scheduler, model_input, t, text, guidance_scale)
        latents = scheduler.step(noise, t, latents, **extra, return_dict=False)[0]
        if tick is not None:
            tick()
    return decode_latents(vae, latents[0].permute(1, 0, 2, 3))


def load_vae(component_dir: Path, dtype: torch.dtype = torch.float32):
    """`component_dir/vae/` as an AutoencoderKL, from safetensors where present."""
    from diffusers import AutoencoderKL

    # The hub's sr2 VAE is a .bin pickle only: say so, rather than have diffusers look for safetensors and log an error.
    safetensors = (component_dir / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    return AutoencoderKL.from_pretrained(component_dir, subfolder="vae", torch_dtype=dtype, use_safetensors=safetensors)


def encode_with_own_encoder(context: StageContext, root: Path, texts: list[str]) -> torch.Tensor:
    """sr2's CLIP states for `texts`; the encoder is dropped once done, so it never sits next to the UNet."""
    from transformers import CLIPTextModel, CLIPTokenizer

    key = f"{COMPONENT}/text_encoder"
    dtype = context.runtime.dtype
    encoder = context.models.get(key, lambda: CLIPTextModel.from_pretrained(root, subfolder="text_encoder", torch_dtype=dtype))
    tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
    states = encode_prompt(tokenizer, encoder, texts, context.runtime.device)
    context.models.drop(key)
    return states


def run(context: StageContext, video: torch.Tensor) -> torch.Tensor:
    from show1_cli.models import load_unet
    from show1_cli.stages.sr1 import StepCounter

    settings = context.preset.sr2
    runtime = context.runtime
    check_sizes(*video.shape[-2:], settings.height, settings.width, stage="sr2")
    root = context.weights.resolve(COMPONENT)

    embeds = encode_with_own_encoder(context, root, [context.prompt, settings.negative_prompt])
    unet = context.models.get(f"{COMPONENT}/unet", lambda: load_unet(root, torch_dtype=runtime.dtype), unet=True)
    vae = context.models.get(f"{COMPONENT}/vae", lambda: load_vae(root, runtime.dtype))
    scheduler = load_scheduler(root, "scheduler", settings.scheduler)
    run_steps = len(denoising_timesteps(scheduler, settings.steps, settings.strength, "cpu"))
    return translate(
        unet,
        vae,
        scheduler,
        video,
        height=settings.height,
        width=settings.width,
        prompt_embeds=embeds[:1],
        negative_embeds=embeds[1:],
        steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        strength=settings.strength,
        generator=context.generator(),
        device=runtime.device,
        dtype=runtime.dtype,
        tiling=bool(context.options.get("vae_tiling", False)),
        tick=StepCounter(context.on_step, settings.steps, start=settings.steps - run_steps),
    ).cpu().float()
