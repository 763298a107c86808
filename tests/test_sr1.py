"""sr1 (pixel super-resolution) and its first frame: window bookkeeping and the sampling math, on tiny models."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from show1_cli.errors import InputError, WeightsError
from show1_cli.models import UNet3DConditionModel
from show1_cli.presets import load_preset
from show1_cli.runtime import ModelStore, resolve_runtime
from show1_cli.stages import StageContext, first_frame, sr1
from show1_cli.weights import WeightSource
from tests.tiny_checkpoints import CONFIGS, IMAGE_NOISING_SCHEDULER, SR1, T5_DIM, tiny_unet_config


@pytest.fixture(scope="module")
def tiny_sr1():
    torch.manual_seed(0)
    unet = UNet3DConditionModel.from_config(tiny_unet_config(SR1)).eval()
    scheduler = DPMSolverMultistepScheduler.from_config(json.loads((CONFIGS / "scheduler-show-1-base.json").read_text()))
    return unet, scheduler, DDPMScheduler.from_config(IMAGE_NOISING_SCHEDULER)


def embeddings(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 77, T5_DIM, generator=generator), torch.randn(1, 77, T5_DIM, generator=generator)


def test_paper_windows_for_29_frames():
    assert sr1.windows(29, 8, 7) == [(0, 8), (7, 15), (14, 22), (21, 29)]


@pytest.mark.parametrize("frames", [1, 2, 7, 8, 9, 15, 16, 29, 30, 36])
@pytest.mark.parametrize("window,stride", [(8, 7), (8, 4), (4, 3), (2, 1)])
def test_windows_cover_every_frame_in_order_with_overlap(frames, window, stride):
    spans = sr1.windows(frames, window, stride)
    assert spans[0][0] == 0 and spans[-1][1] == frames
    for start, end in spans:
        assert 0 <= start < end <= frames and end - start <= window
    for (start, end), (next_start, next_end) in zip(spans, spans[1:], strict=False):
        assert next_start == start + stride and end == start + window  # only the last window may be shorter
        assert start < next_start < end < next_end  # shares at least its first frame, adds new ones


def graded_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """A clip whose frames are told apart by their level: frame i is flat at levels[i]."""
    levels = torch.linspace(-0.9, 0.9, frames)
    return levels.view(frames, 1, 1, 1).expand(frames, 3, height, width).clone()


def nearest_frame(frame: torch.Tensor, frames: int) -> int:
    return int((torch.linspace(-0.9, 0.9, frames) - frame.mean()).abs().argmin())


@pytest.mark.parametrize("with_first_frame", [False, True], ids=["no-first-frame", "first-frame"])
def test_windows_are_chained_and_joined_without_dropped_or_repeated_frames(tiny_sr1, monkeypatch, with_first_frame):
    unet, scheduler, noising = tiny_sr1
    frames, window, stride = 10, 4, 3
    clip = graded_clip(frames, 4, 8)
    calls = []
    real = sr1.denoise_conditioned

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append({"condition": args[3].clone(), "anchor": kwargs["anchor"], "result": result.clone()})
        return result

    monkeypatch.setattr(sr1, "denoise_conditioned", recording)
    anchor = torch.full((3, 16, 32), 0.5) if with_first_frame else None
    prompt, negative = embeddings()
    out = sr1.super_resolve(
        unet, scheduler, noising, clip, height=16, width=32, prompt_embeds=prompt, negative_embeds=negative,
        steps=2, guidance_scale=3.0, noise_level=0, window=window, stride=stride,
        generator=torch.Generator().manual_seed(1), first_frame=anchor,
    )
    assert out.shape == (frames, 3, 16, 32)
    spans = sr1.windows(frames, window, stride)
    assert len(calls) == len(spans) == 3

    for (start, end), call in zip(spans, calls, strict=True):
        condition = call["condition"][0].transpose(0, 1)  # (F, 3, H, W), before noising
        assert [nearest_frame(frame, frames) for frame in condition] == list(range(start, end))
    # The first window is anchored on the first-frame image (if any), each later one on the frame the
    # previous window produced at its start.
    assert (calls[0]["anchor"] is None) == (not with_first_frame)
    if with_first_frame:
        assert torch.equal(calls[0]["anchor"], anchor)
    for (start, _), (previous_start, _), call, previous in zip(spans[1:], spans, calls[1:], calls, strict=False):
        assert torch.equal(call["anchor"], previous["result"][0, :, start - previous_start])
    # Every output frame is the last covering window's frame: none dropped, none taken twice.
    expected = torch.empty_like(out)
    for (start, end), call in zip(spans, calls, strict=True):
        expected[start:end] = call["result"][0].transpose(0, 1).clamp(-1, 1)
    assert torch.equal(out, expected)
    assert all(not torch.equal(out[i], out[i + 1]) for i in range(frames - 1))


def test_later_windows_are_anchored_on_the_frame_as_produced_not_clamped(monkeypatch):
    """The original hands the previous window's raw output on as the next anchor; the last sampling step can
    end a little outside [-1, 1] (0.03 on the test checkpoints), and a clamped anchor changes the whole window."""
    anchors = []

    def overshooting(unet, scheduler, noising, condition, *, anchor=None, **kwargs):
        anchors.append(anchor)
        return torch.full_like(condition, 1.25)

    monkeypatch.setattr(sr1, "denoise_conditioned", overshooting)
    prompt, negative = embeddings()
    out = sr1.super_resolve(
        None, None, None, graded_clip(10, 4, 8), height=16, width=32, prompt_embeds=prompt, negative_embeds=negative,
        steps=1, guidance_scale=1.0, noise_level=0, window=4, stride=3, generator=torch.Generator().manual_seed(0),
    )
    assert anchors[0] is None
    assert all(torch.equal(anchor, torch.full((3, 16, 32), 1.25)) for anchor in anchors[1:])
    assert torch.equal(out, torch.ones(10, 3, 16, 32))  # the video itself is clamped


def test_anchor_replaces_the_first_condition_frame_unnoised(tiny_sr1, monkeypatch):
    unet, scheduler, noising = tiny_sr1
    seen = []
    real = unet.forward

    def recording(sample, *args, **kwargs):
        seen.append(sample.clone())
        return real(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", recording)
    condition = torch.zeros(1, 3, 3, 16, 32)
    anchor = torch.full((3, 16, 32), 0.25)
    prompt, negative = embeddings()
    sr1.denoise_conditioned(
        unet, scheduler, noising, condition, prompt_embeds=prompt, negative_embeds=negative, steps=1,
        guidance_scale=2.0, noise_level=250, generator=torch.Generator().manual_seed(0), anchor=anchor,
    )
    (model_input,) = seen
    assert model_input.shape == (2, 6, 3, 16, 32)  # guidance batched: [negative, prompt]
    assert torch.equal(model_input[:, 3:, 0], anchor.expand(2, 3, 16, 32))  # un-noised
    assert model_input[:, 3:, 1:].std() > 0.1  # the other frames are noised to level 250
    assert torch.equal(model_input[0, 3:], model_input[1, 3:])


def test_same_seed_same_video_and_progress_counts_every_step(tiny_sr1):
    unet, scheduler, noising = tiny_sr1
    clip = graded_clip(5, 4, 8)
    prompt, negative = embeddings()
    progress = []
    counter = sr1.StepCounter(lambda done, total: progress.append((done, total)), 2 * 2)
    kwargs = dict(height=16, width=32, prompt_embeds=prompt, negative_embeds=negative, steps=2, guidance_scale=1.0,
                  noise_level=100, window=4, stride=3)
    first = sr1.super_resolve(unet, scheduler, noising, clip, generator=torch.Generator().manual_seed(3), tick=counter, **kwargs)
    second = sr1.super_resolve(unet, scheduler, noising, clip, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(first, second)
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert first.min() >= -1 and first.max() <= 1


def test_sizes_the_model_cannot_take_are_refused():
    sr1.check_sizes(40, 64, 160, 256)
    with pytest.raises(InputError, match="multiple of 16"):
        sr1.check_sizes(40, 64, 168, 256)
    with pytest.raises(InputError, match="larger than the sr1 target"):
        sr1.check_sizes(320, 576, 160, 256)
    with pytest.raises(InputError, match="multiple of 64"):
        sr1.check_sizes(160, 256, 320, 560, stage="sr2")


def context(weights_dir, choice: str | None) -> StageContext:
    runtime = resolve_runtime("cpu", "fp32", "none")
    options = {} if choice is None else {"first_frame": choice}
    return StageContext("a cat", load_preset("default"), 0, runtime, ModelStore(runtime), weights=WeightSource(weights_dir),
                        options=options)


def test_first_frame_choice_without_the_gated_model(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="show1"):
        auto = context(tmp_path, None)
        assert first_frame.choose(auto) == "none" and auto.options["first_frame_used"] == "none"
    assert "IF-II-L-v1.0" in caplog.text and "without the first-frame anchor" in caplog.text
    assert first_frame.choose(context(tmp_path, "none")) == "none"
    with pytest.raises(WeightsError) as error:
        first_frame.choose(context(tmp_path, "if"))
    assert "gated" in error.value.fix and "licence" in error.value.fix
    with pytest.raises(InputError, match="--first-frame"):
        first_frame.choose(context(tmp_path, "sometimes"))
