"""The motion-customization training loop: a pure function over tensors and models.

`train_motion` fine-tunes a chosen set of temporal-attention parameters of the keyframe UNet in place on
one reference clip (VMC, Jeong et al. 2023, on show-1-base): every step draws a timestep uniformly, noises
the clip with the base noise schedule (cosine betas), predicts the noise and minimises the loss chosen
with `--loss` (show1_cli/finetune/losses.py; why the default is the appearance-debiased MSE: docs/losses.md).

Everything random (timesteps, noise, debiasing anchors) comes from one generator seeded with the seed,
and dropout from torch's global generator, both saved in checkpoints: resuming from a checkpoint reaches
the same weights as an uninterrupted run. No files, no printing: progress and checkpoints go through
callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from show1_cli.errors import InputError, StageError
from show1_cli.finetune.losses import LossSpec, parse_loss
from show1_cli.models import temporal_attention_parameters, train_only

CHECKPOINT_FORMAT = 1
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

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed (`steps` may grow, the rest may not change)."""
        return {
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm,
            "loss": str(self.loss),
            "parameter_set": self.parameter_set,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class StepInfo:
    """Reported after every step: the step just done (1-based), the total, and its loss."""

    step: int
    total: int
    loss: float


@dataclass
class TrainResult:
    """The trained parameters (fp32, on the CPU, by UNet parameter name) and the loss of every step run."""

    parameters: dict[str, torch.Tensor]
    losses: list[float]


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


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], generator: torch.Generator, device: torch.device) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train_motion(
    unet: torch.nn.Module,
    noise_scheduler: DDPMScheduler,
    frames: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    settings: TrainSettings,
    *,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    resume: dict[str, Any] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    on_checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fine-tune `settings.parameter_set` of `unet` (in place) on one clip and return the trained values.

    frames: `(F, 3, H, W)` in [-1, 1] (see `sample_frames`); encoder_hidden_states: `(1, tokens, dim)`,
    the prompt's text states. The UNet must be on `device`; its trainable parameters are made fp32 there,
    everything else keeps its dtype and is frozen. `autocast_dtype` (CUDA only) runs the forward pass under
    torch.autocast, with a gradient scaler for fp16.

    `resume`: a checkpoint dict as given to `on_checkpoint`, which is called every
    `settings.checkpoint_every` steps. `on_step` is called after every step; it may use the UNet (for
    example to render a validation video): the trainer restores training mode and the random state after.
    """
    device = torch.device(device)
    if settings.steps < 1:
        raise InputError(f"--steps {settings.steps} must be at least 1", "use --steps 400 (the default)")
    if autocast_dtype is not None and device.type != "cuda":
        raise ValueError("autocast is only used on CUDA")

    named = temporal_attention_parameters(unet, settings.parameter_set)
    if not named:
        raise InputError(
            f"the UNet has no parameters in the set {settings.parameter_set!r}",
            "use --train qkv, attention or temporal with a Show-1 keyframe model",
        )
    trainable = train_only(unet, named)
    for param in trainable:
        param.data = param.data.float()
    names = list(named)
    if settings.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()

    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    torch.manual_seed(settings.seed)  # dropout

    clean = frames.permute(1, 0, 2, 3).unsqueeze(0).to(device=device, dtype=torch.float32)  # (1, 3, F, H, W)
    text = encoder_hidden_states.to(device=device, dtype=torch.float32)
    timesteps = noise_scheduler.config.num_train_timesteps

    start = 0
    losses: list[float] = []
    if resume is not None:
        start = _restore(resume, unet, names, optimizer, scaler, generator, device, settings)
        losses = list(resume["losses"])

    for step in range(start + 1, settings.steps + 1):
        t = torch.randint(0, timesteps, (1,), generator=generator)
        noise = torch.randn(clean.shape, generator=generator).to(device)
        noisy = noise_scheduler.add_noise(clean, noise, t.to(device))
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            output = unet(noisy, t.to(device), text).sample
        prediction = output[:, :EPSILON_CHANNELS].float()
        loss = settings.loss(prediction, noise, generator)
        if not torch.isfinite(loss):
            raise StageError(f"training diverged: the loss became {loss.item()} at step {step}", "lower --lr")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())

        if on_step is not None:
            rng = _rng_state(generator, device)
            on_step(StepInfo(step, settings.steps, losses[-1]))
            _set_rng_state(rng, generator, device)
            unet.train()
        if on_checkpoint is not None and settings.checkpoint_every and step % settings.checkpoint_every == 0:
            on_checkpoint(step, _checkpoint(step, unet, names, optimizer, scaler, generator, device, settings, losses))

    unet.eval()
    if settings.gradient_checkpointing:
        unet.disable_gradient_checkpointing()
    parameters = dict(unet.named_parameters())
    return TrainResult({name: parameters[name].detach().float().cpu().clone() for name in names}, losses)


def _checkpoint(step, unet, names, optimizer, scaler, generator, device, settings, losses) -> dict[str, Any]:
    parameters = dict(unet.named_parameters())
    return {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "settings": settings.fingerprint(),
        "parameters": {name: parameters[name].detach().cpu().clone() for name in names},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": _rng_state(generator, device),
        "losses": list(losses),
    }


def _restore(checkpoint, unet, names, optimizer, scaler, generator, device, settings) -> int:
    """Load a checkpoint into the UNet, optimizer and random state; return the step it was taken at."""
    fix = "resume with the same settings as the interrupted run, or start again without --resume"
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"the checkpoint has format {checkpoint.get('format')!r}, expected {CHECKPOINT_FORMAT}", fix)
    mine = settings.fingerprint()
    for key, value in checkpoint["settings"].items():
        if mine.get(key) != value:
            raise InputError(f"the checkpoint was made with {key} = {value!r}, this run has {mine.get(key)!r}", fix)
    step = int(checkpoint["step"])
    if step > settings.steps:
        raise InputError(f"the checkpoint is at step {step}, past --steps {settings.steps}", f"use --steps {step} or more")
    saved = checkpoint["parameters"]
    if sorted(saved) != sorted(names):
        raise InputError("the checkpoint holds other parameters than this run trains", fix)
    parameters = dict(unet.named_parameters())
    with torch.no_grad():
        for name in names:
            if saved[name].shape != parameters[name].shape:
                raise InputError(f"the checkpoint's {name} has shape {tuple(saved[name].shape)}, the UNet's is "
                                 f"{tuple(parameters[name].shape)}", fix)
            parameters[name].copy_(saved[name])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scaler is not None and checkpoint.get("scaler") is not None:
        scaler.load_state_dict(checkpoint["scaler"])
    _set_rng_state(checkpoint["rng"], generator, device)
    return step

