"""The scheduler details that make show1 compute what the official Show-1 flow computes (docs/fidelity.md)."""

from __future__ import annotations

import torch

from show1_cli.stages.sampling import load_scheduler, step_per_frame
from show1_cli.training.scaffold import hub_config, write_json


def base_scheduler(tmp_path):
    write_json(tmp_path / "scheduler" / "scheduler_config.json", hub_config("scheduler-show-1-base.json"))
    return load_scheduler(tmp_path)


def frames_of_different_ranges() -> tuple[torch.Tensor, torch.Tensor]:
    """A video whose frames' x0 predictions span very different ranges, so a per-video quantile
    and per-frame quantiles threshold differently."""
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 3, 4, 8, 8, generator=generator)
    output = torch.randn(1, 3, 4, 8, 8, generator=generator)
    scale = torch.tensor([0.1, 0.5, 1.0, 1.5]).view(1, 1, 4, 1, 1)
    return sample * scale, output * scale


def test_dynamic_thresholding_is_taken_per_frame_as_the_original_folds_frames_into_the_batch(tmp_path):
    sample, output = frames_of_different_ranges()
    video = base_scheduler(tmp_path)
    video.set_timesteps(4)
    per_frame = [base_scheduler(tmp_path) for _ in range(4)]
    for scheduler in per_frame:
        scheduler.set_timesteps(4)
    ours, reference = sample.clone(), [sample[:, :, f].clone() for f in range(4)]
    for t in video.timesteps[:3]:
        ours = step_per_frame(video, output, t, ours)
        reference = [s.step(output[:, :, f], t, reference[f]).prev_sample for f, s in enumerate(per_frame)]
    assert torch.allclose(ours, torch.stack(reference, dim=2), atol=1e-6)

    whole = base_scheduler(tmp_path)
    whole.set_timesteps(4)
    whole_video = sample.clone()
    for t in whole.timesteps[:3]:
        whole_video = whole.step(output, t, whole_video).prev_sample  # one quantile over the whole video
    assert (whole_video - ours).abs().max() > 1e-2


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
