"""Starting generation from the reference clip's own noise: DDIM inversion (`--motion-init inversion`).

VMC starts keyframe sampling not from fresh noise but from the DDIM inversion of the reference frames:
the deterministic DDIM update run backwards, t = 0 -> T, with the (motion-tuned) keyframe UNet and the
prompt (conditional only, no guidance), so the start noise already carries the clip's layout and motion.
`--noise-prior P` mixes it with fresh noise as MotionDirector does: sqrt(P) * inverted + sqrt(1 - P) *
fresh, which keeps unit variance for independent parts; P = 1 is pure inversion, P = 0 the usual start.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMInverseScheduler
from diffusers.utils.torch_utils import randn_tensor

from show1_cli.errors import InputError
from show1_cli.finetune.adapter import read_motion_adapter
from show1_cli.finetune.train import EPSILON_CHANNELS, sample_frames
from show1_cli.progress import StepCallback


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inverse_scheduler(scheduler_config: dict[str, Any]) -> DDIMInverseScheduler:
    """DDIM inversion with the base model's betas; "trailing" spacing ends exactly at t = T - 1, where the
    keyframe sampler (linspace spacing) starts."""
    return DDIMInverseScheduler.from_config(scheduler_config, timestep_spacing="trailing")


@torch.no_grad()
def ddim_invert(
    unet: torch.nn.Module,
    scheduler_config: dict[str, Any],
    frames: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    steps: int,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Invert `frames` (F, 3, H, W) in [-1, 1] to the noise (1, 3, F, H, W) DDIM would denoise into them."""
    scheduler = inverse_scheduler(scheduler_config)
    scheduler.set_timesteps(steps, device=device)
    sample = frames.permute(1, 0, 2, 3).unsqueeze(0).to(device=device, dtype=dtype)
    text = encoder_hidden_states.to(device=device, dtype=dtype)
    for index, timestep in enumerate(scheduler.timesteps):
        prediction = unet(sample, timestep, encoder_hidden_states=text).sample[:, :EPSILON_CHANNELS]
        sample = scheduler.step(prediction, timestep, sample).prev_sample
        if on_step is not None:
            on_step(index + 1, steps)
    return sample


def mix_with_noise(inverted: torch.Tensor, fresh: torch.Tensor, prior: float) -> torch.Tensor:
    """sqrt(prior) * inverted + sqrt(1 - prior) * fresh."""
    check_noise_prior(prior)
    return math.sqrt(prior) * inverted + math.sqrt(1.0 - prior) * fresh.to(inverted.device, inverted.dtype)


def check_noise_prior(prior: float) -> float:
    if not 0.0 <= prior <= 1.0:
        raise InputError(f"--noise-prior {prior} must lie in [0, 1]", "use 1 (pure inversion) down to 0 (fresh noise)")
    return float(prior)


def reference_frames(adapter_path: Path, frames: int, height: int, width: int) -> torch.Tensor:
    """The adapter's reference clip (where it was when trained, checked against its hash), sampled for inversion."""
    from show1_cli.video import read_video

    metadata = read_motion_adapter(adapter_path).metadata
    reference = Path(metadata["reference_path"])
    fix = f"put the clip it was trained on back at {reference}, or generate without --motion-init inversion"
    if not reference.is_file():
        raise InputError(f"--motion-init inversion needs the reference clip of {adapter_path}, but {reference} is gone", fix)
    if file_sha256(reference) != metadata["reference_sha256"]:
        raise InputError(f"the reference clip {reference} changed since {adapter_path} was trained on it", fix)
    return sample_frames(read_video(reference).frames, frames, height, width)


def initial_noise(context, unet: torch.nn.Module, scheduler_config: dict[str, Any]) -> torch.Tensor | None:
    """The keyframe stage's start noise for `--motion-init inversion`, None for the usual fresh noise.

    `context` is the stage's StageContext; its options carry "motion" (adapter path), "motion_init" and
    "noise_prior". The fresh part is drawn exactly as the stage draws its own start noise (first draw of
    the run's seeded generator), so `--noise-prior 0` reproduces the run without inversion.
    """
    options = context.options
    if options.get("motion_init", "noise") != "inversion":
        return None
    if not options.get("motion"):
        raise InputError("--motion-init inversion needs a motion adapter", "pass --motion ADAPTER.safetensors")
    prior = check_noise_prior(float(options.get("noise_prior", 1.0)))
    settings = context.preset.keyframes
    runtime = context.runtime
    clip = reference_frames(Path(options["motion"]), settings.frames, settings.height, settings.width)
    inverted = ddim_invert(
        unet,
        scheduler_config,
        clip,
        context.text_embeddings[context.prompt],
        settings.steps,
        device=runtime.device,
        dtype=runtime.dtype,
    )
    fresh = randn_tensor(inverted.shape, generator=context.generator(), device=runtime.device, dtype=runtime.dtype)
    return mix_with_noise(inverted, fresh, prior)
