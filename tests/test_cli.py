"""The command-line frame: help, version, error reporting and exit codes, through Typer and a real process."""

from __future__ import annotations

import json
import os
import re
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


# The libraries that take seconds to import; only building a model may load them.
HEAVY_MODULES = ("torch", "diffusers", "transformers", "accelerate")
# Run show1 in a fresh interpreter and report, on stderr's last line, its exit code and the heavy modules it loaded.
_CHILD = """
import json, sys
from show1_cli.cli import main
args, watched = map(json.loads, sys.argv[1:])
sys.argv = ["show1", *args]
try:
    main()
    code = 0
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "loaded": [name for name in watched if name in sys.modules]}), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--help"], 0),
        (["--version"], 0),
        (["presets", "list"], 0),
        (["generate", "--help"], 0),
        (["generate", "a cat"], 2),  # missing -o
        (["generate", "a cat", "-o", "cat.avi"], 2),  # unsupported format
        (["generate", "a cat", "-o", "cat.mp4", "--preset", "nope"], 2),
        (["generate", "a cat", "-o", "cat.mp4", "--set", "sr1.steps=0"], 2),
        (["generate", "a cat", "-o", "cat.mp4", "--offload", "all"], 2),
        (["upscale", "missing.mp4", "-o", "big.mp4"], 2),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else f"exit {value}",
)
def test_answers_before_any_model_do_not_import_the_model_libraries(args, code, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args), json.dumps(HEAVY_MODULES)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": code, "loaded": []}, done.stderr


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["presets", "list"], ["info", "--help"]], ids=" ".join)
def test_answers_that_touch_no_video_do_not_import_the_video_libraries(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args), json.dumps(["av", "numpy", *HEAVY_MODULES])],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"code": 0, "loaded": []}, done.stderr


def test_dry_run_prints_the_memory_plan_without_loading_the_model_libraries(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "NO_COLOR": "1"}
    args = ["generate", "a cat", "-o", "cat.mp4", "--device", "cpu", "--max-memory", "8GB", "--dry-run"]
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args), json.dumps(["diffusers", "transformers", "accelerate",
                          "show1_cli.models"])], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"code": 0, "loaded": []}, done.stderr
    assert done.stdout.startswith("memory plan: on the CPU") and not (tmp_path / "cat.mp4").exists()
    bad = runner.invoke(app, ["generate", "a cat", "-o", str(tmp_path / "cat.mp4"), "--max-memory", "lots", "--dry-run"])
    assert bad.exit_code == 2 and "8GB" in bad.output


# What --help shows as each option's value: choices for the fixed sets, a name for the rest, nothing for flags.
HELP_VALUES = {
    ("generate",): {
        "--output": "FILE", "--preset": "NAME|FILE", "--seed": "N", "--set": "SECTION.KEY=VALUE",
        "--device": "[auto|cuda|cuda:N|cpu]", "--dtype": "[auto|fp16|bf16|fp32]", "--offload": "[auto|none|model|sequential]",
        "--first-frame": "[auto|if|none]", "--motion-init": "[noise|inversion]", "--weights-dir": "DIR",
        "--overwrite": "", "--lossless": "", "--quiet": "", "--json": "", "--help": "",
        "--steps": "N|STAGE=N", "--guidance-scale": "X|STAGE=X", "--frames": "N", "--width": "PIXELS", "--num-videos": "INTEGER [x>=1]",
        "--scheduler": "NAME|STAGE=NAME", "--compile": "",
    },
    ("upscale",): {"--stage": "[sr1|sr2|all]", "--first-frame": "[auto|if|none]", "--output": "FILE", "--prompt": "TEXT",
                   "--scheduler": "NAME|STAGE=NAME", "--compile": ""},
    ("interpolate",): {"--keep-input-frames": "", "--offload": "[auto|none|model|sequential]", "--scheduler": "NAME|STAGE=NAME",
                       "--compile": ""},
    ("finetune-motion",): {"--train": "[qkv|attention|temporal]", "--dtype": "[auto|fp16|bf16|fp32]", "--steps": "INTEGER [x>=1]"},
    (): {"--version": "", "--install-completion": "", "--help": ""},
}
USAGE = {("generate",): "show1 generate [OPTIONS] [PROMPT]", ("upscale",): "show1 upscale [OPTIONS] IN",
         ("presets", "show"): "show1 presets show [OPTIONS] NAME", ("weights", "pull"): "show1 weights pull [OPTIONS] [NAME]..."}


def help_text(command: tuple[str, ...] | list[str]) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def option_value(text: str, option: str) -> str:
    """The value column of `option`'s row in a help table (empty for a flag)."""
    row = next(line for line in text.splitlines() if re.search(rf"│\s+(\*\s+)?{option}[\s,]", line))
    cells = re.split(r"\s{2,}", row.strip("│ ").removeprefix("* "))
    cells = [cell for cell in cells if not re.fullmatch(r"-\w", cell)]  # the short form has its own column
    return cells[1] if len(cells) > 2 else ""


@pytest.mark.parametrize("command", list(HELP_VALUES), ids=lambda command: " ".join(command) or "show1")
def test_help_names_each_value_and_lists_the_choices(command):
    text = help_text(command)
    assert {option: option_value(text, option) for option in HELP_VALUES[command]} == HELP_VALUES[command]


@pytest.mark.parametrize("command", [*COMMANDS, []], ids=lambda command: " ".join(command) or "show1")
def test_help_has_no_type_placeholders(command):
    text = help_text(command)
    assert not re.search(r"<(bool|str|int|float|file|dir|path|list\[\w+\])>|\{\w+\}", text), text


@pytest.mark.parametrize("command", list(USAGE), ids=" ".join)
def test_usage_line_names_arguments_plainly(command):
    assert f"Usage: {USAGE[command]}" in help_text(command)


def test_sigterm_mid_run_exits_143_and_leaves_no_partial_file(tiny_weights_dir, tmp_path):
    import signal
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SHOW1_WEIGHTS_DIR": str(tiny_weights_dir),
           "SHOW1_WEIGHTS_LOCK": str(tiny_weights_dir / "weights.lock"), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    output = tmp_path / "out.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "show1_cli", "generate", "a cat", "-o", str(output), "--stages", "keyframes",
         "--set", "keyframes.steps=100000", "--set", "keyframes.frames=2", "--set", "keyframes.height=16", "--set", "keyframes.width=32"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # off a terminal, every stage start is one plain line
        lines.append(process.stderr.readline())
        if "keyframes: started" in lines[-1]:
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 143, "".join(lines) + rest
    assert "terminated" in rest and "Traceback" not in rest
    assert list(tmp_path.iterdir()) == []  # no output, no .out.mp4.partial-*
