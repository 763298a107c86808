"""sr2 (latent expert translation): sizes, steps from the strength, guidance, and VAE slicing, on tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler

from show1_cli.errors import InputError
from show1_cli.models import UNet3DConditionModel
from show1_cli.stages import sr2
from show1_cli.stages.sr1 import StepCounter
from tests.tiny_checkpoints import CLIP_DIM, CONFIGS, SR2, tiny_unet_config, write_vae


def scheduler() -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler.from_config(json.loads((CONFIGS / "scheduler-show-1-sr2.json").read_text()))


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    write_vae(folder)
    return AutoencoderKL.from_pretrained(folder, use_safetensors=False).eval()


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet3DConditionModel.from_config(tiny_unet_config(SR2)).eval()


def test_decoding_in_slices_equals_decoding_at_once(vae):
    latents = torch.randn(4, 4, 4, 8, generator=torch.Generator().manual_seed(0))
    sr2.configure_vae(vae, 32, 64, slicing=True)
    with torch.no_grad():
        sliced = sr2.decode_latents(vae, latents)
    sr2.configure_vae(vae, 32, 64, slicing=False)
    with torch.no_grad():
        at_once = sr2.decode_latents(vae, latents)
    assert sliced.shape == (4, 3, 32, 64)
    torch.testing.assert_close(sliced, at_once, rtol=0, atol=1e-5)


def test_tiling_only_for_large_frames(vae):
    sr2.configure_vae(vae, 320, 576)
    assert vae.use_slicing and not vae.use_tiling
    sr2.configure_vae(vae, 1088, 1920)
    assert vae.use_slicing and vae.use_tiling
    sr2.configure_vae(vae, 320, 576, slicing=False)
    assert not vae.use_slicing and not vae.use_tiling


@pytest.mark.parametrize("steps,strength,expected", [(50, 0.8, 40), (2, 0.8, 1), (10, 0.9, 9), (4, 0.5, 2)])
def test_strength_keeps_the_low_noise_end_of_the_schedule(steps, strength, expected):
    sched = scheduler()
    timesteps = sr2.denoising_timesteps(sched, steps, strength, "cpu")
    assert len(timesteps) == expected
    assert torch.equal(timesteps, sched.timesteps[steps - expected :])
    assert timesteps[0] <= strength * 1000  # an expert for timesteps below 900 never starts above its range


def test_too_few_steps_for_the_strength_is_a_clear_error():
    with pytest.raises(InputError, match="no denoising step") as error:
        sr2.denoising_timesteps(scheduler(), 1, 0.8, "cpu")
    assert "sr2.steps" in error.value.fix


def test_translate_gives_the_target_size_and_every_frame(unet, vae):
    video = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    text = torch.randn(2, 77, CLIP_DIM, generator=torch.Generator().manual_seed(1))
    progress = []
    kwargs = dict(height=64, width=64, prompt_embeds=text[:1], negative_embeds=text[1:], steps=4, guidance_scale=15.0, strength=0.5)
    out = sr2.translate(
        unet, vae, scheduler(), video, generator=torch.Generator().manual_seed(2),
        tick=StepCounter(lambda done, total: progress.append((done, total)), 2), **kwargs,
    )
    assert out.shape == (3, 3, 64, 64)
    assert out.min() >= -1 and out.max() <= 1
    assert progress == [(1, 2), (2, 2)]
    again = sr2.translate(unet, vae, scheduler(), video, generator=torch.Generator().manual_seed(2), **kwargs)
    assert torch.equal(out, again)  # the seed fixes the VAE sample and the noise


def test_guidance_is_one_batched_unet_call_per_step(unet, vae, monkeypatch):
    batches = []
    real = unet.forward

    def recording(sample, *args, **kwargs):
        batches.append((sample.shape, kwargs["encoder_hidden_states"].shape))
        return real(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", recording)
    video = torch.zeros(2, 3, 64, 64)
    text = torch.randn(2, 77, CLIP_DIM)
    sr2.translate(unet, vae, scheduler(), video, height=64, width=64, prompt_embeds=text[:1], negative_embeds=text[1:],
                  steps=2, guidance_scale=7.0, strength=0.8, generator=torch.Generator().manual_seed(0))
    assert batches == [(torch.Size([2, 4, 2, 8, 8]), torch.Size([2, 77, CLIP_DIM]))]
