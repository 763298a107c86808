"""The loss-design questions of `show1 train`, answered on the toy world at equal compute (docs/losses.md).

Each experiment trains its variants with `show1 train` (the command a user runs) from the same init with the
same steps, batch, learning rate and schedule, for several seeds, on a toy-world data set it renders itself,
then measures every variant side by side on freshly rendered clips (held-in and held-out combinations):

- hybrid: the keyframe model (predicting the noise, as Show-1's) trained with the improved-DDPM hybrid loss
  (epsilon MSE plus 0.001 times the variational bound, which trains the learned-range variance channels)
  against the epsilon MSE alone (the variance channels stay as initialised), each sampled at 25 and 75 steps
  by two samplers: the checkpoint's DPM-Solver++ (Show-1's, which reads no variance), and ancestral DDPM
  with the variance each loss gives it (the learned range after the hybrid loss, the fixed posterior
  variance after the MSE alone: improved DDPM's comparison). Figures: the analyser's prompt accuracy, the
  total variation distance between the colour histograms of the samples and of the true clips, and the
  variational bound on the true clips' likelihood (bits per dimension) with the learned and the fixed variances;
- hybrid-velocity: the same comparison on a keyframe model that predicts the velocity, with half its draws from
  t >= 900 (the shipped keyframe recipe's first phase); the bound term reads the noise the velocity implies;
- sr2-range: the latent expert trained on t in [0, 900) against [0, 1000), applied at strength 0.8 and 0.6 to
  true clips area-downsampled to the sr1 size: PSNR against the true clip at the sr2 size, and the analyser's
  prompt accuracy (mean of colour, background, shape and motion, in points) on the output;
- sr1-noise-aug: sr1 trained with noise-conditioning augmentation (levels 0-500, applied at the micro preset's
  level, and at level 0) against none (level 0, applied at level 0), on true keyframe-size clips as they are
  and with the artefacts a stage-2 output has (blur, noise, sub-pixel shifts; once and twice as strong): PSNR
  against the true clip at the sr1 size.

Trainings are resumable (rerun the same command) and run in --jobs parallel lanes of one CPU thread each;
everything lives under --work. The inits are the shipped micro cascade's frozen parts (VAE, text encoders)
with fresh UNets from the micro configs.

    python benchmarks/loss_design.py hybrid --steps 400 --seeds 2
    python benchmarks/loss_design.py hybrid-velocity --steps 500 --seeds 2
    python benchmarks/loss_design.py sr2-range --steps 600 --seeds 2
    python benchmarks/loss_design.py sr1-noise-aug --steps 600 --seeds 2

Writes benchmarks/results/loss_design-EXPERIMENT.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import diffusers  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from micro_steps_quality import accuracy, psnr  # noqa: E402
from report import write_report  # noqa: E402

from show1_cli.chain import Chain, Job  # noqa: E402
from show1_cli.presets import load_preset  # noqa: E402
from show1_cli.resources import data_path  # noqa: E402
from show1_cli.runtime import resolve_runtime  # noqa: E402
from show1_cli.toyworld.dataset import write_dataset  # noqa: E402
from show1_cli.toyworld.world import all_combinations, random_scene, render  # noqa: E402
from show1_cli.training.lock import write_micro_lock  # noqa: E402
from show1_cli.video import read_video  # noqa: E402

MICRO = data_path("micro")
CONFIGS = REPO / "show1_cli" / "training" / "configs"
CLIPS_PER_GROUP = 6
FRAMES = 8  # every 4th frame of a 29-frame clip: the motion is kept, the cost is a quarter
BOUND_STRATA = 50  # timesteps per clip at which the keyframe models' variational bound is estimated


@dataclass(frozen=True)
class Variant:
    name: str
    train: tuple[str, ...]  # extra `show1 train` options
    sample: tuple[str, ...] = ()  # preset overrides when it is applied
    ddpm_variance: str = "fixed_small"  # the variance its ancestral DDPM sampler uses (hybrid)


@dataclass(frozen=True)
class Experiment:
    stage: str
    component: str
    init: Path
    config: str
    train: tuple[str, ...]  # options every variant trains with
    variants: tuple[Variant, ...]


KEYFRAME_TRAINING = ("--batch-size", "8", "--lr", "6e-4", "--warmup", "100", "--lr-scheduler", "constant")
HYBRID = Variant("hybrid (bound weight 0.001)", ("--vlb-weight", "0.001"), ddpm_variance="learned_range")

EXPERIMENTS = {
    "hybrid": Experiment(
        "keyframes", "show-1-base", MICRO / "show-1-base", "unet-keyframes.json",
        (*KEYFRAME_TRAINING, "--prediction-type", "epsilon"),
        (HYBRID, Variant("epsilon MSE alone", ("--vlb-weight", "0")))),
    # The same comparison under the shipped keyframe model's first phase (velocity, half the draws from t >= 900),
    # which draws the world after a few hundred steps where the noise-predicting model is still at chance.
    "hybrid-velocity": Experiment(
        "keyframes", "show-1-base", MICRO / "show-1-base", "unet-keyframes.json",
        (*KEYFRAME_TRAINING, "--prediction-type", "v_prediction", "--late-timesteps", "0.5", "900"),
        (HYBRID, Variant("velocity MSE alone", ("--vlb-weight", "0")))),
    "sr2-range": Experiment(
        "sr2", "show-1-sr2", MICRO / "show-1-sr2", "unet-sr2.json",
        ("--batch-size", "4", "--lr", "6e-4", "--warmup", "50", "--lr-scheduler", "cosine", "--crop", "128x128"),
        (Variant("t in [0, 900)", ("--timestep-range", "0", "900")),
         Variant("t in [0, 1000)", ("--timestep-range", "0", "1000")))),
    "sr1-noise-aug": Experiment(
        "sr1", "show-1-sr1", MICRO / "show-1-sr1", "unet-sr1.json",
        ("--batch-size", "4", "--lr", "6e-4", "--warmup", "50", "--lr-scheduler", "cosine", "--crop", "32x48",
         "--prediction-type", "v_prediction", "--text-encoder", str(MICRO / "show-1-base")),
        (Variant("noise augmentation 0-500", ("--noise-aug-range", "0", "500")),
         Variant("none (level 0)", ("--noise-aug-range", "0", "0"), ("sr1.noise_level=0",)),
         Variant("noise augmentation 0-500, applied at level 0", ("--noise-aug-range", "0", "500"), ("sr1.noise_level=0",)))),
}


def train_all(experiment: Experiment, data: Path, work: Path, steps: int, seeds: int, jobs: int) -> dict[tuple[str, int], Path]:
    if not (data / "captions.jsonl").is_file():
        preset = load_preset("micro")
        write_dataset(data, height=preset.sr2.height, width=preset.sr2.width, per_combination=2, seed=7)
    # Variants that differ only in how they are applied share their trainings.
    trainings: dict[tuple[str, ...], int] = {}
    for variant in experiment.variants:
        trainings.setdefault(variant.train, len(trainings))
    outputs = {(variant.name, seed): work / f"{experiment.stage}-{trainings[variant.train]}-seed{seed}"
               for variant in experiment.variants for seed in range(1, seeds + 1)}
    runs = {outputs[(variant.name, seed)]: (variant, seed) for variant in experiment.variants for seed in range(1, seeds + 1)}

    def train(out: Path) -> None:
        variant, seed = runs[out]
        if (out / "model_index.json").is_file():
            return
        command = [sys.executable, "-m", "show1_cli", "train", experiment.stage, "--data", str(data), "--init", str(experiment.init),
                   "--config", str(CONFIGS / experiment.config), "--out", str(out), "--preset", "micro", "--ema", "--json",
                   "--checkpoint-every", "50", "--steps", str(steps), "--seed", str(seed), *experiment.train, *variant.train]
        checkpoint = out.with_name(out.name + ".train") / "checkpoint.pt"
        if checkpoint.is_file():
            command += ["--resume", str(checkpoint)]
        print(f"training {experiment.stage} '{variant.name}' seed {seed} -> {out}", flush=True)
        with out.with_name(out.name + ".log").open("a", encoding="utf-8") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT,
                           env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(train, runs))
    return outputs


def weights_folder(trained: Path, component: str, work: Path) -> Path:
    """A micro cascade folder with `trained` in place of `component`, and its lock."""
    folder = work / f"weights-{trained.name}"
    if not (folder / "weights.lock").is_file():
        folder.mkdir(exist_ok=True)
        for source in MICRO.iterdir():
            if source.is_dir() and not (folder / source.name).exists():
                (folder / source.name).symlink_to(trained.resolve() if source.name == component else source)
        write_micro_lock(folder)
    return folder


def with_ddpm_sampler(trained: Path, variance_type: str) -> Path:
    """A copy of the trained component folder that samples with ancestral DDPM on its own betas, prediction
    type and thresholding, with `variance_type`."""
    copy = trained.with_name(f"{trained.name}-ddpm-{variance_type}")
    config_file = copy / "scheduler" / "scheduler_config.json"
    if not config_file.is_file() or json.loads(config_file.read_text(encoding="utf-8"))["_class_name"] != "DDPMScheduler":
        shutil.copytree(trained, copy, dirs_exist_ok=True)
        config = json.loads(config_file.read_text(encoding="utf-8"))
        accepted = inspect.signature(diffusers.DDPMScheduler.__init__).parameters
        ddpm = {key: value for key, value in config.items() if key in accepted} | {"variance_type": variance_type}
        config_file.write_text(json.dumps({"_class_name": "DDPMScheduler", **ddpm}, indent=2), encoding="utf-8")
    return copy


def evaluation_clips() -> list[tuple[str, torch.Tensor]]:
    """(caption, clip at the sr2 size, FRAMES frames) for CLIPS_PER_GROUP held-in and held-out combinations."""
    preset, rng = load_preset("micro"), random.Random(11)
    clips = []
    for held_out in (False, True):
        for combination in rng.sample(all_combinations(held_out), CLIPS_PER_GROUP):
            scene = random_scene(rng, *combination, preset.sr2.width / preset.sr2.height)
            clip = render(scene, 29, preset.sr2.height, preset.sr2.width)[::4][:FRAMES]
            clips.append((scene.caption(), clip))
    return clips


def stage2_artefacts(video: torch.Tensor, generator: torch.Generator, strength: int = 1) -> torch.Tensor:
    """What a stage-2 output carries over the true frames: blur (`strength` passes of a 3x3 binomial filter),
    noise (standard deviation 0.04 x `strength`) and shifts per frame (up to `strength`/2 pixels)."""
    blur = torch.tensor([0.25, 0.5, 0.25])
    kernel = (blur[:, None] * blur[None, :]).expand(3, 1, 3, 3)
    blurred = video
    for _ in range(strength):
        blurred = F.conv2d(F.pad(blurred, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    shifts = (torch.rand(video.shape[0], 2, generator=generator) - 0.5) * 2 * strength / torch.tensor(video.shape[-1:-3:-1])
    theta = torch.cat([torch.eye(2).expand(video.shape[0], 2, 2), shifts[:, :, None]], dim=2)
    grid = F.affine_grid(theta, list(video.shape), align_corners=False)
    shifted = F.grid_sample(blurred, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (shifted + 0.04 * strength * torch.randn(video.shape, generator=generator)).clamp(-1, 1)


def colour_distance(videos: list[torch.Tensor], truths: list[torch.Tensor]) -> float:
    """Total variation distance (0 to 1) between the colour histograms (8 levels per channel) of two sets of videos."""

    def histogram(group: list[torch.Tensor]) -> torch.Tensor:
        levels = torch.cat([((video.clamp(-1, 1) + 1) * 3.999).long().transpose(0, 1).reshape(3, -1) for video in group], dim=1)
        counts = torch.bincount(levels[0] * 64 + levels[1] * 8 + levels[2], minlength=512).float()
        return counts / counts.sum()

    return float((histogram(videos) - histogram(truths)).abs().sum() / 2)


def apply(weights: Path, stage: str, inputs: list[tuple[str, torch.Tensor | None]], overrides: list[str], work: Path) -> list[torch.Tensor]:
    """`stage` of the cascade in `weights` on each (caption, input video or None for keyframes), as the CLI runs it."""
    os.environ["SHOW1_WEIGHTS_LOCK"] = str(weights / "weights.lock")
    # The folder and its lock, through the code the hub weights go through.
    preset = dataclasses.replace(load_preset("micro", overrides, [stage]), weights="hub")
    chain = Chain(resolve_runtime("cpu", "fp32", "none"), weights, options={"first_frame": "none"}, show_progress=False)
    jobs = [Job(caption, 0, work / f"applied-{index}.mkv", preset, video=video, fps=None if video is None else preset.fps, lossless=True)
            for index, (caption, video) in enumerate(inputs)]
    chain.run(jobs, overwrite=True)
    return [read_video(job.output).frames for job in jobs]


def single_threaded() -> None:
    torch.set_num_threads(1)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def measure_sr2(weights: Path, variant: Variant, clips: list[tuple[str, torch.Tensor]], work: Path) -> dict[str, float]:
    preset = load_preset("micro")
    inputs = [(caption, F.interpolate(clip, size=(preset.sr1.height, preset.sr1.width), mode="area")) for caption, clip in clips]
    figures = {}
    for strength in (0.8, 0.6):
        outputs = apply(weights, "sr2", inputs, [f"sr2.strength={strength}", *variant.sample], work)
        figures[f"psnr_db_strength_{strength}"] = mean([psnr(output, clip) for output, (_, clip) in zip(outputs, clips, strict=True)])
        figures[f"accuracy_strength_{strength}"] = accuracy(outputs, [caption for caption, _ in clips])
    return figures


def measure_sr1(weights: Path, variant: Variant, clips: list[tuple[str, torch.Tensor]], work: Path) -> dict[str, float]:
    preset = load_preset("micro")
    truths = [F.interpolate(clip, size=(preset.sr1.height, preset.sr1.width), mode="area") for _, clip in clips]
    low = [F.interpolate(truth, size=(preset.keyframes.height, preset.keyframes.width), mode="area") for truth in truths]
    generator = torch.Generator().manual_seed(3)
    figures = {}
    conditions = {"clean_input": low, "stage2_artefacts": [stage2_artefacts(video, generator) for video in low],
                  "stage2_artefacts_x2": [stage2_artefacts(video, generator, strength=2) for video in low]}
    for name, videos in conditions.items():
        inputs = [(caption, video) for (caption, _), video in zip(clips, videos, strict=True)]
        outputs = apply(weights, "sr1", inputs, list(variant.sample), work)
        figures[f"psnr_db_{name}"] = mean([psnr(output, truth) for output, truth in zip(outputs, truths, strict=True)])
    return figures


def variational_bound_bits(trained: Path, captions: list[str], truths: list[torch.Tensor]) -> dict[str, float]:
    """The variational bound on the true clips' negative log-likelihood under the trained keyframe model, in bits
    per dimension, with the variance its channels give (learned range) and with each fixed choice (the posterior
    variance, and beta). Estimated at one timestep drawn from each of BOUND_STRATA equal strata of [0, T), with
    the same timesteps and noise for every model; the prior term is left out (no model changes it)."""
    from show1_cli.models.loading import load_unet
    from show1_cli.runtime import ModelStore
    from show1_cli.text import encode_texts
    from show1_cli.training.losses import DiffusionTerms, variational_bound

    unet = load_unet(trained)
    scheduler = diffusers.DDPMScheduler.from_pretrained(trained, subfolder="scheduler")
    terms = DiffusionTerms.from_scheduler(scheduler)
    states = encode_texts(captions, ModelStore(resolve_runtime("cpu", "fp32")), trained)
    text = torch.cat([states[caption] for caption in captions]).float()
    x0 = torch.stack([truth.transpose(0, 1) for truth in truths])  # (clips, 3, frames, height, width)
    generator = torch.Generator().manual_seed(0)
    width = terms.num_timesteps // BOUND_STRATA
    totals = {"learned_range": 0.0, "fixed_small": 0.0, "fixed_large": 0.0}
    with torch.no_grad():
        for stratum in range(BOUND_STRATA):
            t = torch.full((len(truths),), stratum * width + int(torch.randint(width, (1,), generator=generator)))
            noise = torch.randn(x0.shape, generator=generator)
            xt = scheduler.add_noise(x0, noise, t)
            output = unet(xt, t, encoder_hidden_states=text).sample
            epsilon = terms.epsilon(output[:, :3], xt, t, scheduler.config.prediction_type)
            for name, values in (("learned_range", output[:, 3:]), ("fixed_small", torch.full_like(xt, -1.0)),
                                 ("fixed_large", torch.ones_like(xt))):
                totals[name] += width * float(variational_bound(terms, x0, xt, t, epsilon, values).mean())
    return {f"bound_bits_per_dim_{name}": total for name, total in totals.items()}


def measure_keyframes(weights: Path, variant: Variant, clips: list[tuple[str, torch.Tensor]], work: Path) -> dict[str, float]:
    preset = load_preset("micro")
    truths = [F.interpolate(clip, size=(preset.keyframes.height, preset.keyframes.width), mode="area") for _, clip in clips]
    captions = [caption for caption, _ in clips]
    trained = (weights / "show-1-base").resolve()
    figures = variational_bound_bits(trained, captions, truths)
    ddpm = with_ddpm_sampler(trained, variant.ddpm_variance)
    samplers = {"dpm_solver": weights, "ddpm": weights_folder(ddpm, "show-1-base", work)}
    for sampler, folder in samplers.items():
        for steps in (25, 75):
            settings = [f"keyframes.steps={steps}", *variant.sample]
            outputs = apply(folder, "keyframes", [(caption, None) for caption in captions], settings, work)
            figures[f"accuracy_{sampler}_{steps}_steps"] = accuracy(outputs, captions)
            figures[f"colour_distance_{sampler}_{steps}_steps"] = colour_distance(outputs, truths)
    return figures


MEASURES = {"sr2": measure_sr2, "sr1": measure_sr1, "keyframes": measure_keyframes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="trainings (then measurements) at once, one CPU thread each")
    parser.add_argument("--work", type=Path, default=REPO / ".loss-design")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    experiment = EXPERIMENTS[args.experiment]
    work = args.work / args.experiment
    work.mkdir(parents=True, exist_ok=True)

    trained = train_all(experiment, args.work / "data", work, args.steps, args.seeds, args.jobs)
    clips = evaluation_clips()
    seeds = range(1, args.seeds + 1)
    tasks = [(variant, weights_folder(trained[(variant.name, seed)], experiment.component, work), work / f"measure-{index}-seed{seed}")
             for index, variant in enumerate(experiment.variants) for seed in seeds]
    for *_, scratch in tasks:
        scratch.mkdir(exist_ok=True)
    # Measured in --jobs processes of one thread each, like the trainings.
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=single_threaded) as pool:
        futures = [pool.submit(MEASURES[experiment.stage], weights, variant, clips, scratch) for variant, weights, scratch in tasks]
        measured = [future.result() for future in futures]
    per_seed: dict[str, dict[str, list[float]]] = {variant.name: {} for variant in experiment.variants}
    for (variant, *_), values in zip(tasks, measured, strict=True):
        for key, value in values.items():
            per_seed[variant.name].setdefault(key, []).append(value)
    rows: dict[str, dict] = {}
    for variant in experiment.variants:
        rows[variant.name] = {key: {"mean": mean(values), "per_seed": values} for key, values in per_seed[variant.name].items()}
        print(f"{variant.name:<28} " + "  ".join(f"{key} {value['mean']:.3f}" for key, value in rows[variant.name].items()), flush=True)

    results = {"experiment": args.experiment, "steps": args.steps, "seeds": args.seeds, "clips": len(clips),
               "training": " ".join(experiment.train), "rows": rows}
    write_report(args.output or REPO / "benchmarks" / "results" / f"loss_design-{args.experiment}.json", results)
    return 0 if all(math.isfinite(value["mean"]) for row in rows.values() for value in row.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
