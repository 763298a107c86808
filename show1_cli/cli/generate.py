"""`show1 generate`: one prompt, or a prompts file, through the preset's stages."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from show1_cli.choices import OUTPUT_FORMATS
from show1_cli.cli.app import (
    CleanPromptOption,
    CompileOption,
    DebugOption,
    DeviceOption,
    DtypeOption,
    FirstFrameOption,
    JsonOption,
    KeepInputFramesOption,
    LosslessOption,
    MaxMemoryOption,
    NoMetadataOption,
    OffloadOption,
    OverwriteOption,
    PresetOption,
    QuietOption,
    SchedulerOption,
    SeedOption,
    SetOption,
    WeightsDirOption,
    app,
    command,
    err_console,
    make_chain,
    report_run,
)
from show1_cli.cli.finetune import MotionInitOption, MotionOption, MotionScaleOption, NoisePriorOption, motion_options
from show1_cli.errors import InputError, Show1Error
from show1_cli.presets import PIXEL_STAGES, STAGES, Preset, direct_overrides, load_preset
from show1_cli.seeds import MAX_SEED, random_seed

if TYPE_CHECKING:
    from show1_cli.batch import Processes, Shard, Summary
    from show1_cli.chain import Chain, Job, PromptItem

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
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help=f"Output: {OUTPUT_FORMATS}.")] = None,
    preset_name: PresetOption = "default",
    overrides: SetOption = None,
    stages: StagesOption = None,
    seed: SeedOption = None,
    negative_prompt: Annotated[
        str | None, typer.Option("--negative-prompt", metavar="TEXT", help="What the video should not show (every stage's).")
    ] = None,
    steps: StepsOption = None,
    guidance_scale: GuidanceOption = None,
    scheduler: SchedulerOption = None,
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
    shard: Annotated[
        str | None,
        typer.Option("--shard", metavar="K/N", help="Batch: run only shard K (0-based) of N, e.g. one task of a SLURM array. "
                     "Under torchrun each process also takes its share."),
    ] = None,
    recorded: Annotated[
        Path | None,
        typer.Option("--from", metavar="VIDEO_OR_JSON", help="Make a recorded video again: prompt, seed, settings and stages from "
                     "its record; PROMPT, --seed, --set and --stages change them.", dir_okay=False),
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
    offload: OffloadOption = "auto",
    max_memory: MaxMemoryOption = None,
    compile: CompileOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the memory plan (offload per stage, predicted peaks, what --compile compiles) and "
                           "exit without loading models.")
    ] = False,
    weights_dir: WeightsDirOption = None,
    no_metadata: NoMetadataOption = False,
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

      torchrun --nproc-per-node 4 -m show1_cli generate --prompts prompts.txt --out-dir videos/ --seed 7

      show1 generate --from videos/0001-a-cat.mp4 -o again.mp4 --set sr1.steps=50

      show1 generate "a panda taking a selfie" -o quick.mp4 --scheduler unipc --steps 25
    """
    from show1_cli.batch import launched_processes, parse_shard
    from show1_cli.chain import Job, read_prompts_file, resume_job
    from show1_cli.video import ensure_writable

    if recorded is not None:
        from show1_cli.record import read_recipe

        if prompts is not None or resume is not None:
            raise InputError("--from remakes one recorded video", "drop --prompts/--resume, or drop --from")
        recipe = read_recipe(recorded)
        prompt = prompt if prompt is not None else recipe.prompt
        seed = seed if seed is not None else recipe.seed
        preset_name, overrides = recipe.preset, [*recipe.overrides, *(overrides or [])]
        stages = stages or ",".join(recipe.stages)
        first_frame, keep_input_frames, clean_prompt = recipe.first_frame, recipe.keep_input_frames, recipe.clean_prompt
        motion, motion_scale, motion_init, noise_prior = recipe.motion, recipe.motion_scale, recipe.motion_init, recipe.noise_prior
        lossless = lossless or recipe.lossless
    options = {"keep_input_frames": keep_input_frames, "first_frame": first_frame, "clean_prompt": clean_prompt,
               **motion_options(motion, motion_scale, motion_init, noise_prior)}
    stage_list = parse_stages(stages)
    overrides = with_direct_flags(preset_name, list(overrides or []), stage_list, negative_prompt=negative_prompt, steps=steps or (),
                                  guidance_scale=guidance_scale or (), scheduler=scheduler or (), frames=frames, width=width,
                                  height=height, fps=fps)
    if num_videos > 1 and (prompts is not None or resume is not None):
        raise InputError("--num-videos is for one PROMPT", "give a prompts file one line per video, or resume each video on its own")
    if prompts is not None:
        if prompt is not None or output is not None:
            raise InputError("--prompts replaces the PROMPT argument and -o", "give either PROMPT -o FILE, or --prompts FILE --out-dir DIR")
        if out_dir is None:
            raise InputError("--prompts needs --out-dir", "add --out-dir DIR for the outputs")
        if dry_run:
            raise InputError("--dry-run plans one video", "give PROMPT -o FILE with the batch's settings")
        if resume is not None or from_stage is not None:
            raise InputError("--resume works on one video, not a prompts file", "rerun the batch: finished outputs are skipped")
        shard_slot = parse_shard(shard)
        items = read_prompts_file(prompts)
        processes = launched_processes()
        chain = make_chain(processes.device(device), dtype, offload, weights_dir, options, show_progress=not quiet and not as_json,
                           metadata=not no_metadata, max_memory=max_memory, compile=compile)
        run_batch(chain, processes, items, out_dir, shard=shard_slot, preset_name=preset_name, overrides=overrides,
                  stages=stage_list, seed=seed, save_intermediates=save_intermediates, lossless=lossless, overwrite=overwrite,
                  quiet=quiet, as_json=as_json)
        return

    if shard is not None:
        raise InputError("--shard splits a --prompts batch", "add --prompts FILE --out-dir DIR, or drop --shard")

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
    if dry_run:
        print_memory_plan(jobs[0], device, dtype, offload, max_memory, options, compile)
        return
    chain = make_chain(device, dtype, offload, weights_dir, options, show_progress=not quiet and not as_json, metadata=not no_metadata,
                       max_memory=max_memory, compile=compile)
    for result in chain.run(jobs, overwrite=overwrite):
        report_run(result.output, result.job.seed, preset.name, result.reports, as_json=as_json, quiet=quiet,
                   extra={"frames": result.frames, "size": list(result.size)})


def print_memory_plan(job: Job, device: str, dtype: str, offload: str, max_memory: str | None, options: dict, compile: bool) -> None:
    """The memory plan of `job` on stdout (with where --compile applies): torch is imported to see the device, the models are not."""
    from show1_cli.chain import memory_plan
    from show1_cli.memory import parse_size
    from show1_cli.runtime import resolve_runtime

    budget = parse_size(max_memory) if max_memory is not None else None
    for line in memory_plan(job, resolve_runtime(device, dtype, offload, compile), options, budget).lines():
        typer.echo(line)


def with_direct_flags(preset_name: str, overrides: list[str], stages: tuple[str, ...] | None, **flags) -> list[str]:
    """The --set overrides, then those the direct flags (--steps, --width, ...) stand for, which win by coming last."""
    preset: Preset = load_preset(preset_name, overrides, stages)
    return [*overrides, *direct_overrides(preset, **flags)]


def numbered_outputs(output: Path, count: int) -> list[Path]:
    """-o x.mp4 for one video; x-1.mp4, x-2.mp4, ... for several."""
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{number}{output.suffix}") for number in range(1, count + 1)]


def run_batch(chain: Chain, processes: Processes, items: list[PromptItem], out_dir: Path, *, shard: Shard, preset_name: str,
              overrides: list[str], stages: tuple[str, ...] | None, seed: int | None, save_intermediates: Path | None,
              lossless: bool, overwrite: bool, quiet: bool, as_json: bool) -> None:
    """This process's share of a prompts file's items; the main process prints the summary of all of them."""
    from show1_cli.batch import outcomes, summarise
    from show1_cli.chain import DONE, batch_jobs

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    slot = processes.shard(shard)
    jobs, failures = batch_jobs(items, out_dir, preset_name=preset_name, overrides=overrides,
                                stages=stages, batch_seed=seed if seed is not None else random_seed(),
                                save_intermediates=save_intermediates, lossless=lossless, owns=slot.owns)
    results = [*failures, *chain.run(jobs, overwrite=overwrite, skip_existing=True, keep_going=True)]
    for result in results:
        if result.status == DONE:
            report_run(result.output, result.job.seed, result.job.preset.name, result.reports, as_json=as_json, quiet=quiet,
                       extra={"prompt": result.job.prompt, "frames": result.frames, "size": list(result.size)})
        elif as_json:
            typer.echo(json.dumps({"output": str(result.output), result.status: True, "error": result.error}))
        elif result.skipped and not quiet:
            logger.warning("skipped %s (exists; --overwrite redoes it)", result.output)
    mine = summarise(outcomes(results), time.perf_counter() - started)
    everyone = summarise(processes.gather(outcomes(results)), time.perf_counter() - started)
    processes.close()
    if as_json:
        typer.echo(json.dumps({"summary": mine.to_json(), "shard": str(slot)}))
    elif processes.main and not quiet:
        report_batch(everyone, processes.count)
    # Under a launcher only the main process, which knows every outcome, says by its exit code that items failed.
    if processes.main and everyone.failed:
        raise Show1Error(f"{everyone.failed} of {everyone.done + everyone.skipped + everyone.failed} items failed",
                         "fix what the reasons say and rerun the same command: finished items are skipped")


def report_batch(summary: Summary, processes: int) -> None:
    where = f" on {processes} processes" if processes > 1 else ""
    err_console.print(f"batch{where}: {summary.done} done, {summary.skipped} skipped, {summary.failed} failed in "
                      f"{summary.seconds:.1f} s ({summary.items_per_second:.2f} items/s)", soft_wrap=True)
    for failure in summary.failures:
        err_console.print(f"  [red]failed[/] {escape(str(failure['output']))}: {escape(str(failure['error']))}", soft_wrap=True)
