"""`show1 train` on a few toy-world clips and the tiny checkpoints: every stage learns, outputs load through
the normal CLI, resume equals an uninterrupted run, data parallel on two CPU processes matches one process,
and bad data sets are refused up front."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from show1_cli.presets import load_preset
from show1_cli.toyworld.dataset import write_dataset
from show1_cli.training.data import load_dataset
from show1_cli.training.loop import collate, example_seed
from show1_cli.training.objectives import jitter_colours, rotate_hues
from show1_cli.training.output import WEIGHTS_NAME, read_provenance
from show1_cli.training.stages import StageOptions, needs, setup
from show1_cli.video import read_video
from tests.conftest import run_cli

# Tiny sizes the tiny checkpoints take: keyframes 16x16 (4 -> 13 frames), sr1 32x32, sr2 64x64.
SIZES = ["keyframes.frames=4", "keyframes.height=16", "keyframes.width=16", "keyframes.steps=2", "interpolate.steps=2",
         "sr1.height=32", "sr1.width=32", "sr1.steps=2", "sr2.height=64", "sr2.width=64", "sr2.steps=4", "sr2.strength=0.5"]
SET = [part for item in SIZES for part in ("--set", item)]
INIT = {"keyframes": "show-1-base", "interpolate": "show-1-interpolation", "sr1": "show-1-sr1", "sr2": "show-1-sr2",
        "vae": "show-1-sr2"}
SUBFOLDER = {"vae": "vae"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_dataset(folder, height=64, width=64, per_combination=1, seed=0, frames=13, limit=6)
    return folder


def train(stage: str, clips: Path, tiny: Path, out: Path, *extra: str | Path):
    return run_cli("train", stage, "--data", clips, "--init", tiny / INIT[stage], "--out", out, "--weights-dir", tiny,
                   "--preset", "default", *SET, "--json", "--seed", 5, *extra)


def step_records(output: str) -> list[dict]:
    """The per-step lines `--json` prints (the closing summary line has no "step")."""
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [record for record in records if "step" in record]


def fixed_loss(stage: str, clips: Path, model_dir: Path, tiny: Path) -> float:
    """The stage's loss on 8 fixed examples, with the model loaded from `model_dir` like any checkpoint."""
    preset = load_preset("default", SIZES)
    dataset = load_dataset(clips, needs(stage, preset, StageOptions()))
    run = setup(stage, dataset, preset, model_dir, config_file=None, text_dir=tiny / "show-1-base", options=StageOptions())
    batch = collate([run.objective.example(torch.Generator().manual_seed(example_seed(99, 0, 0, i))) for i in range(8)])
    torch.manual_seed(0)
    with torch.no_grad():
        return float(run.objective.loss(run.training_module.eval(), batch))


@pytest.mark.parametrize("stage", ["keyframes", "interpolate", "sr1", "sr2", "vae"])
def test_a_few_steps_of_every_stage_lower_its_loss(stage, clips, tiny_weights_dir, tmp_path):
    out = tmp_path / stage
    result = train(stage, clips, tiny_weights_dir, out, "--steps", 12, "--batch-size", 2, "--lr", "2e-3", "--uncond-prob", 0)
    assert result.exit_code == 0, result.output
    assert [record["step"] for record in step_records(result.output)] == list(range(1, 13))
    before = fixed_loss(stage, clips, tiny_weights_dir / INIT[stage], tiny_weights_dir)
    after = fixed_loss(stage, clips, out, tiny_weights_dir)
    assert after < before, (before, after)

    weights = out / SUBFOLDER.get(stage, "unet") / WEIGHTS_NAME
    provenance = read_provenance(weights)
    assert provenance["stage"] == stage and provenance["steps"] == 12 and provenance["seed"] == 5
    assert (provenance["lr"], provenance["warmup"], provenance["lr_scheduler"]) == (2e-3, 0, "constant")
    assert provenance["clips"] == 6 and len(provenance["dataset_sha256"]) == 64
    # Everything else of the init folder is carried over unchanged.
    index = json.loads((tiny_weights_dir / INIT[stage] / "model_index.json").read_text())
    assert json.loads((out / "model_index.json").read_text()) == index


def test_a_trained_keyframe_model_generates_through_the_cli(clips, tiny_weights_dir, tmp_path):
    out = tmp_path / "base"
    trained = train("keyframes", clips, tiny_weights_dir, out, "--steps", 2, "--batch-size", 1, "--prediction-type", "v_prediction")
    assert trained.exit_code == 0, trained.output
    # The output describes what it predicts: its scheduler config says velocity, the rest is the init's.
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    init_scheduler = json.loads((tiny_weights_dir / "show-1-base" / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler == {**init_scheduler, "prediction_type": "v_prediction"}
    weights = tmp_path / "weights"
    shutil.copytree(out, weights / "show-1-base")
    lock = run_cli("weights", "lock", "--local", weights)
    assert lock.exit_code == 0, lock.output
    env = {"SHOW1_WEIGHTS_LOCK": str(weights / "weights.lock")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        result = run_cli("generate", "a red circle moving right on a black background", "-o", tmp_path / "k.mp4", "--stages",
                         "keyframes", "--weights-dir", weights, *SET, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert read_video(tmp_path / "k.mp4").frames.shape == (4, 3, 16, 16)


def test_resume_reaches_the_weights_of_an_uninterrupted_run(clips, tiny_weights_dir, tmp_path):
    common = ("--batch-size", 2, "--lr", "1e-3", "--ema", "--warmup", 2)
    assert train("interpolate", clips, tiny_weights_dir, tmp_path / "whole", "--steps", 4, *common).exit_code == 0
    assert train("interpolate", clips, tiny_weights_dir, tmp_path / "half", "--steps", 2, "--checkpoint-every", 2, *common).exit_code == 0
    checkpoint = tmp_path / "half.train" / "checkpoint.pt"
    resumed = train("interpolate", clips, tiny_weights_dir, tmp_path / "resumed", "--steps", 4, "--resume", checkpoint, *common)
    assert resumed.exit_code == 0, resumed.output
    whole = read_state(tmp_path / "whole")
    again = read_state(tmp_path / "resumed")
    assert whole.keys() == again.keys()
    assert all(torch.equal(whole[name], again[name]) for name in whole)

    other = train("interpolate", clips, tiny_weights_dir, tmp_path / "other", "--steps", 4, "--resume", checkpoint, "--batch-size", 2,
                  "--lr", "5e-4", "--ema", "--warmup", 2)
    assert other.exit_code == 2 and "lr" in other.output


def test_a_model_built_from_a_config_starts_from_weights_its_seed_decides(clips, tiny_weights_dir, tmp_path):
    config = tiny_weights_dir / "show-1-interpolation" / "unet" / "config.json"
    for name, seed in (("first", 5), ("again", 5), ("other", 6)):
        result = train("interpolate", clips, tiny_weights_dir, tmp_path / name, "--config", config, "--steps", 1, "--batch-size", 1,
                       "--lr", "1e-4", "--seed", seed)
        assert result.exit_code == 0, result.output
    first, again, other = (read_state(tmp_path / name) for name in ("first", "again", "other"))
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_a_decaying_learning_rate_ends_at_zero_and_fixes_the_run_length(clips, tiny_weights_dir, tmp_path):
    result = train("vae", clips, tiny_weights_dir, tmp_path / "cosine", "--steps", 4, "--lr", "1e-3", "--batch-size", 1,
                   "--lr-scheduler", "cosine", "--checkpoint-every", 2)
    assert result.exit_code == 0, result.output
    rates = [record["lr"] for record in step_records(result.output)]
    assert rates == pytest.approx([1e-3 * (1 + math.cos(math.pi * step / 4)) / 2 for step in range(1, 5)], abs=1e-12)

    longer = train("vae", clips, tiny_weights_dir, tmp_path / "longer", "--steps", 6, "--lr", "1e-3", "--batch-size", 1,
                   "--lr-scheduler", "cosine", "--resume", tmp_path / "cosine.train" / "checkpoint.pt")
    assert longer.exit_code == 2 and "steps = 4" in longer.output


def read_state(folder: Path, subfolder: str = "unet") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / subfolder / WEIGHTS_NAME)


def test_two_cpu_processes_match_one_process_with_the_same_global_batch(clips, tiny_weights_dir, tmp_path):
    # The VAE has no dropout (the UNets' temporal convs have, drawn per process), so the runs can agree exactly.
    base = [sys.executable, "-m", "show1_cli", "train", "vae", "--data", str(clips), "--init", str(tiny_weights_dir / "show-1-sr2"),
            "--weights-dir", str(tiny_weights_dir), *map(str, SET), "--steps", "3", "--lr", "1e-3", "--seed", "2", "--quiet",
            "--save-dtype", "fp32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([*base, "--out", str(tmp_path / "one"), "--batch-size", "4"], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517"]
    double = subprocess.run([*torchrun, *base[1:], "--out", str(tmp_path / "two"), "--batch-size", "2"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = read_state(tmp_path / "one", "vae"), read_state(tmp_path / "two", "vae")
    start = torch.load(tiny_weights_dir / "show-1-sr2" / "vae" / "diffusion_pytorch_model.bin", weights_only=True)
    # Adam normalises each gradient, so float-order differences of the all-reduce can move a parameter with a
    # near-zero gradient by a fraction of lr; the update as a whole must agree.
    update_one = torch.cat([(one[name] - start[name]).flatten() for name in one])
    update_two = torch.cat([(two[name] - start[name]).flatten() for name in one])
    assert update_one.norm() > 0
    assert (update_one - update_two).norm() / update_one.norm() < 1e-2
    assert read_provenance(tmp_path / "two" / "vae" / WEIGHTS_NAME)["batch_size"] == 4


def test_a_bad_data_set_is_refused_with_every_problem_named(clips, tiny_weights_dir, tmp_path):
    data = tmp_path / "bad"
    shutil.copytree(clips, data)
    lines = (data / "captions.jsonl").read_text().splitlines()
    (data / "clips" / "00001.mp4").write_bytes(b"not a video")
    lines += ['{"file": "clips/missing.mp4", "caption": "x"}', "not json", '{"file": "clips/00002.mp4"}']
    (data / "captions.jsonl").write_text("\n".join(lines) + "\n")
    result = train("keyframes", data, tiny_weights_dir, tmp_path / "out", "--steps", 1)
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "4 bad entries" in message and "missing.mp4 is missing" in message and "unreadable" in message and "--skip-bad" in message
    assert not (tmp_path / "out").exists()

    skipped = train("keyframes", data, tiny_weights_dir, tmp_path / "out", "--steps", 1, "--skip-bad", "--batch-size", 1)
    assert skipped.exit_code == 0, skipped.output
    assert read_provenance(tmp_path / "out" / "unet" / WEIGHTS_NAME)["clips"] == 5

    short = train("sr1", clips, tiny_weights_dir, tmp_path / "sr1", "--steps", 1, "--frames", 20)
    assert short.exit_code == 2 and "fewer than the 20 needed" in " ".join(short.output.split())
    exists = train("keyframes", clips, tiny_weights_dir, tmp_path / "out", "--steps", 1)
    assert exists.exit_code == 2 and "--overwrite" in exists.output


def test_bad_training_options_are_refused_before_anything_loads(clips, tiny_weights_dir, tmp_path):
    for extra, expected in (
        (("--crop", "40x40"), "multiple of 16"),
        (("--crop", "big"), "HEIGHTxWIDTH"),
        (("--mixed-precision", "fp16"), "needs a CUDA GPU"),
        (("--uncond-prob", "2"), "not a probability"),
        (("--steps", "0"), "--steps 0 must be at least 1"),
        (("--prediction-type", "sample"), "--prediction-type sample is unknown"),
        (("--lr-scheduler", "step"), "--lr-scheduler step is not one of constant, cosine, linear"),
        (("--reconstruction-loss", "ssim"), "--reconstruction-loss ssim is unknown"),
        (("--colour-augment", "hues"), "--colour-augment is for the vae, not sr1"),
        (("--colour-augment", "sepia"), "--colour-augment sepia is unknown"),
        (("--noise-aug-range", "300", "200"), "0 <= LOW <= HIGH <= 999"),
        (("--timestep-range", "0", "0"), "0 <= LOW < HIGH <= 1000"),
    ):
        result = train("sr1", clips, tiny_weights_dir, tmp_path / "out", *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert expected in " ".join(result.output.split()), (extra, result.output)
    unknown = run_cli("train", "sr3", "--data", clips, "--init", tiny_weights_dir / "show-1-sr1", "--out", tmp_path / "o")
    assert unknown.exit_code == 2 and "unknown stage" in unknown.output
    assert not (tmp_path / "out").exists()


def test_the_toy_world_commands(tmp_path):
    data = tmp_path / "toy"
    made = run_cli("toyworld", "data", data, "--per-combination", 1, "--size", "32x24", "--frames", 5)
    assert made.exit_code == 0, made.output
    assert len((data / "captions.jsonl").read_text().splitlines()) == len(list((data / "clips").glob("*.mp4"))) == 271
    again = run_cli("toyworld", "data", data)
    assert again.exit_code == 2 and "--overwrite" in again.output
    clip = data / "clips" / "00000.mp4"
    caption = read_video(clip).metadata["caption"]
    read = run_cli("toyworld", "analyse", clip, "--prompt", caption, "--json")
    assert read.exit_code == 0, read.output
    assert all(json.loads(read.output)["matches"].values())


def examples(stage: str, options: StageOptions, clips: Path, tiny: Path, count: int) -> list[dict]:
    """The first `count` training examples `show1 train STAGE` would draw with these options (seeds 0, 1, ...)."""
    preset = load_preset("default", SIZES)
    dataset = load_dataset(clips, needs(stage, preset, options))
    run = setup(stage, dataset, preset, tiny / INIT[stage], config_file=None, text_dir=tiny / "show-1-base", options=options)
    return [run.objective.example(torch.Generator().manual_seed(seed)) for seed in range(count)]


def test_late_timesteps_draw_that_share_from_the_noisy_end(clips, tiny_weights_dir):
    drawn = examples("keyframes", StageOptions(late_timesteps=(0.5, 900)), clips, tiny_weights_dir, 200)
    timesteps = [int(example["timestep"]) for example in drawn]
    late = sum(t >= 900 for t in timesteps) / len(timesteps)
    assert 0.45 < late < 0.65  # half from [900, 1000), plus the uniform draws' own 10%


def test_hue_rotation_keeps_grays_and_a_third_of_a_turn_permutes_the_channels():
    frames = torch.tensor([[0.5, -1.0, 0.2], [0.5, 0.4, -0.8], [0.5, 0.1, 0.9]])  # columns: a gray, two colours
    assert torch.allclose(rotate_hues(frames, 0.0), frames)
    assert torch.allclose(rotate_hues(frames, 2 * math.pi / 3), frames[[2, 0, 1]], atol=1e-6)
    turned = rotate_hues(frames, 1.0)
    assert torch.allclose(turned[:, 0], frames[:, 0], atol=1e-6)
    assert torch.allclose(turned.mean(0), frames.mean(0), atol=1e-6)  # a colour's brightness stays
    assert not torch.allclose(turned[:, 1], frames[:, 1], atol=0.1)


def test_colour_jitter_keeps_grays_and_moves_hue_saturation_and_lightness_by_the_amounts_asked():
    frames = torch.tensor([[0.5, -0.6, 0.2], [0.5, -0.3, -0.8], [0.5, 0.8, 0.6]])  # columns: a gray, blue, purple
    assert torch.allclose(jitter_colours(frames, 0.0, 1.0, 0.0), frames)
    assert torch.allclose(jitter_colours(frames, 0.0, 1.0, 0.3)[:, 0], frames[:, 0])
    paler = jitter_colours(frames, 0.0, 0.5, 0.0)
    assert torch.allclose(paler.mean(0), frames.mean(0), atol=1e-6)
    assert torch.allclose(paler - paler.mean(0), (frames - frames.mean(0)) / 2, atol=1e-6)
    lighter = jitter_colours(frames, 0.0, 1.0, 0.2)
    assert torch.allclose(lighter[:, 1:] - frames[:, 1:], torch.full((3, 2), 0.2), atol=1e-6)  # chroma above 1: the full 0.2


@pytest.mark.parametrize("augment", ["hues", "channels", "jitter"])
def test_a_colour_augmented_vae_trains_on_recoloured_objects_over_the_same_backgrounds(augment, clips, tiny_weights_dir):
    plain = examples("vae", StageOptions(), clips, tiny_weights_dir, 6)
    augmented = examples("vae", StageOptions(colour_augment=augment), clips, tiny_weights_dir, 6)
    changed = 0
    for example, recoloured in zip(plain, augmented, strict=True):
        original, image = example["image"], recoloured["image"]
        gray = (original.amax(0) - original.amin(0)) < 1e-6  # the toy world's backgrounds are gray levels
        assert gray.float().mean() > 0.3
        assert torch.allclose(image[:, gray], original[:, gray], atol=1e-5)
        if augment == "channels":
            assert sorted(image[:, ~gray].sum(1).tolist()) == pytest.approx(sorted(original[:, ~gray].sum(1).tolist()))
        if augment == "jitter":  # near the palette: no colour moves further than a 40-degree turn and the scalings take it
            assert (image[:, ~gray] - original[:, ~gray]).norm(dim=0).max() < 1.4
        changed += not torch.allclose(image[:, ~gray], original[:, ~gray], atol=0.05)
    assert changed >= 3


def test_sr1_without_noise_augmentation_conditions_on_level_zero(clips, tiny_weights_dir):
    drawn = examples("sr1", StageOptions(noise_levels=(0, 0)), clips, tiny_weights_dir, 20)
    assert [int(example["noise_level"]) for example in drawn] == [0] * 20
