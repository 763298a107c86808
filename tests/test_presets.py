"""Presets: shipped files, inheritance, --set overrides and every validation error, through the CLI too."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from typer.testing import CliRunner

from show1_cli.cli import app
from show1_cli.errors import InputError
from show1_cli.presets import available_presets, load_preset

runner = CliRunner()


def test_default_preset_holds_the_paper_settings():
    preset = load_preset("default")
    assert preset.stages == ("keyframes", "interpolate", "sr1", "sr2")
    assert preset.fps == 8
    assert dataclasses.astuple(preset.keyframes) == (8, 40, 64, 75, 9.0, "", "default")
    assert (preset.interpolate.steps, preset.interpolate.guidance_scale) == (75, 4.0)
    assert dataclasses.astuple(preset.first_frame) == (70, 4.0, 150, "default")
    assert dataclasses.astuple(preset.sr1) == (160, 256, 125, 7.0, 250, 8, 7, "", "default")
    assert dataclasses.astuple(preset.sr2) == (320, 576, 50, 15.0, 0.8, "low resolution, blur", "default")
    assert preset.output_shape() == (29, 320, 576)


def test_shipped_presets_all_load_and_inherit_from_default():
    assert {"default", "fast", "preview"} <= set(available_presets())
    fast, default = load_preset("fast"), load_preset("default")
    assert fast.keyframes.steps < default.keyframes.steps and fast.sr1.steps < default.sr1.steps
    assert fast.sr2.negative_prompt == default.sr2.negative_prompt  # inherited, not repeated
    preview = load_preset("preview")
    assert preview.stages == ("keyframes", "interpolate") and preview.output_shape() == (29, 40, 64)


def test_set_overrides_single_fields_with_yaml_typed_values():
    preset = load_preset("default", ["sr1.steps=50", "keyframes.negative_prompt=blurry, ugly", "fps=7.5", "stages=keyframes,interpolate"])
    assert preset.sr1.steps == 50 and isinstance(preset.sr1.steps, int)
    assert preset.keyframes.negative_prompt == "blurry, ugly"
    assert preset.fps == 7.5
    assert preset.stages == ("keyframes", "interpolate")
    assert load_preset("default").sr1.steps == 125  # the file itself is untouched


def test_a_preset_file_by_path_with_a_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: fast\nsr2:\n  strength: 0.6\n")
    preset = load_preset(str(path))
    assert preset.name == "mine" and preset.sr2.strength == 0.6 and preset.sr1.steps == load_preset("fast").sr1.steps


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sr1.bogus=1"], "sr1.bogus is an unknown key"),
        (["extra=1"], "'extra' is an unknown key"),
        (["sr1.steps=many"], "sr1.steps must be an integer"),
        (["sr1.steps=true"], "sr1.steps must be an integer"),
        (["keyframes.guidance_scale=high"], "keyframes.guidance_scale must be a number"),
        (["keyframes.height=42"], "keyframes.height must be a positive multiple of 8"),
        (["sr1.width=250"], "sr1.width must be a positive multiple of 16"),
        (["sr2.height=300"], "sr2.height must be a positive multiple of 64"),
        (["sr1.stride=8"], "sr1.stride must be between 1 and window-1"),
        (["sr1.window=1"], "sr1.window must be at least 2"),
        (["sr2.strength=0.95"], "sr2.strength must be in (0, 0.9]"),
        (["sr1.noise_level=1000"], "sr1.noise_level must be a timestep"),
        (["sr2.steps=1"], "sr2.steps x strength runs no denoising step"),
        (["keyframes.steps=0"], "keyframes.steps must be at least 1"),
        (["fps=0"], "fps must be between"),
        (["stages=sr1,keyframes"], "out of order"),
        (["stages=keyframes,upscale"], "stages name an unknown stage 'upscale'"),
        (["keyframes.frames=1"], "keyframes.frames is 1, but interpolation needs at least 2 keyframes"),
        (["sr1.height=32", "sr1.width=32"], "sr1 size 32x32 is smaller than the keyframes"),
        (["first_frame.scheduler=euler"], "first_frame.scheduler must be one of default, dpm, unipc, got 'euler'"),
        (["sr2.scheduler=2"], "sr2.scheduler must be a string"),
    ],
)
def test_validation_names_the_key_and_the_reason(overrides, message):
    with pytest.raises(InputError) as raised:
        load_preset("default", overrides)
    assert message in str(raised.value)
    assert "default.yaml" in raised.value.message  # the file is named
    assert raised.value.fix  # and a way out


def test_scheduler_is_optional_in_a_section_and_taken_where_given(tmp_path):
    path = tmp_path / "solvers.yaml"
    path.write_text("base: default\nsr1:\n  scheduler: unipc\nfirst_frame:\n  scheduler: dpm\n")
    preset = load_preset(str(path))
    assert (preset.sr1.scheduler, preset.first_frame.scheduler, preset.keyframes.scheduler) == ("unipc", "dpm", "default")
    assert preset.to_dict()["sr1"]["scheduler"] == "unipc"  # what the record's preset_settings hold


def test_every_problem_of_a_preset_is_named_in_one_error(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("fsp: 8\nstages: [keyframes]\nkeyframes: {frames: 0, height: 40, width: 64, steps: 0, guidance_scale: 9.0}\n")
    with pytest.raises(InputError) as raised:
        load_preset(str(typo))
    message = raised.value.message
    assert message.startswith(f"{typo}: ")
    for problem in ("'fsp' is an unknown key", "'fps' is missing", "'interpolate' is missing", "keyframes.negative_prompt is missing"):
        assert problem in message, message
    assert "\n" not in message and "problems:" in message
    assert "scheduler" not in message  # optional: the checkpoint's own unless a section names one


def test_only_the_stages_that_run_are_checked_against_each_other():
    # One keyframe is fine when interpolation does not run, and sr1's size is not compared with keyframes
    # that upscale never makes.
    assert load_preset("default", ["keyframes.frames=1"], ["keyframes"]).keyframes.frames == 1
    assert load_preset("default", ["sr1.width=16", "sr1.height=16"], ["sr1"]).sr1.width == 16
    with pytest.raises(InputError, match="interpolation needs at least 2 keyframes"):
        load_preset("default", ["keyframes.frames=1"], ["keyframes", "interpolate"])


def test_a_preset_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"base: default\nkeyframes: {negative_prompt: \"caf\xe9\"}\n")
    with pytest.raises(InputError, match=r"latin.yaml: not UTF-8 text \(byte 0xe9 at offset 47\)"):
        load_preset(str(latin))


def test_malformed_set_is_rejected():
    with pytest.raises(InputError, match="--set 'sr1' is not of the form key=value"):
        load_preset("default", ["sr1"])
    with pytest.raises(InputError, match="at most two parts"):
        load_preset("default", ["sr1.steps.x=1"])


def test_file_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("keyframes: [1, 2\n")
    with pytest.raises(InputError, match="broken.yaml: not valid YAML"):
        load_preset(str(broken))
    incomplete = tmp_path / "incomplete.yaml"
    incomplete.write_text("fps: 8\n")
    with pytest.raises(InputError, match="incomplete.yaml: 6 problems: 'stages' is missing; 'keyframes' is missing"):
        load_preset(str(incomplete))
    with pytest.raises(InputError, match="unknown preset 'nope'"):
        load_preset("nope")
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text(f"base: {cycle}\n")
    with pytest.raises(InputError, match="form a cycle"):
        load_preset(str(cycle))


def test_presets_commands():
    listed = runner.invoke(app, ["presets", "list"])
    assert listed.exit_code == 0
    for name in ("default", "fast", "preview"):
        assert name in listed.output
    shown = runner.invoke(app, ["presets", "show", "fast", "--set", "sr1.steps=3"])
    assert shown.exit_code == 0
    data = yaml.safe_load(shown.stdout)
    assert data["sr1"]["steps"] == 3 and data["sr2"]["strength"] == 0.8
    bad = runner.invoke(app, ["presets", "show", "default", "--set", "sr2.strength=2"])
    assert bad.exit_code == 2
    assert "sr2.strength" in bad.stderr and "Traceback" not in bad.output
