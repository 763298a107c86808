"""`show1 interpolate`: N frames -> 4N-3 with the interpolation stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from show1_cli.cli.app import (
    CleanPromptOption,
    CompileOption,
    DebugOption,
    DeviceOption,
    DtypeOption,
    InputPromptOption,
    InputSeedOption,
    JsonOption,
    KeepInputFramesOption,
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
    make_chain,
    prompt_and_seed,
    report_run,
    stages_before,
)
from show1_cli.presets import load_preset, scheduler_overrides


@app.command("interpolate")
@command
def interpolate(
    input_path: Annotated[
        Path, typer.Argument(metavar="IN", help="Video to interpolate (for example from --stages keyframes).", dir_okay=False)
    ],
    output: OutputOption,
    prompt: InputPromptOption = None,
    keep_input_frames: KeepInputFramesOption = False,
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
    """Insert three frames between every pair of frames of a video (N frames become 4N-3).

    Uses the preset's interpolate settings (steps, guidance). The frame rate is multiplied by 4, so the
    clip keeps its duration.

    Examples:

      show1 interpolate keys.mp4 -o smooth.mp4

      show1 interpolate clip.mp4 -o smooth.mp4 --prompt "a panda" --keep-input-frames --set interpolate.steps=25

      show1 interpolate keys.mp4 -o smooth.mp4 --scheduler unipc --set interpolate.steps=20
    """
    from show1_cli.chain import Job
    from show1_cli.video import ensure_not_input, ensure_writable, read_video

    ensure_not_input(output, input_path)
    ensure_writable(output, overwrite)
    preset = load_preset(preset_name, [*(overrides or []), *scheduler_overrides(scheduler or ())], ["interpolate"])
    video = read_video(input_path)
    prompt, seed = prompt_and_seed(video, input_path, prompt, seed)
    chain = make_chain(device, dtype, offload, weights_dir, {"keep_input_frames": keep_input_frames, "clean_prompt": clean_prompt},
                       show_progress=not quiet and not as_json, metadata=not no_metadata, max_memory=max_memory,
                       compile=compile)
    job = Job(prompt, seed, output, preset, video=video.frames, fps=video.fps, lossless=lossless,
              metadata={"stages_before": stages_before(video, preset.stages), "interpolated_from": str(input_path)})
    (result,) = chain.run([job], overwrite=overwrite)
    report_run(result.output, seed, preset.name, result.reports, as_json=as_json, quiet=quiet,
               extra={"frames": result.frames, "size": list(result.size)})

