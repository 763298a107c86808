"""The losses show1 trains with, each a small function (derivations in docs/losses.md).

Stages:
- `epsilon_mse`: the simple objective, mean squared error between the predicted and the true noise (or,
  for a velocity-predicting model, the true velocity).
- `hybrid_loss`: the pixel stages' objective (improved DDPM, Nichol & Dhariwal 2021): epsilon MSE plus
  the variational-bound term that trains the learned-range variance channels, with the mean's gradient
  stopped inside that term so it only shapes the variance.
- `vae_loss`: the autoencoder's reconstruction L1 plus a small KL term towards the unit Gaussian.

Motion customization (`--loss` of finetune-motion, parsed by `parse_loss` into a `LossSpec`, a weighted sum):
every motion loss takes predicted and true noise as (batch, channels, frames, height, width), the 3 epsilon
channels only; `motion` is VMC's cosine motion distillation, `debiased` MotionDirector's appearance-debiased
MSE, `mse` the plain epsilon MSE. Why `debiased` is the default: docs/losses.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from show1_cli.errors import InputError

DEFAULT_VLB_WEIGHT = 1e-3
# What a UNet may predict (its scheduler config's prediction_type): the noise, as Show-1, or the velocity.
PREDICTION_TYPES = ("epsilon", "v_prediction")


def gaussian_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log p(x) in nats, elementwise, for x in [-1, 1] quantised to 256 levels (bins 2/255 wide)."""
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _standard_normal_cdf(inv_std * (centred + 1.0 / 255.0))
    cdf_minus = _standard_normal_cdf(inv_std * (centred - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    log_probs = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_delta))
    return -log_probs


@dataclass(frozen=True)
class DiffusionTerms:
    """Per-timestep constants of a discrete schedule (float64 on the CPU), from its betas."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @classmethod
    def from_scheduler(cls, scheduler) -> DiffusionTerms:
        return cls(scheduler.betas.double(), scheduler.alphas_cumprod.double())

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        out = values.to(like.device)[t.to(like.device)].to(like.dtype)
        return out.reshape(-1, *([1] * (like.dim() - 1)))

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clipped log variance of q(x_{t-1} | x_t, x_0)."""
        abar = self.alphas_cumprod
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        variance = self.betas * (1 - abar_prev) / (1 - abar)
        # The variance is 0 at t = 0; its log is clipped to the t = 1 value, as improved DDPM does.
        log_variance = torch.log(torch.cat([variance[1:2], variance[1:]]))
        coef_x0 = self.betas * abar_prev.sqrt() / (1 - abar)
        coef_xt = (1 - abar_prev) * (1 - self.betas).sqrt() / (1 - abar)
        mean = self._at(coef_x0, t, x0) * x0 + self._at(coef_xt, t, xt) * xt
        return mean, self._at(log_variance, t, xt).expand_as(xt)

    def learned_range_log_variance(self, values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's log variance from its variance channels in [-1, 1], between beta~_t and beta_t."""
        _, min_log = self.posterior(values, values, t)
        max_log = self._at(torch.log(self.betas), t, values)
        fraction = (values + 1) / 2
        return fraction * max_log + (1 - fraction) * min_log

    def predict_x0(self, xt: torch.Tensor, epsilon: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self._at(self.alphas_cumprod, t, xt)
        return (xt - (1 - abar).sqrt() * epsilon) / abar.sqrt()

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction_type: str) -> torch.Tensor:
        """What the model learns to output: the noise, or the velocity sqrt(abar) noise - sqrt(1 - abar) x0."""
        if prediction_type == "epsilon":
            return noise
        abar = self._at(self.alphas_cumprod, t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def epsilon(self, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, prediction_type: str) -> torch.Tensor:
        """The noise a model output implies (a velocity v gives sqrt(abar) v + sqrt(1 - abar) x_t)."""
        if prediction_type == "epsilon":
            return output
        abar = self._at(self.alphas_cumprod, t, xt)
        return abar.sqrt() * output + (1 - abar).sqrt() * xt


def variational_bound(
    terms: DiffusionTerms, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, epsilon: torch.Tensor, variance_values: torch.Tensor
) -> torch.Tensor:
    """The bound term L_t per sample, in bits per dimension: KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for
    t > 0 and the decoder's discretised negative log-likelihood of x_0 at t = 0. `epsilon` should come in
    detached so that the term trains the variance only."""
    true_mean, true_log_variance = terms.posterior(x0, xt, t)
    model_mean, _ = terms.posterior(terms.predict_x0(xt, epsilon, t), xt, t)
    model_log_variance = terms.learned_range_log_variance(variance_values, t)
    kl = gaussian_kl(true_mean, true_log_variance, model_mean, model_log_variance).flatten(1).mean(1)
    nll = discretized_gaussian_nll(x0, model_mean, 0.5 * model_log_variance).flatten(1).mean(1)
    return torch.where(t.to(x0.device) == 0, nll, kl) / math.log(2.0)


def hybrid_loss(
    terms: DiffusionTerms,
    output: torch.Tensor,
    noise: torch.Tensor,
    x0: torch.Tensor,
    xt: torch.Tensor,
    t: torch.Tensor,
    vlb_weight: float = DEFAULT_VLB_WEIGHT,
    snr_gamma: float | None = None,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """MSE + vlb_weight * L_vlb for a 6-channel pixel UNet output (3 prediction, 3 variance channels).

    The MSE is against the noise (Show-1) or, with `prediction_type="v_prediction"`, the velocity.
    L_vlb = T * E_t[L_t] (the bound summed over all T steps, estimated from the sampled t), so the default
    weight 0.001 with T = 1000 adds the sampled L_t with weight 1, as improved DDPM's hybrid objective does.
    `snr_gamma` weights the MSE term per sample with `min_snr_weights` (the bound term is left as it is).
    """
    output = output.float()
    prediction, variance_values = output[:, :3], output[:, 3:]
    weights = min_snr_weights(terms.alphas_cumprod, t, snr_gamma, prediction_type) if snr_gamma else None
    mse = epsilon_mse(prediction, terms.target(x0.float(), noise.float(), t, prediction_type), weights)
    if vlb_weight == 0:
        return mse
    epsilon = terms.epsilon(prediction.detach(), xt.float(), t, prediction_type)
    bound = variational_bound(terms, x0.float(), xt.float(), t, epsilon, variance_values)
    return mse + vlb_weight * terms.num_timesteps * bound.mean()


RECONSTRUCTION_LOSSES = ("l1", "mse")


def vae_loss(reconstruction: torch.Tensor, target: torch.Tensor, posterior, kl_weight: float,
             reconstruction_loss: str = "l1") -> torch.Tensor:
    """The reconstruction error (mean absolute or mean squared) plus kl_weight times the posterior's KL to
    N(0, I), per latent element. L1 is the usual choice; MSE weighs a few large errors (an object drawn in the
    wrong colour) over many small ones (a faint background), which a small autoencoder of flat shapes needs
    (docs/losses.md, section 5)."""
    error_of = F.l1_loss if reconstruction_loss == "l1" else F.mse_loss
    reconstruction_error = error_of(reconstruction.float(), target.float())
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return reconstruction_error + kl_weight * kl


# Weight of the anchor frame in the appearance-debiased loss (MotionDirector uses 1).
DEBIAS_BETA = 1.0
# Guards the cosine against a zero residual (two identical frames of noise never occur, but be safe).
COSINE_EPS = 1e-8


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.ndim != 5:
        raise ValueError(f"expected (batch, channels, frames, height, width), got {tuple(pred.shape)}")


def epsilon_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The simple DDPM loss: mean over all elements of (predicted noise - true noise)^2; with `weights`, each
    sample's mean is weighted (see `min_snr_weights`) before averaging over the batch."""
    _check(pred, target)
    if weights is None:
        return F.mse_loss(pred.float(), target.float())
    per_sample = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return (per_sample * weights.to(per_sample)).mean()


def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float, prediction_type: str = "epsilon") -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023), min(SNR_t, gamma) / SNR_t per sample for an epsilon loss,
    min(SNR_t, gamma) / (SNR_t + 1) for a velocity loss: the easy low-noise timesteps (SNR above gamma)
    count less, so training attends more to the noisy ones, where a video's layout, colours and motion are
    decided. `--snr-gamma` in `show1 train`; off by default."""
    abar = alphas_cumprod.double().to(t.device)[t]
    snr = abar / (1 - abar)
    denominator = snr if prediction_type == "epsilon" else snr + 1
    return (snr.clamp(max=gamma) / denominator).float()


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
