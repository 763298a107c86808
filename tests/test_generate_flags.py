"""`show1 generate`'s direct flags (--steps, --frames, --width, ...): mapped onto the preset, checked like it, recorded alike."""

from __future__ import annotations

import json

import pytest

from show1_cli.video import read_video
from tests.conftest import run_cli

KEYFRAMES = ["--stages", "keyframes", "--steps", "1"]


def settings_of(path) -> dict:
    return read_video(path).metadata["preset_settings"]


def test_direct_flags_set_the_video_and_are_recorded_in_its_metadata(tiny_weights, tmp_path):
    out = tmp_path / "out.mp4"
    result = run_cli("generate", "a red ball", "-o", out, *KEYFRAMES, "--frames", 3, "--width", 32, "--height", 16, "--fps", 4,
                     "--negative-prompt", "yes: blurry", "--guidance-scale", "keyframes=5", "--seed", 3)
    assert result.exit_code == 0, result.output
    video = read_video(out)
    assert video.frames.shape == (3, 3, 16, 32) and video.fps == pytest.approx(4.0)
    keyframes = settings_of(out)["keyframes"]
    assert keyframes["steps"] == 1 and keyframes["guidance_scale"] == 5.0 and keyframes["negative_prompt"] == "yes: blurry"
    assert video.metadata["negative_prompt"] == {"keyframes": "yes: blurry"}


def test_steps_without_a_stage_set_every_pixel_stage_and_sizes_follow_the_last_stage(tiny_weights, tmp_path):
    out = tmp_path / "clip.mp4"
    result = run_cli("generate", "a red ball", "-o", out, "--stages", "keyframes,interpolate", "--steps", 1, "--steps", "sr2=7",
                     "--frames", 5, "--width", 32, "--set", "keyframes.width=64", "--set", "keyframes.height=48")
    assert result.exit_code == 0, result.output
    settings = settings_of(out)
    assert [settings[stage]["steps"] for stage in ("keyframes", "interpolate", "sr1", "sr2")] == [1, 1, 1, 7]
    assert read_video(out).frames.shape == (5, 3, 24, 32)  # 64x48 scaled by 1/2
    assert (settings["sr1"]["width"], settings["sr1"]["height"]) == (128, 80)  # every stage follows: 256x160 halved


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--frames", 30], "use --frames 29 or 33"),
        (["--width", 1000], "--width 1000 is not a multiple of 64"),
        (["--steps", "sr3=4"], "'sr3' is not a stage with steps"),
        (["--steps", "many"], "keyframes.steps must be an integer"),
        (["--scheduler", "euler"], "--scheduler euler: 'euler' is not a scheduler (use default"),
        (["--scheduler", "sr3=dpm"], "'sr3' is not a stage with scheduler"),
        (["--num-videos", 2, "--resume", "somewhere"], "--num-videos is for one PROMPT"),
    ],
)
def test_bad_direct_flags_are_one_line_before_any_model_loads(flags, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOW1_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    result = run_cli("generate", "a cat", "-o", tmp_path / "cat.mp4", *flags)
    assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
    assert not (tmp_path / "cat.mp4").exists()


def test_num_videos_writes_one_video_per_seed_with_the_models_loaded_once(tiny_weights, tmp_path):
    result = run_cli("generate", "a red ball", "-o", tmp_path / "ball.mp4", *KEYFRAMES, "--frames", 2, "--width", 32, "--height", 16,
                     "--seed", 10, "--num-videos", 2, "--json")
    assert result.exit_code == 0, result.output
    summaries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [summary["seed"] for summary in summaries] == [10, 11]
    assert "text" in summaries[0]["stages"] and "text" not in summaries[1]["stages"]  # one text encoding for both
    first, second = read_video(tmp_path / "ball-1.mp4"), read_video(tmp_path / "ball-2.mp4")
    assert (first.metadata["seed"], second.metadata["seed"]) == (10, 11)
    assert not (tmp_path / "ball.mp4").exists() and not first.frames.equal(second.frames)
    alone = tmp_path / "alone.mp4"
    assert run_cli("generate", "a red ball", "-o", alone, *KEYFRAMES, "--frames", 2, "--width", 32, "--height", 16,
                   "--seed", 11).exit_code == 0
    assert read_video(alone).frames.equal(second.frames)  # each video is reproducible alone from its seed
