"""Training losses for motion customization of the keyframe UNet.

Every loss takes the predicted and the true noise as `(batch, channels, frames, height, width)` tensors
(channels = the 3 epsilon channels; a pixel UNet's 3 variance channels are cut off before) and returns a
scalar. docs/losses.md derives each one, places it among the losses the Show-1 stages were trained
with, and explains the choice of the default (`debiased`), measured by benchmarks/motion_losses.py.

`parse_loss("motion+0.1*mse")` turns the `--loss` option into a `LossSpec`, a weighted sum of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from show1_cli.errors import InputError

# Weight of the anchor frame in the appearance-debiased loss (MotionDirector uses 1).
DEBIAS_BETA = 1.0
# Guards the cosine against a zero residual (two identical frames of noise never occur, but be safe).
COSINE_EPS = 1e-8


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.ndim != 5:
        raise ValueError(f"expected (batch, channels, frames, height, width), got {tuple(pred.shape)}")


def epsilon_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The simple DDPM loss: mean over all elements of (predicted noise - true noise)^2."""
    _check(pred, target)
    return F.mse_loss(pred.float(), target.float())


def frame_residuals(x: torch.Tensor) -> torch.Tensor:
    """x[:, :, f+1] - x[:, :, f] for every neighbouring frame pair: `(B, C, F-1, H, W)`."""
    return x[:, :, 1:] - x[:, :, :-1]


def motion_distillation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine similarity between the frame-to-frame residuals of predicted and true noise.

    Each residual (one per batch item and frame pair) is flattened over channels x height x width; the
    cosine of the predicted against the true residual is averaged over all of them. Anything common to
    every frame (the appearance: a static image added to all frames) cancels in the residuals, and the
    cosine ignores their scale, so only the direction of change between frames is learned.
    """
    _check(pred, target)
    if pred.shape[2] < 2:
        raise ValueError("the motion loss needs at least 2 frames")
    pred_res = frame_residuals(pred.float()).transpose(1, 2).flatten(2)  # (B, F-1, C*H*W)
    true_res = frame_residuals(target.float()).transpose(1, 2).flatten(2)
    cosine = F.cosine_similarity(pred_res, true_res, dim=-1, eps=COSINE_EPS)
    return 1.0 - cosine.mean()


def debias(x: torch.Tensor, anchor: torch.Tensor, beta: float = DEBIAS_BETA) -> torch.Tensor:
    """Re-centre every frame on an anchor frame: sqrt(beta^2 + 1) * x_f - beta * x_anchor.

    `anchor` holds one frame index per batch item. A component c shared by all frames (the appearance)
    shrinks to (sqrt(beta^2 + 1) - beta) * c, 0.41 c for beta = 1, while what differs between frames
    keeps a weight of sqrt(beta^2 + 1).
    """
    anchor_frames = x[torch.arange(x.shape[0], device=x.device), :, anchor.to(x.device)].unsqueeze(2)
    return math.sqrt(beta**2 + 1.0) * x - beta * anchor_frames


def appearance_debiased_mse(
    pred: torch.Tensor, target: torch.Tensor, anchor: torch.Tensor, beta: float = DEBIAS_BETA
) -> torch.Tensor:
    """MSE between prediction and target, both re-centred on the same anchor frame (`debias`)."""
    _check(pred, target)
    return F.mse_loss(debias(pred.float(), anchor, beta), debias(target.float(), anchor, beta))


def random_anchor(batch: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """One uniformly drawn anchor frame index per batch item (drawn on the CPU generator)."""
    return torch.randint(0, frames, (batch,), generator=generator)


LOSSES = ("motion", "mse", "debiased")
_TERM = re.compile(r"^\s*(?:(?P<weight>\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?(?P<name>[a-z]+)\s*$")


@dataclass(frozen=True)
class LossSpec:
    """A weighted sum of the named losses, e.g. ((1.0, "motion"), (0.1, "mse"))."""

    terms: tuple[tuple[float, str], ...]

    def __str__(self) -> str:
        return "+".join(name if weight == 1.0 else f"{weight:g}*{name}" for weight, name in self.terms)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The weighted loss. `generator` draws the debiased loss's anchor (nothing is drawn otherwise)."""
        total = pred.new_zeros((), dtype=torch.float32)
        for weight, name in self.terms:
            if name == "motion":
                value = motion_distillation_loss(pred, target)
            elif name == "mse":
                value = epsilon_mse(pred, target)
            else:
                value = appearance_debiased_mse(pred, target, random_anchor(pred.shape[0], pred.shape[2], generator))
            total = total + weight * value
        return total


def parse_loss(spec: str) -> LossSpec:
    """Parse `--loss`: a name from LOSSES or a `+`-separated sum of optionally weighted names."""
    fix = f"use one of {', '.join(LOSSES)} or a weighted sum such as motion+0.1*mse"
    terms: list[tuple[float, str]] = []
    for part in spec.split("+"):
        match = _TERM.match(part.lower())
        if match is None or match["name"] not in LOSSES:
            raise InputError(f"cannot read loss {spec!r} (at {part.strip()!r})", fix)
        weight = float(match["weight"]) if match["weight"] else 1.0
        if weight <= 0:
            raise InputError(f"loss {spec!r} has a zero weight for {match['name']}", fix)
        if any(name == match["name"] for _, name in terms):
            raise InputError(f"loss {spec!r} names {match['name']} twice", fix)
        terms.append((weight, match["name"]))
    return LossSpec(tuple(terms))
