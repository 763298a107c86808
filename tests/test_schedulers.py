"""--scheduler and the presets' `scheduler:` through the real CLI on the tiny checkpoints: every stage, the
IF-II-L first frame included, with every solver; the record; and `default` computing what show1 computed before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from show1_cli.choices import SCHEDULERS
from show1_cli.presets import SECTIONS
from show1_cli.video import read_video
from tests.conftest import run_cli

PROMPT = "a red ball bouncing"
SIZES = ["keyframes.frames=2", "keyframes.height=16", "keyframes.width=32", "sr1.height=32", "sr1.width=64", "sr1.window=4",
         "sr1.stride=3", "sr2.height=64", "sr2.width=128", "sr2.strength=0.5"]
STEPS = ["keyframes.steps=3", "interpolate.steps=3", "first_frame.steps=3", "sr1.steps=3", "sr2.steps=4"]
SMALL = [arg for item in (*SIZES, *STEPS) for arg in ("--set", item)]
SHAPES = {"keyframes": (2, 3, 16, 32), "interpolate": (5, 3, 16, 32), "sr1": (5, 3, 32, 64), "sr2": (5, 3, 64, 128)}
NO_FLAG = "no --scheduler"


@pytest.fixture(scope="module")
def runs(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The whole chain with the IF-II-L first frame at seed 3, without --scheduler and with each choice; each run's
    video is NAME.mp4 and its stages' exact outputs are in the folder NAME/."""
    folder = tmp_path_factory.mktemp("schedulers")
    made = {}
    for name in (NO_FLAG, *SCHEDULERS):
        output = folder / f"{name.replace(' ', '_')}.mp4"
        flag = [] if name == NO_FLAG else ["--scheduler", name]
        result = run_cli("generate", PROMPT, "-o", output, "--seed", 3, "--first-frame", "if", "--lossless",
                         "--save-intermediates", output.with_suffix(""), *SMALL, *flag)
        assert result.exit_code == 0, result.output
        made[name] = output
    return made


def stage_output(run: Path, stage: str) -> torch.Tensor:
    return load_file(run.with_suffix("") / f"{stage}.safetensors")["frames"]


@pytest.mark.parametrize("solver", SCHEDULERS)
def test_every_stage_runs_with_every_solver_to_the_right_shape_and_finite_values(runs, solver):
    record = json.loads(runs[solver].with_suffix(".json").read_text(encoding="utf-8"))
    assert record["first_frame"] == "if"  # the IF-II-L first frame (DDPM with learned variance by default) ran too
    for stage, shape in SHAPES.items():
        frames = stage_output(runs[solver], stage)
        assert frames.shape == shape and torch.isfinite(frames).all() and frames.std() > 0.01, stage


def test_default_computes_what_show1_computed_before_and_dpm_changes_only_the_ddpm_first_frame(runs):
    def same(one: str, other: str, stage: str) -> bool:
        return torch.equal(stage_output(runs[one], stage), stage_output(runs[other], stage))

    assert all(same(NO_FLAG, "default", stage) for stage in SHAPES)
    # keyframes, interpolation and sr1 checkpoints already name DPM-Solver++ 2M; IF-II-L names DDPM, so the
    # first frame, and through its anchor sr1 and sr2, change.
    assert same("dpm", "default", "keyframes") and same("dpm", "default", "interpolate")
    assert not same("dpm", "default", "sr1") and not same("dpm", "default", "sr2")
    assert not any(same("unipc", "default", stage) for stage in SHAPES)


def test_the_record_holds_each_stages_scheduler_and_remakes_the_same_video(runs, tmp_path):
    record = json.loads(runs["unipc"].with_suffix(".json").read_text(encoding="utf-8"))
    assert record["scheduler"] == {"keyframes": "unipc", "interpolate": "unipc", "sr1": "unipc", "sr2": "unipc", "first_frame": "unipc"}
    assert {section: record["preset_settings"][section]["scheduler"] for section in SECTIONS} == dict.fromkeys(SECTIONS, "unipc")

    again = tmp_path / "again.mp4"
    result = run_cli("generate", "--from", runs["unipc"], "-o", again)
    assert result.exit_code == 0, result.output
    assert json.loads(again.with_suffix(".json").read_text(encoding="utf-8"))["scheduler"] == record["scheduler"]
    assert torch.equal(read_video(again).frames, read_video(runs["unipc"]).frames)  # same seed, same video
    assert not torch.equal(read_video(again).frames, read_video(runs["default"]).frames)


def test_interpolate_and_upscale_take_the_scheduler_of_every_stage_or_of_one(runs, tmp_path):
    saved = runs["default"].with_suffix("")
    smooth = tmp_path / "smooth.mp4"
    result = run_cli("interpolate", saved / "keyframes.mkv", "-o", smooth, "--scheduler", "unipc", *SMALL)
    assert result.exit_code == 0, result.output
    assert read_video(smooth).metadata["scheduler"] == {"interpolate": "unipc"}

    big = tmp_path / "big.mp4"
    result = run_cli("upscale", saved / "interpolate.mkv", "-o", big, "--stage", "sr1", "--first-frame", "if",
                     "--scheduler", "dpm", "--scheduler", "sr1=unipc", *SMALL)
    assert result.exit_code == 0, result.output
    video = read_video(big)
    assert video.metadata["scheduler"] == {"sr1": "unipc", "first_frame": "dpm"} and video.frames.shape == SHAPES["sr1"]


def test_a_bad_scheduler_in_a_preset_is_one_line_with_every_problem_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOW1_WEIGHTS_DIR", str(tmp_path / "no-weights"))  # nothing may load
    preset = tmp_path / "solvers.yaml"
    preset.write_text("base: default\nsr1:\n  scheduler: dpm++\nsr2:\n  scheduler: unipc\n  guidance_scale: -1\n")
    result = run_cli("generate", PROMPT, "-o", tmp_path / "out.mp4", "-p", preset)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    line = " ".join(result.output.split())
    assert "2 problems" in line and "sr1.scheduler must be one of default, dpm, unipc, got 'dpm++'" in line
    assert "sr2.guidance_scale must not be negative" in line and "use default (the checkpoint's own)" in line
    assert not (tmp_path / "out.mp4").exists()
