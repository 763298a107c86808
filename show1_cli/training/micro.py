"""The micro cascade: how it is built, from nothing, with show1's own commands.

`python -m show1_cli.training.micro BUILD_DIR` (or `make micro-weights`) runs the whole recipe and
prints every command before it runs it:

1. `show1 toyworld data` renders the training clips (the toy world, held-out combinations excluded);
2. the scaffold: the frozen parts of each repository (model index and scheduler configs as the real ones,
   a sentencepiece T5 tokenizer and a small T5 encoder, a CLIP BPE tokenizer and a small CLIP text
   model, both trained/seeded on the toy world's caption vocabulary);
3. `show1 train` for every run of `RECIPES` in two lanes (one CPU thread each): the keyframe model and its
   annealing runs in one; sr1, interpolate, the vae and sr2 on it in the other, each from scratch with its
   config from show1_cli/training/configs/ and then fine-tuned by the runs after it;
4. the lock: sha256 and size of every file the stages need.

Every step is resumable: finished outputs are kept, and an interrupted training continues from its last
checkpoint. The result, BUILD_DIR/weights/, is what ships in show1_cli/data/micro/.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from show1_cli.training.scaffold import train_sentencepiece, write_pixel_repository_parts, write_sr2_repository_parts

CONFIGS = Path(__file__).resolve().parent / "configs"
T5_DIM = 64
CLIP_DIM = 64
SEED = 20261201
PRESET = "micro"
# Components and the files of each that the lock pins (what the stages read).
COMPONENTS = ("show-1-base", "show-1-interpolation", "show-1-sr1", "show-1-sr2")

# Clips per (colour, shape, motion, background) combination.
CLIPS_PER_COMBINATION = 6
COMMON = ("--preset", PRESET, "--ema", "--checkpoint-every", "50")


@dataclass(frozen=True)
class Recipe:
    """One training run: the stage, where it starts (a scaffold component or an earlier run), its config
    (None: fine-tune the init's model), its schedule and its other options. Sizes come from the micro preset."""

    stage: str
    init: str  # "scaffold/<component>" or "trained/<run>", relative to the build folder
    config: str | None
    steps: int
    batch_size: int
    lr: float
    seed: int
    warmup: int = 20
    lr_scheduler: str = "cosine"
    options: tuple[str, ...] = ()

    def arguments(self) -> list[str]:
        return ["--steps", str(self.steps), "--batch-size", str(self.batch_size), "--lr", str(self.lr), "--seed", str(self.seed),
                "--warmup", str(self.warmup), "--lr-scheduler", self.lr_scheduler, *self.options]


VELOCITY = ("--prediction-type", "v_prediction")
SQUARED_ERROR = ("--reconstruction-loss", "mse")
CROP_128 = ("--crop", "128x128")

# The runs that made the shipped weights, in order; each later run fine-tunes the one before it with a
# fresh cosine schedule. Why each choice was made is measured in docs/losses.md (section 5) and
# benchmarks/results/micro_training.json.
RECIPES: dict[str, Recipe] = {
    # The keyframe model predicts the velocity, whose target at the noisiest timesteps is the clean video itself
    # (an epsilon model of a flat toy world never learns the prompt there), with extra draws from those timesteps:
    # at 32x24 the object's colour, place and path are decided above t ~ 900. The constant-rate phase learns
    # colour, background and direction; the annealing phases with fewer late draws learn shapes and sizes. Its
    # config is narrower than the real one's proportions ([32, 32, 64, 64] channels, heads of 16 channels): a step
    # 1.7 times cheaper (docs/losses.md, section 5).
    "keyframes": Recipe("keyframes", "scaffold/show-1-base", "unet-keyframes.json", 2500, 8, 6e-4, seed=1, warmup=100,
                        lr_scheduler="constant", options=(*VELOCITY, "--late-timesteps", "0.5", "900")),
    "keyframes-anneal-1": Recipe("keyframes", "trained/keyframes", None, 500, 8, 3e-4, seed=2,
                                 options=(*VELOCITY, "--late-timesteps", "0.25", "900")),
    "keyframes-anneal-2": Recipe("keyframes", "trained/keyframes-anneal-1", None, 800, 8, 3e-4, seed=3,
                                 options=(*VELOCITY, "--late-timesteps", "0.25", "900")),
    "keyframes-anneal-3": Recipe("keyframes", "trained/keyframes-anneal-2", None, 800, 8, 2e-4, seed=4,
                                 options=(*VELOCITY, "--late-timesteps", "0.25", "900")),
    # The autoencoder, on the squared error from scratch: it must code every colour on every background apart
    # (red and yellow on gray merge into orange after 2000 steps; benchmarks/micro_vae_colours.py reads it), and
    # pass on the colours sr1 draws near the palette: trained on the palette alone it snaps them to a neighbour,
    # or worse (the unjittered rebuild turned the demo's red circle green). Jittered colours mend most of that
    # and move some misses to neighbouring hues (docs/losses.md, section 5).
    "vae": Recipe("vae", "scaffold/show-1-sr2", "vae.json", 4000, 4, 1e-3, seed=1, warmup=100,
                  options=(*CROP_128, *SQUARED_ERROR, "--colour-augment", "jitter")),
    # The latent expert on that autoencoder: crops first, then whole frames, as it runs at inference.
    "sr2": Recipe("sr2", "trained/vae", "unet-sr2.json", 1500, 4, 6e-4, seed=1, warmup=50, options=CROP_128),
    "sr2-full": Recipe("sr2", "trained/sr2", None, 800, 2, 3e-4, seed=2),
    # Interpolation: epsilon first, then the velocity (an epsilon model's noisy end leaves even the conditioned
    # frames in wrong, saturated colours).
    "interpolate-plain": Recipe("interpolate", "scaffold/show-1-interpolation", "unet-interpolate.json", 600, 8, 6e-4, seed=1,
                                warmup=100, lr_scheduler="constant"),
    "interpolate": Recipe("interpolate", "trained/interpolate-plain", None, 800, 8, 6e-4, seed=1, warmup=50,
                          options=(*VELOCITY, "--late-timesteps", "0.3", "900")),
    # sr1 predicts the velocity from the start; its noisy-end target is the upscaled input's content.
    "sr1": Recipe("sr1", "scaffold/show-1-sr1", "unet-sr1.json", 1200, 4, 6e-4, seed=1, warmup=50,
                  options=(*VELOCITY, "--crop", "32x48")),
}
# Two lanes, one CPU thread each: the keyframe model (the one that follows the prompt) takes one to itself.
LANES = (("keyframes", "keyframes-anneal-1", "keyframes-anneal-2", "keyframes-anneal-3"),
         ("sr1", "interpolate-plain", "interpolate", "vae", "sr2", "sr2-full"))
# Which run becomes which component of the cascade.
SHIPPED = {"keyframes-anneal-3": "show-1-base", "interpolate": "show-1-interpolation", "sr1": "show-1-sr1", "sr2-full": "show-1-sr2"}


def caption_corpus() -> list[str]:
    from show1_cli.presets import load_preset
    from show1_cli.toyworld.world import caption_vocabulary

    preset = load_preset(PRESET)
    return caption_vocabulary() + [preset.sr2.negative_prompt]


def write_scaffold(root: Path) -> None:
    """The frozen parts of the four micro repositories in root/<component>/ (no unet/, no vae/)."""
    corpus = caption_corpus()
    # One piece per word, as the real T5 vocabulary has for every word of these captions. A small unigram
    # vocabulary spells them in shared fragments ("le" of "left" is also in "circle"), and the keyframe model
    # then never learns to read the motion words (docs/losses.md, section 5).
    spiece = train_sentencepiece(corpus, vocab_size=48, model_type="word")
    write_pixel_repository_parts(root / "show-1-base", "show-1-base", spiece, t5_dim=T5_DIM, seed=SEED)
    write_pixel_repository_parts(root / "show-1-interpolation", "show-1-interpolation", spiece, t5_dim=T5_DIM, seed=SEED, text=False)
    write_pixel_repository_parts(root / "show-1-sr1", "show-1-sr1", spiece, t5_dim=T5_DIM, seed=SEED, text=False)
    write_sr2_repository_parts(root / "show-1-sr2", corpus, clip_dim=CLIP_DIM, merges=120, seed=SEED + 1)


def train_command(run: str, build: Path) -> list[str]:
    recipe = RECIPES[run]
    out = build / "trained" / run
    command = [sys.executable, "-m", "show1_cli", "train", recipe.stage, "--data", str(build / "data"), "--init",
               str(build / recipe.init), "--out", str(out), "--text-encoder", str(build / "scaffold" / "show-1-base"), "--json",
               *COMMON, *recipe.arguments()]
    if recipe.config is not None:
        # Relative to the working folder (the clone, under make), so that the provenance every output records, and
        # with it the lock, does not depend on where the clone lives.
        command += ["--config", os.path.relpath(CONFIGS / recipe.config)]
    checkpoint = out.with_name(out.name + ".train") / "checkpoint.pt"
    if checkpoint.is_file():
        command += ["--resume", str(checkpoint)]
    return command


_PRINTING = threading.Lock()  # the lanes print from two threads: one whole line at a time


def _run(command: list[str], log: Path, threads: int) -> None:
    with _PRINTING:
        print("+", shlex.join(command), f"> {log}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with log.open("a", encoding="utf-8") as handle:
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT, env=env)


def assemble(build: Path, target: Path) -> None:
    """target/<component>/ from the trained outputs, and target/weights.lock."""
    from show1_cli.training.lock import write_micro_lock

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for run, component in SHIPPED.items():
        shutil.copytree(build / "trained" / run, target / component, ignore=shutil.ignore_patterns(".*", "feature_extractor"))
    write_micro_lock(target)


def build(build_dir: Path, target: Path) -> None:
    from show1_cli.presets import load_preset
    from show1_cli.toyworld.dataset import write_dataset

    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "logs").mkdir(exist_ok=True)
    preset = load_preset(PRESET)
    if not (build_dir / "data" / "captions.jsonl").is_file():
        print(f"+ toy-world data set -> {build_dir / 'data'}", flush=True)
        write_dataset(build_dir / "data", height=preset.sr2.height, width=preset.sr2.width,
                      per_combination=CLIPS_PER_COMBINATION, seed=SEED)
    if not (build_dir / "scaffold" / "show-1-sr2" / "text_encoder").is_dir():
        write_scaffold(build_dir / "scaffold")

    def train(run: str) -> None:
        if not (build_dir / "trained" / run / "model_index.json").is_file():
            _run(train_command(run, build_dir), build_dir / "logs" / f"{run}.jsonl", threads=1)

    def lane(runs: tuple[str, ...]) -> None:
        for run in runs:
            train(run)

    with ThreadPoolExecutor(max_workers=len(LANES)) as pool:
        for future in [pool.submit(lane, runs) for runs in LANES]:
            future.result()
    assemble(build_dir, target)
    print(json.dumps({"built": str(target)}))


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m show1_cli.training.micro BUILD_DIR [TARGET_DIR]", file=sys.stderr)
        return 2
    build_dir = Path(argv[0])
    target = Path(argv[1]) if len(argv) == 2 else build_dir / "weights"
    build(build_dir, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
