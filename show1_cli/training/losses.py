"""The losses the cascade's stages train with (derivations in docs/losses.md).

- `epsilon_mse`: the simple objective, mean squared error between the predicted and the true noise.
- `hybrid_loss`: the pixel stages' objective (improved DDPM, Nichol & Dhariwal 2021): epsilon MSE plus
  the variational-bound term that trains the learned-range variance channels, with the mean's gradient
  stopped inside that term so it only shapes the variance.
- `vae_loss`: the autoencoder's reconstruction L1 plus a small KL term towards the unit Gaussian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_VLB_WEIGHT = 1e-3


def epsilon_mse(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(prediction.float(), noise.float())


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
) -> torch.Tensor:
    """Epsilon MSE + vlb_weight * L_vlb for a 6-channel pixel UNet output (3 noise, 3 variance channels).

    L_vlb = T * E_t[L_t] (the bound summed over all T steps, estimated from the sampled t), so the default
    weight 0.001 with T = 1000 adds the sampled L_t with weight 1, as improved DDPM's hybrid objective does.
    """
    output = output.float()
    epsilon, variance_values = output[:, :3], output[:, 3:]
    mse = epsilon_mse(epsilon, noise)
    if vlb_weight == 0:
        return mse
    bound = variational_bound(terms, x0.float(), xt.float(), t, epsilon.detach(), variance_values)
    return mse + vlb_weight * terms.num_timesteps * bound.mean()


def vae_loss(reconstruction: torch.Tensor, target: torch.Tensor, posterior, kl_weight: float) -> torch.Tensor:
    """L1 reconstruction plus kl_weight times the posterior's KL to N(0, I), per latent element."""
    l1 = (reconstruction.float() - target.float()).abs().mean()
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return l1 + kl_weight * kl
