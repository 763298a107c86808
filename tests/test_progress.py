"""Progress off a terminal (plain lines for logs), stage times and step counts, and each stage's own peak memory."""

from __future__ import annotations

import re

import numpy as np
import torch

from show1_cli.progress import ChainProgress, format_seconds, plural
from show1_cli.runtime import resolve_runtime
from show1_cli.video import write_video
from tests.conftest import run_cli

TINY_KEYFRAMES = ["--stages", "keyframes", "--set", "keyframes.frames=2", "--set", "keyframes.height=16",
                  "--set", "keyframes.width=32"]


def test_a_run_off_a_terminal_logs_one_plain_line_per_stage_start_and_end(tiny_weights, tmp_path):
    result = run_cli("generate", "a red ball", "-o", tmp_path / "ball.mp4", "--seed", 1, *TINY_KEYFRAMES, "--set", "keyframes.steps=1")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "stage 1/1 keyframes: started" in lines
    done = [line for line in lines if line.startswith("stage 1/1 keyframes: done in ")]
    assert len(done) == 1 and re.search(r"\(1 step\), peak memory \d", done[0])
    assert not any("\x1b[" in line for line in lines)  # no terminal control codes in a log
    assert any(line.startswith("wrote ") and "ball.mp4" in line for line in lines)


def test_sr2_counts_the_steps_its_strength_runs(tiny_weights, tmp_path):
    clip = tmp_path / "clip.mp4"
    write_video(clip, torch.zeros(2, 3, 32, 32), 8.0, {"prompt": "a grey wall"})
    result = run_cli("upscale", clip, "-o", tmp_path / "big.mp4", "--stage", "sr2", "--set", "sr2.steps=2",  # x 0.8: one step
                     "--set", "sr2.height=64", "--set", "sr2.width=64")
    assert result.exit_code == 0, result.output
    assert re.search(r"^stage 1/1 sr2: done in [\d.]+ s \(1 step\)", result.stderr, re.MULTILINE), result.stderr


def test_quiet_and_json_runs_log_no_progress(tiny_weights, tmp_path):
    for flag in ("--quiet", "--json"):
        result = run_cli("generate", "a red ball", "-o", tmp_path / f"ball{flag}.mp4", flag, *TINY_KEYFRAMES, "--set", "keyframes.steps=1")
        assert result.exit_code == 0, result.output
        assert "stage 1/1" not in result.stderr


def test_step_lines_come_every_interval_with_rate_and_time_left(capsys):
    progress = ChainProgress(resolve_runtime("cpu"), total_stages=2, log_every=0.0)
    with progress, progress.stage("sr2") as on_step:
        for completed in (9, 10):  # started part-way, as sr2 does at strength 0.8 of 10 steps
            on_step(completed, 10)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "stage 1/2 sr2: started"
    assert re.fullmatch(r"stage 1/2 sr2: step 9/10, [\d.]+ s/step, [\d.]+ s left", lines[1])
    assert len(lines) == 3 and re.match(r"stage 1/2 sr2: done in [\d.]+ s \(2 steps\)", lines[2])
    assert [report.name for report in progress.reports] == ["sr2"]


def test_counts_and_durations_read_naturally():
    assert plural(1, "step") == "1 step" and plural(2, "step") == "2 steps" and plural(0, "step") == "0 steps"
    assert format_seconds(42.14) == "42.1 s" and format_seconds(185) == "3:05" and format_seconds(3725) == "1:02:05"


def test_cpu_peak_memory_is_the_stage_s_own_not_the_process_s_lifetime_maximum():
    runtime = resolve_runtime("cpu")
    big = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
    with_big = runtime.peak_memory_bytes()
    del big
    runtime.reset_peak_memory()
    small = np.ones(16 * 2**20 // 8)
    peak = runtime.peak_memory_bytes()
    del small
    assert peak < with_big - 300 * 2**20, (peak, with_big)  # the 400 MiB freed before the reset do not count
