"""`show1 finetune-motion`: teach the keyframe model the motion of a reference clip.

Reads the clip, picks `--frames` frames spread over it at the preset's keyframe size, encodes the prompt
(and the validation prompt) once and drops the text encoder, then trains the temporal-attention
parameters of show-1-base (show1_cli/finetune/train.py; losses: docs/losses.md) and writes only those
as a motion adapter (show1_cli/finetune/adapter.py), which `show1 generate --motion` applies.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from show1_cli.choices import MOTION_INITS, TRAINABLE_SETS
from show1_cli.cli.app import (
    DebugOption,
    DeviceOption,
    DtypeOption,
    OverwriteOption,
    PresetOption,
    QuietOption,
    SeedOption,
    SetOption,
    WeightsDirOption,
    app,
    command,
    err_console,
)
from show1_cli.errors import InputError
from show1_cli.progress import TrainingProgress, format_bytes, plural

# The options `show1 generate` takes to apply a motion adapter (see `motion_options`).
MotionOption = Annotated[
    Path | None,
    typer.Option("--motion", metavar="ADAPTER", help="Apply a motion adapter from `show1 finetune-motion` to the keyframe model.",
                 dir_okay=False),
]
MotionScaleOption = Annotated[
    float, typer.Option("--motion-scale", help="With --motion: 0 = base model, 1 = fine-tuned, in between blends the weights.")
]
MotionInitOption = Annotated[
    Literal[MOTION_INITS],
    typer.Option("--motion-init", help="With --motion: noise (fresh start noise) or inversion (start from the DDIM inversion of "
                 "the adapter's reference clip, as VMC does)."),
]
NoisePriorOption = Annotated[
    float,
    typer.Option("--noise-prior", help="With --motion-init inversion: start from sqrt(P) * inverted + sqrt(1 - P) * fresh noise."),
]


def motion_options(motion: Path | None, scale: float, init: str, prior: float) -> dict[str, Any]:
    """Check `generate`'s motion options before any model loads; the stage options they become."""
    if motion is None:
        if init != "noise":
            raise InputError(f"--motion-init {init} needs a motion adapter", "add --motion ADAPTER.safetensors")
        return {}
    from show1_cli.finetune.adapter import check_scale, read_motion_adapter
    from show1_cli.finetune.inversion import check_noise_prior

    check_scale(scale)
    check_noise_prior(prior)
    read_motion_adapter(motion)
    return {"motion": str(motion), "motion_scale": scale, "motion_init": init, "noise_prior": prior}


def _checkpoint_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.checkpoint.pt")


def _validation_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}.validate-{step:05d}.mp4")


@app.command("finetune-motion")
@command
def finetune_motion(
    reference: Annotated[Path, typer.Argument(metavar="REF", help="The reference clip whose motion to learn (.mp4, .mkv, ...).")],
    prompt: Annotated[str, typer.Option("--prompt", help="What the clip shows, e.g. \"a car is moving\".")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The motion adapter to write (.safetensors).", dir_okay=False)],
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps.")] = 400,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="AdamW learning rate.")] = 1e-4,
    frames: Annotated[int, typer.Option("--frames", min=2, help="Frames sampled evenly from the clip.")] = 8,
    loss: Annotated[
        str, typer.Option("--loss", help="debiased (default), motion, mse, or a weighted sum such as motion+0.1*mse. See docs/losses.md.")
    ] = "debiased",
    train: Annotated[
        Literal[TRAINABLE_SETS],
        typer.Option(
            "--train",
            help="What to train: qkv (query/key/value of the temporal attentions, default), attention (all of the "
            "temporal attentions) or temporal (every temporal layer).",
        ),
    ] = "qkv",
    seed: SeedOption = None,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", min=0, help="Save a resumable checkpoint (OUTPUT.checkpoint.pt) every N steps; 0: never.")
    ] = 0,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue from a checkpoint written by --checkpoint-every.", dir_okay=False)
    ] = None,
    validate: Annotated[
        str | None,
        typer.Option("--validate", help="Render this prompt's keyframes every --validate-every steps (OUTPUT.validate-NNNNN.mp4)."),
    ] = None,
    validate_every: Annotated[int, typer.Option("--validate-every", min=1, help="Steps between validation videos.")] = 100,
    preset: PresetOption = "default",
    set_: SetOption = None,
    weights_dir: WeightsDirOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Teach the keyframe model the motion of a reference clip; writes a motion adapter for `generate --motion`.

    Only the temporal attention of show-1-base is trained (--train); the clip is sampled to --frames frames at
    the preset's keyframe size. The adapter records its base model, loss, steps and prompt in its metadata.

    Examples:

      show1 finetune-motion dog.mp4 --prompt "a dog is running" -o running.safetensors --seed 1

      show1 finetune-motion car.mp4 --prompt "a car is moving" -o car.safetensors --checkpoint-every 100 --validate "a bus is moving"

      show1 generate "a tiger is running" -o tiger.mp4 --motion running.safetensors --motion-scale 0.8
    """
    import torch

    from show1_cli.finetune.adapter import BASE_COMPONENT, adapter_metadata, ensure_adapter_writable, save_motion_adapter
    from show1_cli.finetune.inversion import file_sha256
    from show1_cli.finetune.train import TrainSettings, noise_scheduler_from_config, sample_frames, train_motion
    from show1_cli.models import load_unet
    from show1_cli.presets import load_preset
    from show1_cli.runtime import ModelStore, resolve_runtime
    from show1_cli.stages.keyframes import generate_keyframes
    from show1_cli.stages.sampling import load_scheduler
    from show1_cli.text import encode_texts
    from show1_cli.training.loop import read_checkpoint
    from show1_cli.training.losses import parse_loss
    from show1_cli.video import ensure_writable, read_video, write_video
    from show1_cli.weights import weight_source, weights_dir_from_env

    # Everything a user can get wrong is checked before any model loads.
    loss_spec = parse_loss(loss)
    ensure_adapter_writable(output, overwrite)
    settings_preset = load_preset(preset, set_ or ())
    size = settings_preset.keyframes
    clip = read_video(reference)
    clip_frames = sample_frames(clip.frames, frames, size.height, size.width)
    reference_hash = file_sha256(reference)
    checkpoint = read_checkpoint(resume) if resume is not None else None
    first_step = int(checkpoint["step"]) if checkpoint is not None else 0
    if validate is not None:
        for step in (*range(validate_every, steps + 1, validate_every), steps):
            if step > first_step:
                ensure_writable(_validation_path(output, step), overwrite)
    if checkpoint is not None:
        saved_seed = int(checkpoint["config"]["seed"])
        if seed is not None and seed != saved_seed:
            raise InputError(f"--seed {seed} differs from the checkpoint's {saved_seed}", "omit --seed when resuming")
        seed = saved_seed
    if seed is None:
        seed = secrets.randbelow(2**31)
    settings = TrainSettings(steps=steps, lr=lr, loss=loss_spec, parameter_set=train, seed=seed, checkpoint_every=checkpoint_every)
    identity = {"reference_sha256": reference_hash, "prompt": prompt, "frames": frames, "height": size.height, "width": size.width}

    runtime = resolve_runtime(device, dtype, offload="none")
    if runtime.device.type == "cpu" and runtime.dtype != torch.float32:
        raise InputError("training on the CPU runs in fp32", "use --dtype fp32 (or auto) with --device cpu")
    models = ModelStore(runtime)
    weights = weight_source(settings_preset.weights, weights_dir_from_env(weights_dir))
    base = weights.lock()[BASE_COMPONENT]
    root = weights.resolve(BASE_COMPONENT)

    texts = [prompt] + ([validate, size.negative_prompt] if validate is not None else [])
    embeddings = encode_texts(texts, models, root)  # the text encoder is dropped from memory on return
    with open(root / "scheduler" / "scheduler_config.json", encoding="utf-8") as handle:
        scheduler_config = json.load(handle)
    unet = load_unet(root, torch_dtype=runtime.dtype, device=runtime.device)
    mixed_precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(runtime.dtype, "no")

    def render(step: int, model: torch.nn.Module) -> None:
        video = generate_keyframes(
            model,
            load_scheduler(root),
            prompt_embeds=embeddings[validate],
            negative_embeds=embeddings[size.negative_prompt],
            frames=size.frames,
            height=size.height,
            width=size.width,
            steps=size.steps,
            guidance_scale=size.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(seed),
            device=runtime.device,
            dtype=next(model.parameters()).dtype,
        )
        metadata = {"prompt": validate, "seed": str(seed), "motion_step": str(step)}
        path = write_video(_validation_path(output, step), video, settings_preset.fps, metadata, overwrite=overwrite)
        err_console.print(f"step {step}: validation video {path}")

    started = time.perf_counter()
    runtime.reset_peak_memory()
    with TrainingProgress(steps, show=not quiet) as progress:
        result = train_motion(
            unet,
            noise_scheduler_from_config(scheduler_config),
            clip_frames,
            embeddings[prompt],
            settings,
            mixed_precision=mixed_precision,
            identity=identity,
            resume=resume,
            checkpoint_path=_checkpoint_path(output),
            on_step=lambda info: progress.update(info.step, info.loss),
            on_validate=render if validate is not None else None,
            validate_every=validate_every if validate is not None else 0,
        )
    if validate is not None and steps % validate_every:
        render(steps, result.model)  # the last step always gets a validation video
    seconds = time.perf_counter() - started
    metadata = adapter_metadata(
        base,
        parameter_set=train,
        loss=str(loss_spec),
        steps=steps,
        lr=lr,
        seed=seed,
        prompt=prompt,
        frames=frames,
        height=size.height,
        width=size.width,
        reference=reference,
        reference_sha256=reference_hash,
    )
    save_motion_adapter(output, result.parameters, metadata, overwrite=overwrite)
    if not quiet:
        ran = steps - first_step
        err_console.print(
            f"[green]wrote[/] {output} ({len(result.parameters)} tensors, {train}, loss {loss_spec}, seed {seed}); "
            f"{plural(ran, 'step')} in {seconds:.1f} s ({seconds / max(ran, 1):.2f} s/step), peak memory "
            f"{format_bytes(runtime.peak_memory_bytes())}"
        )
