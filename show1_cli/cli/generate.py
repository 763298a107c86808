"""`show1 generate`: one prompt, or a prompts file, through the preset's stages."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from show1_cli.batch import Processes, Shard, Summary, launched_processes, outcomes, parse_shard, summarise
from show1_cli.chain import DONE, Chain, Job, batch_jobs, random_seed, read_prompts_file, resume_job
from show1_cli.cli.app import (
    CleanPromptOption,
    DebugOption,
    DeviceOption,
    DtypeOption,
    FirstFrameOption,
    JsonOption,
    KeepInputFramesOption,
    LosslessOption,
    NoMetadataOption,
    OffloadOption,
    OverwriteOption,
    PresetOption,
    QuietOption,
    SeedOption,
    SetOption,
    WeightsDirOption,
    app,
    command,
    err_console,
    report_run,
)
from show1_cli.cli.finetune import MotionInitOption, MotionOption, MotionScaleOption, NoisePriorOption, motion_options
from show1_cli.errors import InputError, Show1Error
from show1_cli.presets import STAGES, load_preset
from show1_cli.record import read_recipe
from show1_cli.runtime import resolve_runtime
from show1_cli.weights import weights_dir_from_env

logger = logging.getLogger("show1")

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
    offload: OffloadOption = "model",
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
    """
    if recorded is not None:
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
    processes = launched_processes() if prompts is not None else Processes()
    runtime = resolve_runtime(processes.device(device), dtype, offload)
    chain = Chain(
        runtime,
        weights_dir_from_env(weights_dir),
        options={"keep_input_frames": keep_input_frames, "first_frame": first_frame, "clean_prompt": clean_prompt,
                 **motion_options(motion, motion_scale, motion_init, noise_prior)},
        show_progress=not quiet and not as_json,
        metadata=not no_metadata,
    )
    stage_list = parse_stages(stages)
    if prompts is not None:
        if prompt is not None or output is not None:
            raise InputError("--prompts replaces the PROMPT argument and -o", "give either PROMPT -o FILE, or --prompts FILE --out-dir DIR")
        if out_dir is None:
            raise InputError("--prompts needs --out-dir", "add --out-dir DIR for the outputs")
        if resume is not None or from_stage is not None:
            raise InputError("--resume works on one video, not a prompts file", "rerun the batch: finished outputs are skipped")
        run_batch(chain, processes, prompts, out_dir, shard=parse_shard(shard), preset_name=preset_name,
                  overrides=list(overrides or []), stages=stage_list, seed=seed, save_intermediates=save_intermediates,
                  lossless=lossless, overwrite=overwrite, quiet=quiet, as_json=as_json)
        return

    if shard is not None:
        raise InputError("--shard splits a --prompts batch", "add --prompts FILE --out-dir DIR, or drop --shard")

    if out_dir is not None:
        raise InputError("--out-dir is for --prompts batches", "use -o FILE for a single video")
    if output is None:
        raise InputError("missing -o/--output", "add -o FILE.mp4")
    if from_stage is not None and resume is None:
        raise InputError("--from-stage needs --resume DIR", "add --resume with the folder given to --save-intermediates")
    preset = load_preset(preset_name, list(overrides or []))
    if stage_list is not None:
        preset = preset.with_stages(stage_list)
    if resume is None and preset.stages[0] != "keyframes":
        raise InputError(
            f"generate starts from a prompt, but stage {preset.stages[0]} needs an input video",
            "run `show1 interpolate` or `show1 upscale` on a video, or continue a saved run with --resume",
        )

    if resume is not None:
        job = resume_job(resume, from_stage, prompt=prompt, seed=seed, output=output, preset=preset,
                         save_intermediates=save_intermediates, lossless=lossless)
    else:
        if prompt is None or not prompt.strip():
            raise InputError("missing PROMPT", 'write show1 generate "what the video shows" -o out.mp4')
        job = Job(prompt, seed if seed is not None else random_seed(), output, preset, save_intermediates=save_intermediates,
                  lossless=lossless)
    (result,) = chain.run([job], overwrite=overwrite)
    report_run(result.output, job.seed, preset.name, result.reports, as_json=as_json, quiet=quiet,
               extra={"frames": result.frames, "size": list(result.size)})



def run_batch(chain: Chain, processes: Processes, prompts: Path, out_dir: Path, *, shard: Shard, preset_name: str,
              overrides: list[str], stages: tuple[str, ...] | None, seed: int | None, save_intermediates: Path | None,
              lossless: bool, overwrite: bool, quiet: bool, as_json: bool) -> None:
    """This process's share of a prompts file; the main process prints the summary of all of them."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    slot = processes.shard(shard)
    jobs, failures = batch_jobs(read_prompts_file(prompts), out_dir, preset_name=preset_name, overrides=overrides,
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
