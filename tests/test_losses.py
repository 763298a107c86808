"""The motion-customization losses against small cases computed by hand (see docs/losses.md)."""

from __future__ import annotations

import math

import pytest
import torch

from show1_cli.errors import InputError
from show1_cli.training.losses import (
    LossSpec,
    appearance_debiased_mse,
    debias,
    epsilon_mse,
    motion_distillation_loss,
    parse_loss,
)


def video(*frames: list[float]) -> torch.Tensor:
    """A (1, 1, F, 1, W) tensor: one batch item, one channel, each frame a row of values."""
    return torch.tensor(frames, dtype=torch.float32)[None, None, :, None, :]


def test_epsilon_mse_hand_case():
    pred = video([1.0, 2.0], [3.0, 4.0])
    target = video([0.0, 2.0], [1.0, 0.0])
    # squared errors 1, 0, 4, 16 -> mean 21 / 4
    assert epsilon_mse(pred, target).item() == pytest.approx(5.25)


def test_motion_loss_hand_case():
    # predicted residuals [1, 0] then [0, 1]; true residuals [1, 0] then [1, 0]: cosines 1 and 0
    pred = video([0.0, 0.0], [1.0, 0.0], [1.0, 1.0])
    target = video([0.0, 0.0], [1.0, 0.0], [2.0, 0.0])
    assert motion_distillation_loss(pred, target).item() == pytest.approx(0.5)


def test_motion_loss_ignores_scale_and_opposite_motion_is_worst():
    target = video([0.0, 0.0], [1.0, 2.0], [3.0, 1.0])
    scaled = target * 7.0
    reversed_motion = -target
    assert motion_distillation_loss(scaled, target).item() == pytest.approx(0.0, abs=1e-6)
    assert motion_distillation_loss(reversed_motion, target).item() == pytest.approx(2.0)


def test_motion_loss_is_invariant_to_a_common_image():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 5, 4, 6, generator=generator)
    target = torch.randn(2, 3, 5, 4, 6, generator=generator)
    image = torch.randn(2, 3, 1, 4, 6, generator=generator) * 10  # the same image added to every frame
    base = motion_distillation_loss(pred, target)
    assert motion_distillation_loss(pred + image, target).item() == pytest.approx(base.item(), abs=1e-5)
    assert motion_distillation_loss(pred, target + image).item() == pytest.approx(base.item(), abs=1e-5)
    # the plain MSE is not: it sees appearance
    assert epsilon_mse(pred + image, target).item() > epsilon_mse(pred, target).item() + 1


def test_motion_loss_needs_two_frames():
    with pytest.raises(ValueError, match="2 frames"):
        motion_distillation_loss(video([1.0]), video([1.0]))


def test_debiased_mse_hand_case():
    pred = video([1.0], [3.0])
    target = video([0.0], [1.0])
    s = math.sqrt(2.0)
    # anchor 0, beta 1: pred -> [s - 1, 3s - 1], target -> [0, s]; errors s - 1 and 2s - 1
    expected = ((s - 1) ** 2 + (2 * s - 1) ** 2) / 2
    assert appearance_debiased_mse(pred, target, torch.tensor([0])).item() == pytest.approx(expected)
    # anchor 1: pred -> [s - 3, 3s - 3], target -> [-1, s - 1]
    expected = ((s - 3 + 1) ** 2 + (3 * s - 3 - s + 1) ** 2) / 2
    assert appearance_debiased_mse(pred, target, torch.tensor([1])).item() == pytest.approx(expected)


def test_debias_uses_each_batch_items_own_anchor_and_shrinks_a_common_image():
    x = torch.arange(2 * 1 * 3 * 1 * 1, dtype=torch.float32).reshape(2, 1, 3, 1, 1)  # [[0,1,2],[3,4,5]]
    out = debias(x, torch.tensor([2, 0]))
    s = math.sqrt(2.0)
    assert torch.allclose(out[0, 0, :, 0, 0], s * torch.tensor([0.0, 1, 2]) - 2)
    assert torch.allclose(out[1, 0, :, 0, 0], s * torch.tensor([3.0, 4, 5]) - 3)
    image = torch.full((2, 1, 1, 1, 1), 10.0)
    shift = debias(x + image, torch.tensor([2, 0])) - out
    assert torch.allclose(shift, torch.full_like(out, (s - 1) * 10))


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        epsilon_mse(torch.zeros(1, 3, 2, 4, 4), torch.zeros(1, 3, 3, 4, 4))


def test_parse_loss_names_and_weighted_sums():
    assert parse_loss("motion") == LossSpec(((1.0, "motion"),))
    assert parse_loss("motion+0.1*mse") == LossSpec(((1.0, "motion"), (0.1, "mse")))
    assert parse_loss(" 2*Debiased + .5*motion ") == LossSpec(((2.0, "debiased"), (0.5, "motion")))
    assert str(parse_loss("motion+0.1*mse")) == "motion+0.1*mse"


@pytest.mark.parametrize("spec", ["", "l1", "motion+", "motion*0.1", "-1*mse", "0*mse", "mse+mse", "motion+x*mse"])
def test_parse_loss_rejects_bad_specs(spec):
    with pytest.raises(InputError):
        parse_loss(spec)


def test_weighted_sum_adds_the_terms():
    generator = torch.Generator().manual_seed(3)
    pred = torch.randn(1, 3, 4, 2, 2, generator=generator)
    target = torch.randn(1, 3, 4, 2, 2, generator=generator)
    combined = parse_loss("motion+0.1*mse")(pred, target, torch.Generator())
    expected = motion_distillation_loss(pred, target) + 0.1 * epsilon_mse(pred, target)
    assert combined.item() == pytest.approx(expected.item())
    anchor_draw = torch.Generator().manual_seed(5)
    anchor = torch.randint(0, 4, (1,), generator=torch.Generator().manual_seed(5))
    debiased = parse_loss("debiased")(pred, target, anchor_draw)
    assert debiased.item() == pytest.approx(appearance_debiased_mse(pred, target, anchor).item())


# ------------------------------------------------------------------------------------------- stage losses


def test_the_vae_loss_is_the_chosen_reconstruction_error_plus_the_weighted_kl():
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from show1_cli.training.losses import vae_loss

    target = torch.zeros(1, 3, 2, 2)
    reconstruction = torch.tensor([0.5, -0.5, 0.0, 0.0]).reshape(1, 1, 2, 2).repeat(1, 3, 1, 1)
    # mean 1 and log-variance 0 in every one of 4 latent elements: KL = 0.5 * mean^2 = 0.5 each, 2 in all
    posterior = DiagonalGaussianDistribution(torch.cat([torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)], dim=1))
    assert vae_loss(reconstruction, target, posterior, 0.0).item() == pytest.approx(0.25)
    assert vae_loss(reconstruction, target, posterior, 0.0, "mse").item() == pytest.approx(0.125)
    assert vae_loss(reconstruction, target, posterior, 0.1, "mse").item() == pytest.approx(0.125 + 0.1 * 0.5)


def cosine_terms():
    from diffusers import DDPMScheduler

    from show1_cli.training.losses import DiffusionTerms

    return DiffusionTerms.from_scheduler(DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"))


def test_gaussian_kl_and_discretized_nll_closed_forms():
    from show1_cli.training.losses import discretized_gaussian_nll, gaussian_kl

    kl = gaussian_kl(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(1.0), torch.tensor(math.log(2.0)))
    assert kl.item() == pytest.approx(0.5 * math.log(2.0))  # 0.5 (log 2 + (1 + 1) / 2 - 1)
    assert gaussian_kl(torch.tensor(0.3), torch.tensor(-1.0), torch.tensor(0.3), torch.tensor(-1.0)).item() == 0.0
    # x = 0 under N(0, 1): the bin [-1/255, 1/255] has probability 2/255 * phi(0) to first order.
    nll = discretized_gaussian_nll(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)).item()
    assert nll == pytest.approx(-math.log(2 / 255 / math.sqrt(2 * math.pi)), rel=1e-4)
    # The edges take the whole tail: x = 1 with mean 1 has probability 1 - Phi(-1/255) ~ 0.5.
    edge = discretized_gaussian_nll(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.0)).item()
    assert edge == pytest.approx(-math.log(0.5 + 1 / 255 / math.sqrt(2 * math.pi)), rel=1e-4)


def test_the_bound_term_is_the_variance_kl_when_the_mean_is_exact():
    from show1_cli.training.losses import variational_bound

    terms = cosine_terms()
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 2, 4, 4, generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([10, 700])
    abar = terms.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    # v = +1 selects the log variance log(beta_t); the exact noise gives the exact posterior mean.
    bound = variational_bound(terms, x0, xt, t, noise, torch.ones_like(x0))
    betas = terms.betas[t]
    abar_prev = terms.alphas_cumprod[t - 1]
    posterior = betas * (1 - abar_prev) / (1 - terms.alphas_cumprod[t])
    expected = 0.5 * (torch.log(betas) - torch.log(posterior) + posterior / betas - 1) / math.log(2.0)
    assert torch.allclose(bound.double(), expected, rtol=1e-4, atol=1e-7)
    # v = -1 selects the posterior variance itself: nothing left to pay.
    assert variational_bound(terms, x0, xt, t, noise, -torch.ones_like(x0)).abs().max() < 1e-5


def test_the_hybrid_loss_adds_the_weighted_bound_and_trains_only_the_variance_through_it():
    from show1_cli.training.losses import epsilon_mse, hybrid_loss, variational_bound

    terms = cosine_terms()
    generator = torch.Generator().manual_seed(1)
    x0 = torch.rand(1, 3, 2, 4, 4, generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([400])
    abar = terms.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    output = torch.randn(1, 6, 2, 4, 4, generator=generator, requires_grad=True)
    loss = hybrid_loss(terms, output, noise, x0, xt, t, vlb_weight=1e-3)
    mse = epsilon_mse(output[:, :3], noise)
    bound = variational_bound(terms, x0, xt, t, output[:, :3].detach(), output[:, 3:]).mean()
    assert loss.item() == pytest.approx(mse.item() + 1e-3 * 1000 * bound.item(), rel=1e-5)
    assert hybrid_loss(terms, output, noise, x0, xt, t, vlb_weight=0).item() == pytest.approx(mse.item())
    # The noise channels get the MSE gradient only (the mean is stopped inside the bound term).
    loss.backward()
    (mse_grad,) = torch.autograd.grad(epsilon_mse(output[:, :3], noise), output)
    assert torch.allclose(output.grad[:, :3], mse_grad[:, :3], atol=1e-6)
    assert output.grad[:, 3:].abs().sum() > 0


def test_min_snr_weights_and_the_weighted_mse():
    from show1_cli.training.losses import min_snr_weights

    terms = cosine_terms()
    t = torch.tensor([5, 300, 900])
    abar = terms.alphas_cumprod[t]
    snr = abar / (1 - abar)
    weights = min_snr_weights(terms.alphas_cumprod, t, 5.0)
    assert torch.allclose(weights.double(), torch.clamp(snr, max=5.0) / snr, rtol=1e-6)
    assert weights[0] < 0.01 and weights[2] == 1.0  # low noise counts less, high noise fully
    pred, target = video([1.0, 2.0]).expand(3, 1, 2, 1, 2), torch.zeros(3, 1, 2, 1, 2)
    # per-sample mean squared error 2.5 each; weighted mean = 2.5 * mean(weights)
    assert epsilon_mse(pred, target, weights).item() == pytest.approx(2.5 * weights.mean().item(), rel=1e-6)


def test_velocity_targets_match_diffusers_and_imply_the_true_noise():
    from diffusers import DDPMScheduler

    from show1_cli.training.losses import hybrid_loss, min_snr_weights, variational_bound

    terms = cosine_terms()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    generator = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 3, 2, 4, 4, generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([30, 990])
    xt = scheduler.add_noise(x0, noise, t)
    velocity = terms.target(x0, noise, t, "v_prediction")
    assert torch.allclose(velocity, scheduler.get_velocity(x0, noise, t), atol=1e-5)
    assert torch.equal(terms.target(x0, noise, t, "epsilon"), noise)
    assert torch.allclose(terms.epsilon(velocity, xt, t, "v_prediction"), noise, atol=1e-4)
    # At the noisiest timesteps the velocity is (minus) the clean video: the prompt's content is the target.
    assert torch.allclose(velocity[1], -x0[1], atol=0.1)
    # The exact velocity leaves only the bound term, computed from the noise it implies.
    variance = torch.zeros_like(x0)
    loss = hybrid_loss(terms, torch.cat([velocity, variance], 1), noise, x0, xt, t, prediction_type="v_prediction")
    bound = variational_bound(terms, x0, xt, t, noise, variance).mean()
    assert loss.item() == pytest.approx(1000 * 1e-3 * bound.item(), rel=1e-3, abs=1e-6)
    # min-SNR for a velocity loss: min(SNR, gamma) / (SNR + 1).
    abar = terms.alphas_cumprod[t]
    snr = abar / (1 - abar)
    weights = min_snr_weights(terms.alphas_cumprod, t, 5.0, "v_prediction")
    assert torch.allclose(weights.double(), torch.clamp(snr, max=5.0) / (snr + 1), rtol=1e-6)
