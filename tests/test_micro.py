"""The micro cascade shipped inside show1: its lock verifies, its weights are what its recipe trains, `make demo`'s
command makes a video that follows its prompt, and a prompt held out of training is followed too (read back by
the toy world's analyser)."""

from __future__ import annotations

from pathlib import Path

from show1_cli.finetune.adapter import read_motion_adapter
from show1_cli.toyworld.analyse import analyse
from show1_cli.toyworld.world import Scene, render_path
from show1_cli.training.micro import RECIPES, SHIPPED
from show1_cli.training.output import read_provenance
from show1_cli.video import read_video, write_video
from show1_cli.weights import micro_weights
from tests.conftest import run_cli

DEMO_PROMPT = "a red circle moving right on a black background"  # the Makefile's PROMPT
SIZE_BUDGET = 30 * 1024 * 1024


def test_the_shipped_micro_cascade_is_complete_and_verifies():
    source = micro_weights()
    files = [path for path in source.weights_dir.rglob("*") if path.is_file() and not path.name.startswith(".")]
    assert sum(path.stat().st_size for path in files) <= SIZE_BUDGET
    assert sorted(source.lock()) == ["show-1-base", "show-1-interpolation", "show-1-sr1", "show-1-sr2"]
    result = run_cli("weights", "verify", "--micro")
    assert result.exit_code == 0, result.output
    assert "corrupt" not in result.output and "missing" not in result.output


def _assert_made_by(weights_file: Path, run: str) -> None:
    recipe, provenance = RECIPES[run], read_provenance(weights_file)
    made = (provenance["stage"], provenance["steps"], provenance["batch_size"], provenance["lr"], provenance["seed"])
    assert made == (recipe.stage, recipe.steps, recipe.batch_size, recipe.lr, recipe.seed), (weights_file, run)
    assert provenance["preset"] == "micro" and provenance["ema"] is True


def _runs_behind(run: str) -> list[str]:
    runs = [run]
    while RECIPES[runs[-1]].init.startswith("trained/"):
        runs.append(RECIPES[runs[-1]].init.removeprefix("trained/"))
    return runs


def test_every_shipped_model_records_the_recipe_run_that_made_it():
    folder = micro_weights().weights_dir
    for run, component in SHIPPED.items():
        _assert_made_by(folder / component / "unet" / "diffusion_pytorch_model.safetensors", run)
    # sr2's autoencoder is the last vae run its latent expert was trained on.
    vae_run = next(name for name in _runs_behind("sr2-full") if RECIPES[name].stage == "vae")
    _assert_made_by(folder / "show-1-sr2" / "vae" / "diffusion_pytorch_model.safetensors", vae_run)


def test_the_demo_command_makes_a_video_that_follows_its_prompt(tmp_path: Path):
    output = tmp_path / "demo.mp4"
    result = run_cli("generate", DEMO_PROMPT, "-o", output, "--preset", "micro", "--seed", 42, "--json")
    assert result.exit_code == 0, result.output
    video = read_video(output)
    assert video.frames.shape == (29, 3, 192, 256)
    assert video.fps == 8
    reading = analyse(video.frames)
    assert (reading.color, reading.background, reading.motion) == ("red", "black", "moving right"), reading


def test_a_held_out_prompt_is_followed(tmp_path: Path):
    output = tmp_path / "held-out.mp4"
    prompt = "a yellow triangle moving left on a gray background"  # no yellow triangle was ever trained on
    result = run_cli("generate", prompt, "-o", output, "--preset", "micro", "--stages", "keyframes,interpolate", "--seed", 7)
    assert result.exit_code == 0, result.output
    reading = analyse(read_video(output).frames)
    assert (reading.color, reading.background, reading.motion) == ("yellow", "gray", "moving left"), reading


def test_finetune_motion_trains_on_the_micro_base_and_its_adapter_fits_only_that_base(tmp_path: Path, tiny_weights: Path):
    # A diagonal motion, which no clip of the toy world has.
    path = [(0.3 + 0.4 * index / 7, 0.3 + 0.4 * index / 7) for index in range(8)]
    clip = render_path(Scene("red", "circle", "moving right", "black"), path, 96, 128)
    reference = write_video(tmp_path / "diagonal.mp4", clip, 8, {}, lossless=True)
    adapter = tmp_path / "diagonal.safetensors"
    result = run_cli("finetune-motion", reference, "--prompt", DEMO_PROMPT, "-o", adapter, "--preset", "micro", "--steps", 2, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert read_motion_adapter(adapter).metadata["base_repo_id"] == "show1-micro/show-1-base"

    output = tmp_path / "blue.mp4"
    prompt = "a blue square moving right on a gray background"
    result = run_cli("generate", prompt, "-o", output, "--preset", "micro", "--stages", "keyframes", "--motion", adapter, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert read_video(output).frames.shape == (8, 3, 24, 32)

    # The hub weights' show-1-base (here the tiny one) refuses it before sampling.
    hub_run = ("generate", prompt, "-o", tmp_path / "hub.mp4", "--stages", "keyframes", "--motion", adapter, "--set", "keyframes.steps=2")
    result = run_cli(*hub_run)
    assert result.exit_code == 2 and "trained on show1-micro/show-1-base@unpinned" in result.output, result.output
