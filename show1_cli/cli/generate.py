"""`show1 generate`: one prompt, or a prompts file, through the preset's stages."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from show1_cli.cli.app import (
    CleanPromptOption,
    DebugOption,
    DeviceOption,
    DtypeOption,
    FirstFrameOption,
    JsonOption,
    KeepInputFramesOption,
    LosslessOption,
    OffloadOption,
    OverwriteOption,
    PresetOption,
    QuietOption,
    SeedOption,
    SetOption,
    WeightsDirOption,
    app,
    command,
    make_chain,
    report_run,
)
from show1_cli.cli.finetune import MotionInitOption, MotionOption, MotionScaleOption, NoisePriorOption, motion_options
from show1_cli.errors import InputError
from show1_cli.presets import PIXEL_STAGES, STAGES, Preset, direct_overrides, load_preset
from show1_cli.seeds import MAX_SEED, random_seed

logger = logging.getLogger("show1")

StepsOption = Annotated[
    list[str] | None,
    typer.Option("--steps", metavar="N|STAGE=N", help=f"Denoising steps of every pixel stage ({', '.join(PIXEL_STAGES)}), or of one "
                 "stage: --steps sr1=60 (repeatable)."),
]
GuidanceOption = Annotated[
    list[str] | None,
    typer.Option("--guidance-scale", metavar="X|STAGE=X", help="Classifier-free guidance of every pixel stage, or of one stage: "
                 "--guidance-scale keyframes=12 (repeatable)."),
]
StagesOption = Annotated[
    str | None,
    typer.Option("--stages", metavar="LIST", help=f"Comma-separated stages to run instead of the preset's ({', '.join(STAGES)})."),
]



def parse_stages(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


@app.command("generate")
@command
def generate(
    prompt: Annotated[str | None, typer.Argument(help="What the video shows. Not with --prompts.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output file (.mp4 or .mkv).", dir_okay=False)] = None,
    preset_name: PresetOption = "default",
    overrides: SetOption = None,
    stages: StagesOption = None,
    seed: SeedOption = None,
    negative_prompt: Annotated[
        str | None, typer.Option("--negative-prompt", metavar="TEXT", help="What the video should not show (every stage's).")
    ] = None,
    steps: StepsOption = None,
    guidance_scale: GuidanceOption = None,
    frames: Annotated[
        int | None,
        typer.Option("--frames", "--num-frames", metavar="N", help="Frames of the video; with interpolation 4K-3 (5, 9, ..., 29, ...)."),
    ] = None,
    width: Annotated[int | None, typer.Option("--width", metavar="PIXELS", help="Width of the video; the stage sizes follow.")] = None,
    height: Annotated[int | None, typer.Option("--height", metavar="PIXELS", help="Height of the video; the stage sizes follow.")] = None,
    fps: Annotated[float | None, typer.Option("--fps", metavar="RATE", help="Frame rate of the video.")] = None,
    num_videos: Annotated[
        int, typer.Option("--num-videos", min=1, help="Videos of the prompt, with seeds SEED, SEED+1, ... (models load once); "
                          "-o x.mp4 writes x-1.mp4, x-2.mp4, ...")
    ] = 1,
    prompts: Annotated[
        Path | None,
        typer.Option("--prompts", help="Batch: a file with one prompt per line, or JSON lines "
                     '{"prompt", "seed", "set", "output"}. Needs --out-dir.', dir_okay=False),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Batch: folder for the outputs; finished ones are skipped.", file_okay=False)
    ] = None,
    save_intermediates: Annotated[
        Path | None,
        typer.Option("--save-intermediates", metavar="DIR", help="Save each stage's output (lossless video + tensor) in DIR.",
                     file_okay=False),
    ] = None,
    from_stage: Annotated[
        str | None, typer.Option("--from-stage", metavar="NAME", help="With --resume: restart at this stage.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", metavar="DIR", help="Continue from the intermediates saved in DIR (after the last saved stage, "
                     "or at --from-stage).", file_okay=False),
    ] = None,
    keep_input_frames: KeepInputFramesOption = False,
    first_frame: FirstFrameOption = "auto",
    lossless: LosslessOption = False,
    motion: MotionOption = None,
    motion_scale: MotionScaleOption = 1.0,
    motion_init: MotionInitOption = "noise",
    noise_prior: NoisePriorOption = 1.0,
    clean_prompt: CleanPromptOption = False,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    offload: OffloadOption = "model",
    weights_dir: WeightsDirOption = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Generate a video from a text prompt with the preset's stages.

    Examples:

      show1 generate "a panda taking a selfie" -o panda.mp4 --seed 42

      show1 generate "a panda taking a selfie" -o keys.mp4 --stages keyframes

      show1 generate "a panda" -o panda.mp4 --save-intermediates run/   (then, after a crash:)
      show1 generate "a panda" -o panda.mp4 --resume run/

      show1 generate --prompts prompts.txt --out-dir videos/ --seed 7
    """
    from show1_cli.chain import Job, batch_jobs, read_prompts_file, resume_job
    from show1_cli.video import ensure_writable

    options = {"keep_input_frames": keep_input_frames, "first_frame": first_frame, "clean_prompt": clean_prompt,
               **motion_options(motion, motion_scale, motion_init, noise_prior)}
    stage_list = parse_stages(stages)
    overrides = with_direct_flags(preset_name, list(overrides or []), stage_list, negative_prompt=negative_prompt, steps=steps or (),
                                  guidance_scale=guidance_scale or (), frames=frames, width=width, height=height, fps=fps)
    if num_videos > 1 and (prompts is not None or resume is not None):
        raise InputError("--num-videos is for one PROMPT", "give a prompts file one line per video, or resume each video on its own")
    if prompts is not None:
        if prompt is not None or output is not None:
            raise InputError("--prompts replaces the PROMPT argument and -o", "give either PROMPT -o FILE, or --prompts FILE --out-dir DIR")
        if out_dir is None:
            raise InputError("--prompts needs --out-dir", "add --out-dir DIR for the outputs")
        if resume is not None or from_stage is not None:
            raise InputError("--resume works on one video, not a prompts file", "rerun the batch: finished outputs are skipped")
        out_dir.mkdir(parents=True, exist_ok=True)
        batch_seed = seed if seed is not None else random_seed()
        jobs = batch_jobs(read_prompts_file(prompts), out_dir, preset_name=preset_name, overrides=overrides,
                          stages=stage_list, batch_seed=batch_seed, save_intermediates=save_intermediates,
                          lossless=lossless)
        chain = make_chain(device, dtype, offload, weights_dir, options, show_progress=not quiet and not as_json)
        results = chain.run(jobs, overwrite=overwrite, skip_existing=True)
        for result in results:
            if result.skipped:
                if not quiet and not as_json:
                    logger.warning("skipped %s (exists; --overwrite redoes it)", result.output)
                continue
            report_run(result.output, result.job.seed, result.job.preset.name, result.reports, as_json=as_json, quiet=quiet,
                       extra={"prompt": result.job.prompt, "frames": result.frames, "size": list(result.size)})
        if as_json:
            for result in results:
                if result.skipped:
                    typer.echo(json.dumps({"output": str(result.output), "skipped": True}))
        return

    if out_dir is not None:
        raise InputError("--out-dir is for --prompts batches", "use -o FILE for a single video")
    if output is None:
        raise InputError("missing -o/--output", "add -o FILE.mp4")
    if from_stage is not None and resume is None:
        raise InputError("--from-stage needs --resume DIR", "add --resume with the folder given to --save-intermediates")
    preset = load_preset(preset_name, overrides, stage_list)
    if resume is None and preset.stages[0] != "keyframes":
        raise InputError(
            f"generate starts from a prompt, but stage {preset.stages[0]} needs an input video",
            "run `show1 interpolate` or `show1 upscale` on a video, or continue a saved run with --resume",
        )

    if resume is not None:
        jobs = [resume_job(resume, from_stage, prompt=prompt, seed=seed, output=output, preset=preset,
                           save_intermediates=save_intermediates, lossless=lossless)]
    else:
        if prompt is None or not prompt.strip():
            raise InputError("missing PROMPT", 'write show1 generate "what the video shows" -o out.mp4')
        first_seed = seed if seed is not None else random_seed()
        jobs = [Job(prompt, (first_seed + number) % (MAX_SEED + 1), path, preset, lossless=lossless,
                    save_intermediates=save_intermediates / path.stem if save_intermediates and num_videos > 1 else save_intermediates)
                for number, path in enumerate(numbered_outputs(output, num_videos))]
    for job in jobs:
        ensure_writable(job.output, overwrite)
    chain = make_chain(device, dtype, offload, weights_dir, options, show_progress=not quiet and not as_json)
    for result in chain.run(jobs, overwrite=overwrite):
        report_run(result.output, result.job.seed, preset.name, result.reports, as_json=as_json, quiet=quiet,
                   extra={"frames": result.frames, "size": list(result.size)})


def with_direct_flags(preset_name: str, overrides: list[str], stages: tuple[str, ...] | None, **flags) -> list[str]:
    """The --set overrides, then those the direct flags (--steps, --width, ...) stand for, which win by coming last."""
    preset: Preset = load_preset(preset_name, overrides, stages)
    return [*overrides, *direct_overrides(preset, **flags)]


def numbered_outputs(output: Path, count: int) -> list[Path]:
    """-o x.mp4 for one video; x-1.mp4, x-2.mp4, ... for several."""
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{number}{output.suffix}") for number in range(1, count + 1)]

