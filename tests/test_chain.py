"""The chain runner: keyframes -> interpolate end to end, intermediates and resume, prompts-file batches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import show1_cli.models
import show1_cli.text
from show1_cli.chain import Chain, batch_jobs, read_prompts_file, resume_point
from show1_cli.errors import InputError
from show1_cli.runtime import resolve_runtime
from show1_cli.seeds import derive_seed
from show1_cli.video import read_video
from tests.conftest import run_cli

PROMPT = "fireworks over the river"
SMALL = [
    "--set", "keyframes.steps=2", "--set", "interpolate.steps=2",
    "--set", "keyframes.height=16", "--set", "keyframes.width=32",
]
BATCH = ["--stages", "keyframes", "--set", "keyframes.steps=1", "--set", "keyframes.frames=2",
         "--set", "keyframes.height=16", "--set", "keyframes.width=32"]


@pytest.fixture(scope="module")
def full_run(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An uninterrupted keyframes,interpolate run that saves its intermediates."""
    folder = tmp_path_factory.mktemp("chain")
    output, saved = folder / "full.mp4", folder / "saved"
    result = run_cli("generate", PROMPT, "-o", output, "--stages", "keyframes,interpolate", "--seed", 21, "--lossless",
                     "--save-intermediates", saved, "--json", *SMALL)
    assert result.exit_code == 0, result.output
    return {"output": output, "saved": saved, "folder": folder, "summary": json.loads(result.stdout.strip().splitlines()[-1])}


def test_keyframes_interpolate_writes_29_frames(full_run: dict) -> None:
    video = read_video(full_run["output"])
    assert video.frames.shape == (29, 3, 16, 32)
    assert video.fps == pytest.approx(8.0)
    assert video.metadata["stages"] == ["keyframes", "interpolate"]
    assert video.metadata["weights"].keys() == {"show-1-base", "show-1-interpolation"}
    assert list(full_run["summary"]["stages"]) == ["text", "keyframes", "interpolate"]


def test_intermediates_hold_each_stage_losslessly(full_run: dict) -> None:
    saved = full_run["saved"]
    keyframes = read_video(saved / "keyframes.mkv")
    assert keyframes.frames.shape == (8, 3, 16, 32)
    assert (saved / "keyframes.safetensors").is_file() and (saved / "interpolate.safetensors").is_file()
    final = read_video(full_run["output"]).frames
    assert torch.equal(read_video(saved / "interpolate.mkv").frames, final)


def test_resume_from_stage_gives_the_uninterrupted_video(full_run: dict) -> None:
    output = full_run["folder"] / "resumed.mp4"
    result = run_cli("generate", "-o", output, "--stages", "keyframes,interpolate", "--lossless",
                     "--resume", full_run["saved"], "--from-stage", "interpolate", *SMALL)
    assert result.exit_code == 0, result.output
    resumed = read_video(output)
    assert torch.equal(resumed.frames, read_video(full_run["output"]).frames)
    assert resumed.metadata["seed"] == 21 and resumed.metadata["prompt"] == PROMPT  # taken from the saved run
    assert resumed.metadata["stages"] == ["keyframes", "interpolate"]


def test_resume_continues_after_the_last_saved_stage(full_run: dict) -> None:
    crashed = full_run["folder"] / "crashed"
    crashed.mkdir()
    shutil.copy(full_run["saved"] / "keyframes.safetensors", crashed)  # the run died during interpolation
    output = full_run["folder"] / "continued.mp4"
    result = run_cli("generate", "-o", output, "--stages", "keyframes,interpolate", "--lossless", "--resume", crashed, *SMALL)
    assert result.exit_code == 0, result.output
    assert torch.equal(read_video(output).frames, read_video(full_run["output"]).frames)


def test_resume_point_errors(tmp_path: Path) -> None:
    stages = ("keyframes", "interpolate")
    with pytest.raises(InputError, match="does not exist"):
        resume_point(tmp_path / "missing", stages, None)
    with pytest.raises(InputError, match="no saved output"):
        resume_point(tmp_path, stages, None)
    with pytest.raises(InputError, match="first stage"):
        resume_point(tmp_path, stages, "keyframes")
    with pytest.raises(InputError, match="not one of"):
        resume_point(tmp_path, stages, "sr2")
    assert resume_point(tmp_path, stages, "interpolate") == ("keyframes", ("interpolate",))


def test_resume_without_saved_output_is_a_usage_error(tiny_weights: Path, tmp_path: Path) -> None:
    result = run_cli("generate", PROMPT, "-o", tmp_path / "x.mp4", "--resume", tmp_path, "--from-stage", "interpolate",
                     "--stages", "keyframes,interpolate")
    assert result.exit_code == 2
    assert "keyframes.safetensors" in result.output


# -------------------------------------------------------------------------------------------- batches


def test_prompts_file_makes_one_output_per_line_and_rerun_skips(tiny_weights: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "a cat walking on the grass\n"
        "# a comment\n"
        '{"prompt": "a dog running", "seed": 99, "output": "dog.mp4", "set": {"keyframes.frames": 3}}\n'
        "\n"
        "a red car at night\n",
        encoding="utf-8",
    )
    out_dir = tmp_path / "videos"
    result = run_cli("generate", "--prompts", prompts, "--out-dir", out_dir, "--seed", 7, "--lossless", *BATCH)
    assert result.exit_code == 0, result.output
    outputs = sorted(out_dir.glob("*.mp4"))
    assert [path.name for path in outputs] == ["0001-a-cat-walking-on-the-grass.mp4", "0003-a-red-car-at-night.mp4", "dog.mp4"]
    assert sorted(path.name for path in out_dir.glob("*.json")) == [path.with_suffix(".json").name for path in outputs]
    cat, car, dog = (read_video(path) for path in outputs)
    assert cat.metadata["seed"] == derive_seed(7, 0) and car.metadata["seed"] == derive_seed(7, 2)
    assert dog.metadata["seed"] == 99 and dog.frames.shape[0] == 3 and cat.frames.shape[0] == 2

    # One item reproduced alone from the seed in its metadata.
    alone = tmp_path / "alone.mp4"
    result = run_cli("generate", "a red car at night", "-o", alone, "--seed", car.metadata["seed"], "--lossless", *BATCH)
    assert result.exit_code == 0, result.output
    assert torch.equal(read_video(alone).frames, car.frames)

    # Rerun: everything exists, nothing is redone.
    stamps = {path: path.stat().st_mtime_ns for path in outputs}
    result = run_cli("generate", "--prompts", prompts, "--out-dir", out_dir, "--seed", 7, "--json", *BATCH)
    assert result.exit_code == 0, result.output
    *items, summary = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [item["skipped"] for item in items] == [True] * 3
    assert summary["summary"]["skipped"] == 3 and summary["summary"]["done"] == summary["summary"]["failed"] == 0
    assert {path: path.stat().st_mtime_ns for path in outputs} == stamps


def test_batch_loads_models_and_text_encoder_once(tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"load_unet": 0, "encode_texts": 0}
    real_load_unet, real_encode = show1_cli.models.load_unet, show1_cli.text.encode_texts

    def counting_load_unet(*args, **kwargs):
        counts["load_unet"] += 1
        return real_load_unet(*args, **kwargs)

    def counting_encode(*args, **kwargs):
        counts["encode_texts"] += 1
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(show1_cli.models, "load_unet", counting_load_unet)
    monkeypatch.setattr(show1_cli.text, "encode_texts", counting_encode)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\n", encoding="utf-8")
    items = read_prompts_file(prompts)
    jobs, failures = batch_jobs(items, tmp_path, preset_name="default", overrides=BATCH[2:][1::2], stages=("keyframes",),
                      batch_seed=1, save_intermediates=None)
    results = Chain(resolve_runtime("cpu", "fp32", "none"), tiny_weights, show_progress=False).run(jobs, skip_existing=True)
    assert [result.skipped for result in results] == [False] * 3 and failures == []
    assert counts == {"load_unet": 1, "encode_texts": 1}


def test_derived_seeds_are_stable_and_distinct() -> None:
    seeds = [derive_seed(7, index) for index in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= seed < 2**31 for seed in seeds)
    assert seeds == [derive_seed(7, index) for index in range(100)]
    assert seeds != [derive_seed(8, index) for index in range(100)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"seed": 1}', 'missing "prompt"'),
        ('{"prompt": "x", "colour": 1}', "unknown key"),
        ('{"prompt": "x", "seed": "1"}', "seed must be an integer"),
        ('{"prompt": "x", "output": "../escape.mp4"}', "inside --out-dir"),
        ('{"prompt": "x", "set": 3}', '"set" must be'),
    ],
)
def test_bad_prompts_file_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(f"fine prompt\n{line}\nlast prompt\n", encoding="utf-8")
    fine, bad, last = read_prompts_file(prompts)
    assert fine.error is None and last.error is None and (fine.index, bad.index, last.index) == (0, 1, 2)
    assert message in bad.error and ":2:" in bad.error


def test_prompts_file_options_conflict(tiny_weights: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("x\n", encoding="utf-8")
    assert run_cli("generate", "--prompts", prompts).exit_code == 2  # needs --out-dir
    assert run_cli("generate", "x", "--prompts", prompts, "--out-dir", tmp_path).exit_code == 2
    assert run_cli("generate", "x").exit_code == 2  # needs -o


def test_a_stage_that_outputs_nan_stops_the_run_and_writes_nothing(tiny_weights: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from show1_cli.models import UNet3DConditionModel

    forward = UNet3DConditionModel.forward

    def overflowing(self, *args, **kwargs):  # what an fp16 overflow does to a real UNet
        output = forward(self, *args, **kwargs)
        output.sample.fill_(float("nan"))
        return output

    monkeypatch.setattr(UNet3DConditionModel, "forward", overflowing)
    output, saved = tmp_path / "x.mp4", tmp_path / "saved"
    result = run_cli("generate", PROMPT, "-o", output, *BATCH, "--save-intermediates", saved)
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "the keyframes stage produced NaN or infinite values" in message and "--dtype bf16" in message
    assert "Traceback" not in result.output
    assert not output.exists() and not (saved.exists() and any(saved.iterdir()))


def test_the_output_check_refuses_a_constant_video_and_passes_a_picture() -> None:
    from show1_cli.errors import StageError
    from show1_cli.stages import check_output

    black = torch.full((4, 3, 8, 8), -1.0)
    with pytest.raises(StageError, match=r"sr2 stage produced the same value \(-1.00\) in every pixel"):
        check_output("sr2", black)
    with pytest.raises(StageError, match="NaN or infinite"):
        check_output("sr1", torch.tensor([[[[0.0, float("inf")]]]]))
    picture = black.clone()
    picture[0, 0, 0, 0] = 0.5
    assert check_output("sr2", picture) is picture


@pytest.mark.parametrize("failing", ["video", "tensor"])
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_what_was_saved(failing, tiny_weights, tmp_path, monkeypatch):
    import errno

    import safetensors.torch

    import show1_cli.video

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "video":
        monkeypatch.setattr(show1_cli.video, "_encode", full)
    else:
        monkeypatch.setattr(safetensors.torch, "save_file", full)
    saved, output = tmp_path / "saved", tmp_path / "out.mp4"
    result = run_cli("generate", PROMPT, "-o", output, "--save-intermediates", saved, "--quiet", *BATCH)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    failed = saved / "keyframes.mkv" if failing == "video" else saved / "keyframes.safetensors"
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {failed}: No space left on device (free space"), lines
    assert not output.exists() and not list(tmp_path.rglob("*.partial*"))
    if failing == "tensor":
        assert read_video(saved / "keyframes.mkv").frames.shape[0] == 2  # written before the disk filled up: kept
