"""`show1 upscale`: the pixel (sr1) and latent (sr2) super-resolution stages on a video file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from show1_cli.cli.app import (
    CleanPromptOption,
    CompileOption,
    DebugOption,
    DeviceOption,
    DtypeOption,
    FirstFrameOption,
    InputPromptOption,
    InputSeedOption,
    JsonOption,
    LosslessOption,
    MaxMemoryOption,
    NoMetadataOption,
    OffloadOption,
    OutputOption,
    OverwriteOption,
    PresetOption,
    QuietOption,
    SchedulerOption,
    SetOption,
    WeightsDirOption,
    app,
    command,
    err_console,
    make_chain,
    prompt_and_seed,
    report_run,
    stages_before,
)
from show1_cli.presets import Preset, load_preset, scheduler_overrides
from show1_cli.weights import weight_source, weights_dir_from_env

STAGE_CHOICES = {"sr1": ("sr1",), "sr2": ("sr2",), "all": ("sr1", "sr2")}


@app.command("upscale")
@command
def upscale(
    input_path: Annotated[
        Path, typer.Argument(metavar="IN", help="Video to upscale (for example from --stages keyframes,interpolate).", dir_okay=False)
    ],
    output: OutputOption,
    stage: Annotated[
        Literal[tuple(STAGE_CHOICES)],
        typer.Option("--stage", help="sr1: pixel 4x (64x40 -> 256x160 by default); sr2: latent, to 576x320; all: sr1 then sr2."),
    ] = "all",
    prompt: InputPromptOption = None,
    first_frame_choice: FirstFrameOption = "auto",
    lossless: LosslessOption = False,
    preset_name: PresetOption = "default",
    overrides: SetOption = None,
    scheduler: SchedulerOption = None,
    seed: InputSeedOption = None,
    clean_prompt: CleanPromptOption = False,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    offload: OffloadOption = "auto",
    max_memory: MaxMemoryOption = None,
    compile: CompileOption = False,
    weights_dir: WeightsDirOption = None,
    no_metadata: NoMetadataOption = False,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Upscale a video with the pixel (sr1) and/or latent (sr2) super-resolution stage.

    Sizes, steps and guidance come from the preset's sr1/sr2 sections (--set sr1.width=... to change
    them); every frame is kept and the frame rate is unchanged. sr1 anchors its first window on an
    IF-II-L upscale of frame 0 when that (gated) model is present; --first-frame none runs without it.

    Examples:

      show1 upscale smooth.mp4 -o final.mp4

      show1 upscale smooth.mp4 -o mid.mp4 --stage sr1 --first-frame none

      show1 upscale mid.mp4 -o final.mp4 --stage sr2 --prompt "a panda taking a selfie"

      show1 upscale smooth.mp4 -o final.mp4 --scheduler dpm --set first_frame.steps=25
    """
    from show1_cli.chain import Job
    from show1_cli.video import ensure_not_input, ensure_writable, read_video

    stages = STAGE_CHOICES[stage]
    ensure_not_input(output, input_path)
    ensure_writable(output, overwrite)
    preset = load_preset(preset_name, [*(overrides or []), *scheduler_overrides(scheduler or ())], stages)
    video = read_video(input_path)
    check_chain_sizes(video.frames.shape[-2:], preset)
    prompt, seed = prompt_and_seed(video, input_path, prompt, seed)
    from show1_cli.stages import first_frame

    wd = weights_dir_from_env(weights_dir)
    used = first_frame.decide(first_frame_choice, weight_source(preset.weights, wd)) if "sr1" in stages else None

    chain = make_chain(device, dtype, offload, wd, {"first_frame": first_frame_choice, "clean_prompt": clean_prompt},
                       show_progress=not quiet and not as_json, metadata=not no_metadata, max_memory=max_memory,
                       compile=compile)
    job = Job(prompt, seed, output, preset, video=video.frames, fps=video.fps, lossless=lossless,
              metadata={"stages_before": stages_before(video, stages), "upscaled_from": str(input_path)})
    (result,) = chain.run([job], overwrite=overwrite)
    extra = {"frames": result.frames, "size": list(result.size)}
    if used is not None:
        extra["first_frame"] = used
        if not as_json and not quiet:
            err_console.print(f"  first frame: {describe_first_frame(used)}")
    report_run(result.output, seed, preset.name, result.reports, as_json=as_json, quiet=quiet, extra=extra)


def check_chain_sizes(size: tuple[int, int], preset: Preset) -> None:
    """Check, before loading any model, that each stage can take the size the stage before hands it."""
    from show1_cli.stages.sr1 import check_sizes

    height, width = size
    for name in preset.stages:
        settings = getattr(preset, name)
        check_sizes(height, width, settings.height, settings.width, stage=name)
        height, width = settings.height, settings.width


def describe_first_frame(used: str) -> str:
    from show1_cli.stages.first_frame import COMPONENT

    if used == "if":
        return f"{COMPONENT} (image super-resolution anchor)"
    return f"none: {COMPONENT} not used, sr1's first window ran without the anchor"
