"""Motion customization: VMC's recipe on show-1-base, trained by show1's one training loop.

`train_motion` fine-tunes a chosen set of temporal-attention parameters of the keyframe UNet in place on
one reference clip (VMC, Jeong et al. 2023): every step draws a timestep uniformly, noises the clip with
the base noise schedule (cosine betas), predicts the noise and minimises the loss chosen with `--loss`
(show1_cli/training/losses.py; why the default is the appearance-debiased MSE: docs/losses.md). The
loop itself, with its checkpoints, resume and determinism, is show1_cli/training/loop.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from show1_cli.errors import InputError
from show1_cli.models import temporal_attention_parameters
from show1_cli.training.loop import StepLog, TrainConfig, TrainResult, make_accelerator, train
from show1_cli.training.losses import LossSpec, parse_loss
from show1_cli.training.objectives import MotionObjective

# The pixel UNets output 3 noise channels then 3 variance channels; the losses see the noise only.
EPSILON_CHANNELS = 3


@dataclass(frozen=True)
class TrainSettings:
    """The choices of one fine-tuning run (defaults: VMC's settings for show-1-base)."""

    steps: int = 400
    lr: float = 1e-4
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    loss: LossSpec = field(default_factory=lambda: parse_loss("debiased"))
    parameter_set: str = "qkv"
    seed: int = 0
    checkpoint_every: int = 0  # 0: never
    gradient_checkpointing: bool = True

    def config(self, mixed_precision: str = "no") -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=1, lr=self.lr, weight_decay=self.weight_decay,
                           max_grad_norm=self.max_grad_norm, seed=self.seed, mixed_precision=mixed_precision)


def sample_frames(frames: torch.Tensor, count: int, height: int, width: int) -> torch.Tensor:
    """`count` frames spread evenly over the clip (first and last included), centre-cropped to the aspect
    ratio of `height` x `width` and resized to it. `frames`: `(N, 3, H, W)` in [-1, 1]."""
    total = frames.shape[0]
    if count < 2:
        raise InputError(f"--frames {count} is too few: motion needs at least 2 frames", "use --frames 8 (the default)")
    if total < count:
        raise InputError(
            f"the reference clip has {total} frame{'s' if total != 1 else ''}, fewer than the {count} to train on",
            f"pass a clip with at least {count} frames, or lower --frames",
        )
    index = torch.linspace(0, total - 1, count).round().long()
    picked = frames[index].float()
    src_h, src_w = picked.shape[-2:]
    # Crop to the target aspect ratio so that resizing does not distort the motion.
    if src_w * height > width * src_h:
        crop_w = max(1, round(src_h * width / height))
        left = (src_w - crop_w) // 2
        picked = picked[..., left : left + crop_w]
    else:
        crop_h = max(1, round(src_w * height / width))
        top = (src_h - crop_h) // 2
        picked = picked[..., top : top + crop_h, :]
    resized = F.interpolate(picked, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized.clamp(-1.0, 1.0)


def noise_scheduler_from_config(config: dict[str, Any]) -> DDPMScheduler:
    """The training noise schedule of a model: DDPM with the betas of its (sampling) scheduler config."""
    return DDPMScheduler.from_config(config)


def train_motion(
    unet: torch.nn.Module,
    noise_scheduler: DDPMScheduler,
    frames: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    settings: TrainSettings,
    *,
    mixed_precision: str = "no",
    identity: dict[str, Any] | None = None,
    resume: Path | None = None,
    checkpoint_path: Path | None = None,
    on_step: Callable[[StepLog], None] | None = None,
    on_validate: Callable[[int, torch.nn.Module], None] | None = None,
    validate_every: int = 0,
) -> TrainResult:
    """Fine-tune `settings.parameter_set` of `unet` (in place) on one clip; the result holds the trained values.

    frames: `(F, 3, H, W)` in [-1, 1] (see `sample_frames`); encoder_hidden_states: `(1, tokens, dim)`, the
    prompt's text states. The UNet runs where accelerate puts it (the GPU when there is one); its trainable
    parameters are made fp32, everything else keeps its dtype and is frozen.
    """
    named = temporal_attention_parameters(unet, settings.parameter_set)
    if not named:
        raise InputError(
            f"the UNet has no parameters in the set {settings.parameter_set!r}",
            "use --train qkv, attention or temporal with a Show-1 keyframe model",
        )
    config = settings.config(mixed_precision)
    objective = MotionObjective(frames, encoder_hidden_states, noise_scheduler, settings.loss)
    identity = {"loss": str(settings.loss), "parameter_set": settings.parameter_set, **(identity or {})}
    return train(unet, named.values(), objective, config, accelerator=make_accelerator(config), identity=identity, resume=resume,
                 checkpoint_path=checkpoint_path, checkpoint_every=settings.checkpoint_every, on_step=on_step,
                 on_validate=on_validate, validate_every=validate_every, gradient_checkpointing=settings.gradient_checkpointing)
