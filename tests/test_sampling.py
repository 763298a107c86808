"""The scheduler details that make show1 compute what the official Show-1 flow computes (docs/fidelity.md)."""

from __future__ import annotations

import types

import diffusers
import pytest
import torch

from show1_cli.choices import SCHEDULERS
from show1_cli.stages.sampling import SOLVERS, load_scheduler, scheduler_from_config, step_per_frame
from show1_cli.training.scaffold import hub_config, write_json
from tests.tiny_checkpoints import IF_II_SCHEDULER


def base_scheduler(tmp_path, solver="default"):
    write_json(tmp_path / "scheduler" / "scheduler_config.json", hub_config("scheduler-show-1-base.json"))
    return load_scheduler(tmp_path, solver=solver)


def frames_of_different_ranges() -> tuple[torch.Tensor, torch.Tensor]:
    """A video whose frames' x0 predictions span very different ranges, so a per-video quantile
    and per-frame quantiles threshold differently."""
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 3, 4, 8, 8, generator=generator)
    output = torch.randn(1, 3, 4, 8, 8, generator=generator)
    scale = torch.tensor([0.1, 0.5, 1.0, 1.5]).view(1, 1, 4, 1, 1)
    return sample * scale, output * scale


@pytest.mark.parametrize("solver", SCHEDULERS)
def test_dynamic_thresholding_is_taken_per_frame_as_the_original_folds_frames_into_the_batch(tmp_path, solver):
    # Every solver keeps multistep state (earlier outputs, the last sample): folded frames must each keep their own.
    sample, output = frames_of_different_ranges()
    video = base_scheduler(tmp_path, solver)
    video.set_timesteps(4)
    per_frame = [base_scheduler(tmp_path, solver) for _ in range(4)]
    for scheduler in per_frame:
        scheduler.set_timesteps(4)
    ours, reference = sample.clone(), [sample[:, :, f].clone() for f in range(4)]
    for step, t in enumerate(video.timesteps[:3]):
        varied = output * (1 + 0.5 * step)  # a different prediction each step, so the solvers' history matters
        ours = step_per_frame(video, varied, t, ours)
        reference = [s.step(varied[:, :, f], t, reference[f]).prev_sample for f, s in enumerate(per_frame)]
    assert torch.allclose(ours, torch.stack(reference, dim=2), atol=1e-6)

    whole = base_scheduler(tmp_path, solver)
    whole.set_timesteps(4)
    whole_video = sample.clone()
    for step, t in enumerate(whole.timesteps[:3]):
        whole_video = whole.step(output * (1 + 0.5 * step), t, whole_video).prev_sample  # one quantile over the whole video
    assert (whole_video - ours).abs().max() > 1e-2


CONFIGS = {
    "show-1-base": hub_config("scheduler-show-1-base.json"),  # DPM-Solver++ 2M, cosine, dynamic thresholding
    "show-1-sr2": hub_config("scheduler-show-1-sr2.json"),  # DPM-Solver++ 2M, scaled linear, no thresholding
    "IF-II-L": IF_II_SCHEDULER,  # DDPM, cosine, learned-range variance, dynamic thresholding
}


@pytest.mark.parametrize("component", CONFIGS)
def test_default_is_the_scheduler_the_checkpoint_names(component):
    config = CONFIGS[component]
    ours = scheduler_from_config(config)
    named = getattr(diffusers, config["_class_name"])
    expected = named.from_config(config, **({"final_sigmas_type": "sigma_min"} if named is not diffusers.DDPMScheduler else {}))
    assert type(ours) is named and dict(ours.config) == dict(expected.config)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("component", CONFIGS)
def test_a_solver_keeps_the_checkpoints_betas_prediction_and_thresholding(component, solver):
    config = CONFIGS[component]
    default, chosen = scheduler_from_config(config), scheduler_from_config(config, solver)
    assert type(chosen).__name__ == SOLVERS[solver][0] and chosen.config.solver_order == 2
    assert torch.equal(chosen.betas, default.betas)
    for key in ("num_train_timesteps", "prediction_type", "thresholding", "dynamic_thresholding_ratio", "sample_max_value"):
        assert chosen.config[key] == config[key], key
    # Dynamic thresholding acts on the data (x0) prediction, which both solvers integrate; and like the
    # release, the last step ends on sigma_min.
    assert chosen.config.final_sigmas_type == "sigma_min"
    if solver == "dpm":
        assert chosen.config.algorithm_type == "dpmsolver++"
    else:
        assert chosen.predict_x0


def test_the_last_dpm_solver_step_ends_on_sigma_min_as_with_the_released_diffusers(tmp_path):
    scheduler = base_scheduler(tmp_path)
    assert scheduler.config.final_sigmas_type == "sigma_min"
    sample, output = frames_of_different_ranges()
    results = {}
    for final in ("sigma_min", "zero"):
        scheduler = base_scheduler(tmp_path)
        scheduler.register_to_config(final_sigmas_type=final)
        scheduler.set_timesteps(3)
        x = sample.clone()
        for t in scheduler.timesteps:
            x = step_per_frame(scheduler, output, t, x)
        results[final] = x
    assert (results["sigma_min"] - results["zero"]).abs().max() > 1e-3
    # A config that says what it wants keeps it.
    config = {**hub_config("scheduler-show-1-base.json"), "final_sigmas_type": "zero"}
    write_json(tmp_path / "explicit" / "scheduler" / "scheduler_config.json", config)
    assert load_scheduler(tmp_path / "explicit").config.final_sigmas_type == "zero"


class ZeroNoise(torch.nn.Module):
    """A stand-in UNet predicting zero noise (and zero variance values): the sample then depends only on
    the noise drawn for it, which is what these tests look at."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, sample, timestep, encoder_hidden_states=None, class_labels=None):
        shape = (sample.shape[0], self.channels, *sample.shape[2:])
        return types.SimpleNamespace(sample=torch.zeros(shape))


def test_every_sr1_window_draws_from_the_seed_as_the_original_reseeds(tmp_path):
    from diffusers import DDPMScheduler

    from show1_cli.stages.sr1 import super_resolve
    from show1_cli.training.scaffold import IMAGE_NOISING_SCHEDULER

    video = torch.zeros(29, 3, 8, 8)
    text = torch.zeros(1, 4, 8)
    out = super_resolve(ZeroNoise(6), base_scheduler(tmp_path), DDPMScheduler.from_config(IMAGE_NOISING_SCHEDULER), video,
                        height=16, width=16, prompt_embeds=text, negative_embeds=text, steps=2, guidance_scale=1.0,
                        noise_level=250, window=8, stride=7, generator=torch.Generator().manual_seed(3))
    # Windows 0-7, 7-14, 14-21, 21-28 start from the same noise, so with zero predicted noise they agree.
    assert torch.equal(out[0:7], out[7:14]) and torch.equal(out[7:14], out[14:21])
    assert not torch.equal(out[0], out[1])


def test_sr2_draws_its_latent_noise_frame_major(tmp_path, tiny_weights_dir, monkeypatch):
    from diffusers import AutoencoderKL
    from diffusers.utils.torch_utils import randn_tensor

    from show1_cli.stages import sr2

    vae = AutoencoderKL.from_pretrained(tiny_weights_dir / "show-1-sr2", subfolder="vae", use_safetensors=False)
    scheduler = load_scheduler(tiny_weights_dir / "show-1-sr2")
    seen = []
    add_noise = scheduler.add_noise
    monkeypatch.setattr(scheduler, "add_noise", lambda latents, noise, t: seen.append(noise) or add_noise(latents, noise, t))
    video = torch.rand(3, 3, 64, 64) * 2 - 1
    text = torch.zeros(1, 77, 32)
    sr2.translate(ZeroNoise(4), vae, scheduler, video, height=64, width=64, prompt_embeds=text, negative_embeds=text, steps=4,
                  guidance_scale=1.0, strength=0.5, generator=torch.Generator().manual_seed(5))
    # The official way: encode (drawing the posterior sample), then the noise in the encoded frames' layout.
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        latents = sr2.encode_frames(vae, video, generator)
    expected = randn_tensor(latents.shape, generator=generator)
    assert seen[0].shape == (3, 4, 8, 8)
    assert torch.equal(seen[0], expected)


@pytest.mark.parametrize("solver", SCHEDULERS)
def test_only_ddpm_gets_the_variance_channels_every_solver_gives_a_finite_image(tiny_weights_dir, solver):
    from show1_cli.stages.first_frame import upscale_image
    from show1_cli.training.scaffold import IMAGE_NOISING_SCHEDULER

    root = tiny_weights_dir / "IF-II-L-v1.0"
    unet = diffusers.UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    assert unet.config.out_channels == 6  # epsilon and IF's learned-range variance values
    scheduler = load_scheduler(root, solver=solver)
    channels = []
    step = scheduler.step
    scheduler.step = lambda output, *args, **kwargs: channels.append(output.shape[1]) or step(output, *args, **kwargs)
    text = torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(0))
    image = upscale_image(unet, scheduler, scheduler_from_config(IMAGE_NOISING_SCHEDULER), torch.rand(3, 8, 8) * 2 - 1,
                          height=32, width=32, prompt_embeds=text, negative_embeds=torch.zeros_like(text), steps=3,
                          guidance_scale=4.0, noise_level=150, generator=torch.Generator().manual_seed(1))
    # DDPM draws its variance from them; the multistep solvers take epsilon alone (UniPC keeps the config's
    # variance_type "learned_range" without reading it, so the 6 channels would otherwise reach its epsilon).
    assert channels == [6 if solver == "default" else 3] * 3
    assert image.shape == (3, 32, 32) and torch.isfinite(image).all() and image.std() > 0
