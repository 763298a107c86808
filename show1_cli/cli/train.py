"""`show1 train STAGE`: train or fine-tune one stage of the cascade on a folder of captioned clips."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from show1_cli import __version__
from show1_cli.cli.app import (
    DebugOption,
    JsonOption,
    OverwriteOption,
    PresetOption,
    QuietOption,
    SetOption,
    WeightsDirOption,
    app,
    command,
    err_console,
)
from show1_cli.errors import InputError
from show1_cli.presets import SIZE_MULTIPLE
from show1_cli.progress import TrainingProgress, plural

StageArgument = Annotated[str, typer.Argument(metavar="STAGE", help="keyframes, interpolate, sr1, sr2 or vae (the sr2 autoencoder).")]


def _size(text: str | None, flag: str) -> tuple[int, int] | None:
    if text is None:
        return None
    height, separator, width = text.lower().partition("x")
    if not separator or not height.isdigit() or not width.isdigit() or int(height) < 1 or int(width) < 1:
        raise InputError(f"{flag} {text!r} is not HEIGHTxWIDTH", f"write for example {flag} 48x64")
    return int(height), int(width)


def _range(values: tuple[int, int] | None, flag: str, default: tuple[int, int], *, inclusive: bool = False) -> tuple[int, int]:
    """A range of timesteps: LOW <= t < HIGH, or with `inclusive` LOW <= t <= HIGH (so that 0 0 is the level 0 alone)."""
    if values is None:
        return default
    low, high = values
    if not (0 <= low <= high <= 999 if inclusive else 0 <= low < high <= 1000):
        bounds = "0 <= LOW <= HIGH <= 999" if inclusive else "0 <= LOW < HIGH <= 1000"
        raise InputError(f"{flag} {low} {high} is not a range of timesteps {bounds}", f"write for example {flag} {default[0]} {default[1]}")
    return low, high


@app.command("train")
@command
def train(
    stage: StageArgument,
    data: Annotated[Path, typer.Option("--data", help="Folder with clips and captions.jsonl ({\"file\", \"caption\"} per line).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder, laid out like the stage's hub repository.")],
    init: Annotated[str, typer.Option("--init", metavar="COMPONENT|DIR",
                                      help="Start from this hub-layout folder or component (its other parts are copied to --out).")],
    config: Annotated[Path | None, typer.Option("--config", help="Train the UNet (or VAE) from scratch with this config.json.")] = None,
    preset_name: PresetOption = "default",
    overrides: SetOption = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per step and process.")] = 8,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Micro-batches accumulated per step.")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 1e-4,
    warmup: Annotated[int, typer.Option("--warmup", help="Linear learning-rate warm-up steps.")] = 0,
    lr_scheduler: Annotated[str, typer.Option("--lr-scheduler", help="After the warm-up: constant, or cosine or linear "
                                              "decay to 0 at the last step.")] = "constant",
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random choice of the run.")] = 0,
    mixed_precision: Annotated[str, typer.Option("--mixed-precision", help="no, fp16 (CUDA) or bf16.")] = "no",
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Trade compute for memory.")] = False,
    ema: Annotated[bool, typer.Option("--ema", help="Keep an exponential moving average of the weights and save it.")] = False,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Write a resumable checkpoint every N steps (0: never).")] = 0,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue from this checkpoint (OUT.train/checkpoint.pt).",
                                                dir_okay=False)] = None,
    validate: Annotated[str | None, typer.Option("--validate", metavar="PROMPT", help="Write a sample video for this prompt.")] = None,
    validate_every: Annotated[int, typer.Option("--validate-every", help="... every N steps (default: once, after the last step).")] = 0,
    text_encoder: Annotated[str, typer.Option("--text-encoder", metavar="COMPONENT|DIR",
                                              help="Pixel stages: where the frozen T5 comes from when --init has none.")] = "show-1-base",
    crop: Annotated[str | None, typer.Option("--crop", metavar="HxW", help="sr1, sr2, vae: train on random crops of this size.")] = None,
    frames: Annotated[int, typer.Option("--frames", help="sr1 and sr2: frames per training clip.")] = 8,
    vlb_weight: Annotated[float, typer.Option("--vlb-weight", help="Pixel stages: weight of the variational-bound term.")] = 1e-3,
    uncond_prob: Annotated[float, typer.Option("--uncond-prob", help="Share of examples trained without text (for guidance).")] = 0.1,
    noise_aug_range: Annotated[tuple[int, int] | None, typer.Option("--noise-aug-range", metavar="LOW HIGH",
                                                                    help="sr1: noise levels of the low-resolution input, both included "
                                                                         "[0 500]; 0 0: none.")] = None,
    anchor_prob: Annotated[float, typer.Option("--anchor-prob", help="sr1: share of examples whose first input frame is clean.")] = 0.5,
    timestep_range: Annotated[tuple[int, int] | None, typer.Option("--timestep-range", metavar="LOW HIGH",
                                                                   help="sr2: timesteps the expert trains on [0 900).")] = None,
    kl_weight: Annotated[float, typer.Option("--kl-weight", help="vae: weight of the KL term.")] = 1e-6,
    reconstruction_loss: Annotated[str, typer.Option("--reconstruction-loss", help="vae: l1 (the usual) or mse (the micro "
                                                     "cascade's; weighs wrong object colours over faint backgrounds).")] = "l1",
    colour_augment: Annotated[str | None, typer.Option("--colour-augment", help="vae: hues (turn each frame's colours by a random "
                                                       "angle about the gray axis) or channels (permute its RGB channels), so it "
                                                       "learns colours on backgrounds the data never pairs them with; jitter "
                                                       "(small turns of hue, saturation and lightness), so it passes on "
                                                       "colours near the palette.")] = None,
    late_timesteps: Annotated[tuple[float, int] | None, typer.Option(
        "--late-timesteps", metavar="SHARE FROM", help="Pixel stages: draw this share of the timesteps from [FROM, 1000) only, "
        "where samples are made from the prompt alone (e.g. 0.3 900); off as in Show-1. See docs/losses.md.")] = None,
    snr_gamma: Annotated[float | None, typer.Option("--snr-gamma", help="Min-SNR weighting of the noise MSE (e.g. 5); off as in "
                                                    "Show-1. See docs/losses.md.")] = None,
    prediction_type: Annotated[str | None, typer.Option(
        "--prediction-type", help="UNet stages: what the model predicts, epsilon (Show-1) or v_prediction (the velocity, which "
        "learns the prompt's colours and layout at the noisiest timesteps; the micro cascade's keyframes). Default: as the "
        "init's scheduler says. Written into the output's scheduler config. See docs/losses.md.")] = None,
    save_dtype: Annotated[str, typer.Option("--save-dtype", help="fp16 (as the hub checkpoints) or fp32.")] = "fp16",
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Train on the usable clips when some are bad.")] = False,
    weights_dir: WeightsDirOption = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Train or fine-tune one stage of the cascade on a folder of captioned clips.

    Sizes and frame counts come from the preset, exactly as the stage's inference uses them. Runs on
    Hugging Face accelerate: `accelerate launch --num_processes N show1 train ...` trains data-parallel.

    Examples:

      show1 train keyframes --data clips/ --init show-1-base --out my-base --steps 2000 --lr 1e-5 --ema

      show1 train sr1 --data clips/ --init show-1-sr1 --out my-sr1 --crop 80x128 --checkpoint-every 500

      show1 train sr2 --data clips/ --init show-1-sr2 --out my-sr2 --timestep-range 0 900

      show1 train vae --data clips/ --init show-1-sr2 --out my-vae --crop 128x128
    """
    import torch

    from show1_cli.presets import load_preset
    from show1_cli.training.data import load_dataset
    from show1_cli.training.loop import TrainConfig, make_accelerator
    from show1_cli.training.loop import train as run_training
    from show1_cli.training.losses import PREDICTION_TYPES, RECONSTRUCTION_LOSSES
    from show1_cli.training.objectives import COLOUR_AUGMENTS
    from show1_cli.training.output import SAVE_DTYPES, ensure_output_writable, write_output
    from show1_cli.training.stages import COMPONENT_OF, STAGES, StageOptions, needs, resolve_source, setup
    from show1_cli.video import write_video
    from show1_cli.weights import weights_dir_from_env

    # Everything a user can get wrong is checked before any model loads.
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}", f"train one of {', '.join(STAGES)}")
    if save_dtype not in SAVE_DTYPES:
        raise InputError(f"--save-dtype {save_dtype} is not fp16 or fp32", "use --save-dtype fp16")
    if resume is None:
        ensure_output_writable(out, overwrite)
    if validate is not None and validate_every < 1:
        validate_every = steps
    for name, value in (("--uncond-prob", uncond_prob), ("--anchor-prob", anchor_prob)):
        if not 0 <= value <= 1:
            raise InputError(f"{name} {value} is not a probability", f"use {name} between 0 and 1")
    options = StageOptions(
        vlb_weight=vlb_weight, uncond_probability=uncond_prob, crop=_size(crop, "--crop"), frames=frames,
        noise_levels=_range(noise_aug_range, "--noise-aug-range", (0, 500), inclusive=True), anchor_probability=anchor_prob,
        timestep_range=_range(timestep_range, "--timestep-range", (0, 900)), kl_weight=kl_weight,
        reconstruction_loss=reconstruction_loss, colour_augment=colour_augment, snr_gamma=snr_gamma,
        late_timesteps=late_timesteps, prediction_type=prediction_type,
    )
    if prediction_type not in (None, *PREDICTION_TYPES):
        raise InputError(f"--prediction-type {prediction_type} is unknown", f"use one of {', '.join(PREDICTION_TYPES)}")
    if colour_augment is not None and colour_augment not in COLOUR_AUGMENTS:
        raise InputError(f"--colour-augment {colour_augment} is unknown", f"use one of {', '.join(COLOUR_AUGMENTS)}")
    if colour_augment is not None and stage != "vae":
        raise InputError(f"--colour-augment is for the vae, not {stage}", "drop --colour-augment")
    if prediction_type is not None and stage == "vae":
        raise InputError("--prediction-type does not apply to the vae", "leave it out when training the vae")
    if reconstruction_loss not in RECONSTRUCTION_LOSSES:
        raise InputError(f"--reconstruction-loss {reconstruction_loss} is unknown", f"use one of {', '.join(RECONSTRUCTION_LOSSES)}")
    if late_timesteps is not None and not (0 < late_timesteps[0] <= 1 and 0 <= late_timesteps[1] < 1000):
        raise InputError(f"--late-timesteps {late_timesteps[0]} {late_timesteps[1]} needs a share in (0, 1] and a timestep in 0..999",
                         "write for example --late-timesteps 0.3 900")
    if snr_gamma is not None and not snr_gamma > 0:
        raise InputError(f"--snr-gamma {snr_gamma} must be positive", "use --snr-gamma 5, or leave it out")
    config_cli = TrainConfig(steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, warmup=warmup,
                             lr_scheduler=lr_scheduler, seed=seed, mixed_precision=mixed_precision, ema=ema)
    accelerator = make_accelerator(config_cli)
    preset = load_preset(preset_name, list(overrides or []))
    weights = weights_dir_from_env(weights_dir)
    init_dir = resolve_source(init, weights)
    has_text = (init_dir / "text_encoder").is_dir() and (init_dir / "tokenizer").is_dir()
    text_dir = init_dir if has_text or stage in ("sr2", "vae") else resolve_source(text_encoder, weights)

    dataset = load_dataset(data, needs(stage, preset, options), skip_bad=skip_bad)
    if options.crop is not None:
        _check_crop(stage, options.crop, preset)
    fingerprint = dataset.fingerprint()
    run = setup(stage, dataset, preset, init_dir, config_file=config, text_dir=text_dir, options=options, seed=seed)
    work = out.with_name(out.name + ".train")
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "checkpoint.pt"
    log_path = work / "log.jsonl"
    started = time.perf_counter()

    def on_validate(step: int, model: torch.nn.Module) -> None:
        with torch.no_grad():
            video = run.validate(model, validate, torch.Generator().manual_seed(seed))
        fps = preset.fps / 4 if stage == "keyframes" else preset.fps
        write_video(work / f"validate-{step:06d}.mp4", video, fps, {"prompt": validate, "step": step, "stage": stage}, overwrite=True)

    with TrainingProgress(steps, show=not quiet and not as_json) as progress, log_path.open("a", encoding="utf-8") as log:
        def on_step(info) -> None:
            record = {"step": info.step, "loss": round(info.loss, 6), "lr": info.lr, "seconds": round(time.perf_counter() - started, 2)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            if as_json:
                typer.echo(json.dumps(record))
            progress.update(info.step, info.loss)

        result = run_training(
            run.training_module, run.parameters, run.objective, config_cli, accelerator=accelerator, resume=resume,
            identity={"stage": stage, "dataset_sha256": fingerprint, "init": str(init), "config": str(config),
                      "options": dataclasses.asdict(options)},
            checkpoint_path=checkpoint, checkpoint_every=checkpoint_every, on_step=on_step,
            on_validate=on_validate if validate is not None else None, validate_every=validate_every,
            gradient_checkpointing=gradient_checkpointing,
        )
    if not accelerator.is_main_process:
        return
    tail = result.losses[-min(len(result.losses), 50):]
    provenance = {
        "stage": stage, "component": COMPONENT_OF[stage], "init": str(init), "config": str(config) if config else None,
        "dataset": str(data), "dataset_sha256": fingerprint, "clips": len(dataset), "steps": steps,
        "batch_size": batch_size * accelerator.num_processes * grad_accum, "lr": lr, "warmup": warmup,
        "lr_scheduler": lr_scheduler, "seed": seed, "ema": ema, "loss": sum(tail) / len(tail), "preset": preset.name,
        "options": dataclasses.asdict(options), "show1_version": __version__,
    }
    write_output(out, init_dir, run.subfolder, run.config, run.model, provenance, dtype=SAVE_DTYPES[save_dtype], overwrite=True,
                 scheduler_updates=run.scheduler_updates)
    summary = {"output": str(out), "stage": stage, "steps": steps, "loss": provenance["loss"],
               "seconds": round(time.perf_counter() - started, 1)}
    if as_json:
        typer.echo(json.dumps(summary))
    elif not quiet:
        err_console.print(f"[green]wrote[/] {out} ({stage}, {plural(steps, 'step')}, final loss {provenance['loss']:.4f})")


VAE_DOWNSCALE = 8  # the autoencoder's latents are 8x smaller than its frames


def _check_crop(stage: str, crop: tuple[int, int], preset) -> None:
    if stage not in ("sr1", "sr2", "vae"):
        raise InputError(f"--crop is for sr1, sr2 and vae, not {stage}", "drop --crop")
    height, width = (preset.sr1.height, preset.sr1.width) if stage == "sr1" else (preset.sr2.height, preset.sr2.width)
    multiple = SIZE_MULTIPLE.get(stage, VAE_DOWNSCALE)
    crop_h, crop_w = crop
    if crop_h > height or crop_w > width or crop_h % multiple or crop_w % multiple:
        raise InputError(f"--crop {crop_h}x{crop_w} must fit in {height}x{width} and be a multiple of {multiple}",
                         f"use for example --crop {min(height, 4 * multiple)}x{min(width, 4 * multiple)}")
