"""The command-line frame: help, version, error reporting and exit codes, through Typer and a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from show1_cli import __version__
from show1_cli.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]

COMMANDS = [
    ["generate"],
    ["interpolate"],
    ["upscale"],
    ["finetune-motion"],
    ["info"],
    ["presets", "list"],
    ["presets", "show"],
    ["weights", "list"],
    ["weights", "pull"],
    ["weights", "verify"],
    ["weights", "path"],
    ["weights", "lock"],
    ["train"],
    ["toyworld", "data"],
    ["toyworld", "analyse"],
]


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("generate", "interpolate", "upscale", "finetune-motion", "weights", "presets"):
        assert name in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "Example" in result.output  # every command shows how it is used


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"show1 {__version__}"


def test_usage_errors_exit_2():
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
    assert runner.invoke(app, ["presets", "show"]).exit_code == 2  # missing argument


def test_bad_input_is_one_line_with_a_fix_and_debug_shows_the_traceback():
    result = runner.invoke(app, ["presets", "show", "nope"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown preset 'nope'") and "default" in lines[0]
    debug = runner.invoke(app, ["presets", "show", "nope", "--debug"])
    assert debug.exit_code != 0 and debug.exception is not None  # re-raised for the traceback


def test_the_installed_entry_point_runs_in_a_real_process(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    version = subprocess.run([sys.executable, "-m", "show1_cli", "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"show1 {__version__}"
    bad = subprocess.run(
        [sys.executable, "-m", "show1_cli", "presets", "show", "default", "--set", "sr1.stride=0"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error:") and "sr1.stride" in bad.stderr and "Traceback" not in bad.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "show1_cli", "presets", "show", "preview"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert shown.returncode == 0 and "interpolate" in shown.stdout and json.dumps(8.0) in shown.stdout


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--seed", "-3"], "--seed -3 is out of range"),
        (["--seed", "99999999999999999999"], "out of range"),
        (["--set", "fps=0.0001"], "fps must be between"),
        (["--set", "fps=1000000"], "fps must be between"),
        (["--set", "keyframes.guidance_scale=.nan"], "must be a finite number"),
        (["--stages", "sr2"], "needs an input video"),
        (["--stages", "interpolate"], "needs an input video"),
    ],
)
def test_hostile_generate_input_is_one_clear_line_before_any_model_loads(extra, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOW1_WEIGHTS_DIR", str(tmp_path / "no-weights"))  # a model load would fail differently
    result = runner.invoke(app, ["generate", "a cat", "-o", str(tmp_path / "out.mp4"), *extra])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "internal error" not in result.output and not (tmp_path / "out.mp4").exists()
