"""`show1 upscale` and the default chain through the CLI, on the tiny test checkpoints (steps scaled down only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from show1_cli.stages import sr1
from show1_cli.video import read_video, write_video
from tests.conftest import run_cli

FAST_SR1 = ["--set", "sr1.steps=1", "--set", "first_frame.steps=1"]
# A small sr1 (16x32 -> 32x64, windows of 4) for the tests about the first frame; keyframes shrunk to match.
SMALL_SR1 = [arg for item in ("keyframes.height=16", "keyframes.width=32", "sr1.height=32", "sr1.width=64", "sr1.window=4",
                              "sr1.stride=3") for arg in ("--set", item)] + FAST_SR1


def graded_clip(path: Path, frames: int, height: int, width: int, metadata: dict[str, Any] | None = None) -> Path:
    """A clip whose frames are told apart by their flat level (frame i at levels[i]), written losslessly."""
    levels = torch.linspace(-0.9, 0.9, frames)
    write_video(path, levels.view(frames, 1, 1, 1).expand(frames, 3, height, width), 8.0, metadata or {}, lossless=True)
    return path


def nearest_frame(frame: torch.Tensor, frames: int) -> int:
    return int((torch.linspace(-0.9, 0.9, frames) - frame.mean()).abs().argmin())


@pytest.fixture
def windows_seen(monkeypatch):
    """Every sr1 window the run denoises: its condition before noising, its anchor and its result."""
    calls = []
    real = sr1.denoise_conditioned

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        if args[3].dim() == 4:  # the first-frame image, if show1_cli.stages.first_frame is imported after the patch
            return result
        anchor = kwargs["anchor"]
        calls.append({"condition": args[3].clone(), "anchor": None if anchor is None else anchor.clone(), "result": result.clone()})
        return result

    monkeypatch.setattr(sr1, "denoise_conditioned", recording)
    return calls


def metadata_of(path: Path) -> dict[str, Any]:
    return read_video(path).metadata


def test_sr1_on_29_frames_gives_29_frames_at_256x160_with_seamless_windows(tiny_weights, tmp_path, windows_seen):
    clip = graded_clip(tmp_path / "in.mp4", 29, 40, 64, {"prompt": "a cat walking on the grass", "seed": 7})
    out = tmp_path / "out.mp4"
    result = run_cli("upscale", clip, "-o", out, "--stage", "sr1", "--lossless", "--set", "sr1.guidance_scale=1", *FAST_SR1)
    assert result.exit_code == 0, result.output
    video = read_video(out)
    assert video.frames.shape == (29, 3, 160, 256)
    assert video.fps == 8.0
    assert video.metadata["prompt"] == "a cat walking on the grass" and video.metadata["seed"] == 7
    assert video.metadata["first_frame"] == "if"

    spans = sr1.windows(29, 8, 7)
    assert spans == [(0, 8), (7, 15), (14, 22), (21, 29)] and len(windows_seen) == 4
    expected = torch.empty(29, 3, 160, 256)
    for (start, end), call in zip(spans, windows_seen, strict=True):
        condition = call["condition"][0].transpose(0, 1)
        assert [nearest_frame(frame, 29) for frame in condition] == list(range(start, end))
        expected[start:end] = call["result"][0].transpose(0, 1).clamp(-1, 1)
    for (start, _), (previous_start, _), call, previous in zip(spans[1:], spans, windows_seen[1:], windows_seen, strict=False):
        assert torch.equal(call["anchor"], previous["result"][0, :, start - previous_start])  # as produced, not clamped
    # The file holds exactly the window outputs, in order (8-bit quantisation aside): none dropped or repeated.
    assert (video.frames - expected).abs().max() <= 1.5 / 127.5


@pytest.mark.parametrize("choice,anchored", [("none", False), ("if", True), ("auto", True)])
def test_first_frame_choice_is_used_and_reported(tiny_weights, tmp_path, windows_seen, choice, anchored):
    clip = graded_clip(tmp_path / "in.mp4", 5, 16, 32)
    out = tmp_path / "out.mp4"
    result = run_cli("upscale", clip, "-o", out, "--stage", "sr1", "--prompt", "a dog", "--first-frame", choice, *SMALL_SR1)
    assert result.exit_code == 0, result.output
    used = "if" if anchored else "none"
    assert metadata_of(out)["first_frame"] == used
    assert f"first frame: {'IF-II-L-v1.0' if anchored else 'none'}" in result.output
    assert (windows_seen[0]["anchor"] is not None) == anchored
    assert read_video(out).frames.shape == (5, 3, 32, 64)


@pytest.fixture
def weights_without_if(tiny_weights, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in ("show-1-base", "show-1-interpolation", "show-1-sr1", "show-1-sr2"):
        (folder / name).symlink_to(tiny_weights / name, target_is_directory=True)
    return folder


def test_without_the_gated_model(weights_without_if, tmp_path, windows_seen):
    clip = graded_clip(tmp_path / "in.mp4", 5, 16, 32)
    common = ["upscale", clip, "--stage", "sr1", "--prompt", "a dog", "--weights-dir", weights_without_if, *SMALL_SR1]

    refused = run_cli(*common, "-o", tmp_path / "if.mp4", "--first-frame", "if")
    assert refused.exit_code == 1
    assert "IF-II-L-v1.0" in refused.output and "gated" in refused.output and "licence" in refused.output
    assert not (tmp_path / "if.mp4").exists() and not windows_seen

    fallback = run_cli(*common, "-o", tmp_path / "auto.mp4")
    assert fallback.exit_code == 0, fallback.output
    assert "without the first-frame anchor" in fallback.output and "first frame: none" in fallback.output
    assert metadata_of(tmp_path / "auto.mp4")["first_frame"] == "none"
    assert windows_seen[0]["anchor"] is None


def test_sr2_gives_the_target_size_and_frame_count(tiny_weights, tmp_path):
    clip = graded_clip(tmp_path / "in.mp4", 3, 160, 256)
    out = tmp_path / "out.mp4"
    result = run_cli("upscale", clip, "-o", out, "--stage", "sr2", "--prompt", "a dog", "--set", "sr2.steps=2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 3 and summary["size"] == [576, 320] and "first_frame" not in summary
    video = read_video(out)
    assert video.frames.shape == (3, 3, 320, 576)
    assert video.metadata["stages"] == ["sr2"] and video.metadata["prompt"] == "a dog"


def test_sizes_and_prompt_are_checked_before_any_model_loads(tiny_weights, tmp_path):
    big = graded_clip(tmp_path / "big.mp4", 2, 192, 320)
    result = run_cli("upscale", big, "-o", tmp_path / "a.mp4", "--stage", "sr1", "--prompt", "x")
    assert result.exit_code == 2 and "320x192, larger than the sr1 target 256x160" in result.output
    # --stage all: sr1's output (256x160) must fit sr2's target too.
    result = run_cli("upscale", graded_clip(tmp_path / "small.mp4", 2, 40, 64), "-o", tmp_path / "b.mp4", "--prompt", "x",
                     "--set", "sr1.height=384", "--set", "sr1.width=640")
    assert result.exit_code == 2 and "larger than the sr2 target 576x320" in result.output
    result = run_cli("upscale", tmp_path / "small.mp4", "-o", tmp_path / "c.mp4", "--stage", "sr2")
    assert result.exit_code == 2 and "--prompt" in result.output
    result = run_cli("upscale", tmp_path / "small.mp4", "-o", tmp_path / "d.mp4", "--stage", "sr3")
    assert result.exit_code == 2 and "'sr3' is not one of 'sr1', 'sr2'," in result.output


def test_default_chain_makes_29_frames_at_576x320(tiny_weights, tmp_path):
    out = tmp_path / "out.mp4"
    steps = ["keyframes.steps=1", "interpolate.steps=1", "first_frame.steps=1", "sr1.steps=1", "sr2.steps=2"]
    result = run_cli("generate", "a panda taking a selfie", "-o", out, "--seed", "3", "--json",
                     *[arg for step in steps for arg in ("--set", step)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 29 and summary["size"] == [576, 320]
    assert set(summary["stages"]) >= {"keyframes", "interpolate", "sr1", "sr2"}
    video = read_video(out)
    assert video.frames.shape == (29, 3, 320, 576)
    assert video.fps == 8.0
    assert video.metadata["prompt"] == "a panda taking a selfie" and video.metadata["seed"] == 3
    assert video.metadata["stages"] == ["keyframes", "interpolate", "sr1", "sr2"] and video.metadata["first_frame"] == "if"
