"""The record of a video show1 made: everything needed to know how it was made and to make it again.

One flat, typed JSON object (numbers are numbers, settings are objects; no JSON inside strings). It is
stored twice: in the video's `show1` tag (with the prompt as `title`, the one-line `summary` as
`comment` and the `created` time as `creation_time`, see show1_cli/video.py), and in a sidecar
`NAME.json` beside `NAME.mp4`, written atomically after the video. A rerun of a batch that finds a
video without its sidecar (the process died between the two) writes the sidecar from the video's tag.

`Recipe` turns a record back into what `show1 generate` needs: `show1 info` prints it as a command,
`show1 generate --from` runs it.
"""

from __future__ import annotations

import datetime
import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from show1_cli import __version__
from show1_cli.errors import InputError
from show1_cli.files import read_json, write_json
from show1_cli.presets import STAGES, load_preset
from show1_cli.progress import StageReport
from show1_cli.video import VideoFacts, probe_video

if TYPE_CHECKING:
    import torch

    from show1_cli.chain import Job
    from show1_cli.stages import StageContext

logger = logging.getLogger("show1")

#: The key (and format version) that marks a JSON object as a show1 record.
RECORD_KEY = "show1_record"
RECORD_FORMAT = 1
# The hub components each stage loads (for the record's `weights`).
STAGE_COMPONENTS = {
    "keyframes": ("show-1-base",),
    "interpolate": ("show-1-base", "show-1-interpolation"),
    "sr1": ("show-1-base", "show-1-sr1", "IF-II-L-v1.0"),
    "sr2": ("show-1-sr2",),
}


def build_record(job: Job, context: StageContext, last_stage: str, video: torch.Tensor, fps: float,
                 reports: list[StageReport]) -> dict[str, Any]:
    """The record of `job`'s output after `last_stage` (`video`, (F, 3, H, W) at `fps`)."""
    import diffusers
    import torch
    import transformers

    from show1_cli.finetune.inversion import file_sha256
    from show1_cli.runtime import dtype_name

    here = job.stages[: job.stages.index(last_stage) + 1]
    ran = [*job.metadata.get("stages_before", []), *here]
    options = context.options
    runtime = context.runtime
    record: dict[str, Any] = {
        RECORD_KEY: RECORD_FORMAT,
        "prompt": job.prompt,
        "negative_prompt": {stage: getattr(job.preset, stage).negative_prompt for stage in ran if stage in STAGES},
        "seed": job.seed,
        "preset": job.preset.name,
        "preset_settings": job.preset.to_dict(),
        "stages": ran,
        "scheduler": {stage: getattr(job.preset, stage).scheduler for stage in here},
        "keep_input_frames": bool(options.get("keep_input_frames")),
        "clean_prompt": bool(options.get("clean_prompt")),
        "weights": _weights(ran, context),
        "versions": {"show1": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
        "device": str(runtime.device),
        "dtype": dtype_name(runtime.dtype),
        "offload": runtime.offload,
        "compile": runtime.compile,
        "timings": {report.name: {"seconds": round(report.seconds, 3), "peak_memory_bytes": report.peak_memory_bytes}
                    for report in reports},
        "video": {"frames": video.shape[0], "width": video.shape[3], "height": video.shape[2], "fps": fps,
                  "lossless": job.lossless},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if "first_frame_used" in options:
        record["first_frame"] = options["first_frame_used"]
        record["first_frame_option"] = options.get("first_frame", "auto")
        if options["first_frame_used"] == "if":
            record["scheduler"]["first_frame"] = job.preset.first_frame.scheduler
    if options.get("motion"):
        adapter = Path(options["motion"])
        record["motion"] = {"adapter": str(adapter), "sha256": file_sha256(adapter), "scale": options["motion_scale"],
                            "init": options["motion_init"], "noise_prior": options["noise_prior"]}
    record.update({key: value for key, value in job.metadata.items() if key != "stages_before"})
    record["summary"] = summary_line(record)
    return record


def _weights(stages: list[str], context: StageContext) -> dict[str, dict[str, str | None]]:
    lock = context.weights.lock()
    names = dict.fromkeys(name for stage in stages for name in STAGE_COMPONENTS.get(stage, ()))
    return {name: {"repo_id": lock[name].repo_id, "revision": lock[name].revision, "lock_sha256": lock[name].lock_sha256()}
            for name in names if name in lock}


def summary_line(record: dict[str, Any]) -> str:
    """One readable line: what a player or ffprobe shows as the video's comment."""
    video = record["video"]
    motion = f", motion {Path(record['motion']['adapter']).name}" if "motion" in record else ""
    return (f"show1 {record['versions']['show1']}: seed {record['seed']}, preset {record['preset']}, "
            f"{'+'.join(record['stages'])}{motion}, {video['frames']} frames {video['width']}x{video['height']} "
            f"at {video['fps']:g} fps, {record['device']} {record['dtype']}")


# ------------------------------------------------------------------------------------------------
# Sidecars


def sidecar_path(video: Path) -> Path:
    return video.with_suffix(".json")


def is_record(data: object) -> bool:
    return isinstance(data, dict) and isinstance(data.get(RECORD_KEY), int)


def write_sidecar(video: Path, record: dict[str, Any], overwrite: bool) -> Path:
    return write_json(sidecar_path(video), record, overwrite=overwrite)


def complete_sidecar(video: Path) -> None:
    """Write the sidecar of a finished video from its tag when a killed run did not get to it."""
    sidecar = sidecar_path(video)
    if sidecar.exists():
        return
    try:
        metadata = probe_video(video).metadata
    except InputError:
        return
    if is_record(metadata):
        write_sidecar(video, metadata, overwrite=False)


def read_sidecar(path: Path) -> dict[str, Any]:
    data = read_json(path, "record", "pass a video made by show1 or the NAME.json written beside it")
    if not is_record(data):
        raise InputError(f"{path} is not a show1 record", "pass a video made by show1 or the NAME.json written beside it")
    return data


def find_record(path: Path, facts: VideoFacts | None = None) -> dict[str, Any] | None:
    """The record of a show1 video (from its sidecar, else its tag) or a record file; None for other videos.
    `facts`: the video's `probe_video`, when the caller has it already."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_sidecar(path)
    if sidecar_path(path).is_file():
        return read_sidecar(sidecar_path(path))
    metadata = (facts or probe_video(path)).metadata
    return metadata if is_record(metadata) else None


# ------------------------------------------------------------------------------------------------
# Making it again


@dataclass(frozen=True)
class Recipe:
    """What `show1 generate` needs to make a recorded video again (the settings as preset + --set)."""

    prompt: str
    seed: int
    preset: str
    overrides: tuple[str, ...]
    stages: tuple[str, ...]
    first_frame: str
    keep_input_frames: bool
    clean_prompt: bool
    motion: Path | None
    motion_scale: float
    motion_init: str
    noise_prior: float
    lossless: bool
    device: str
    dtype: str

    def command(self, output: Path | str) -> str:
        """The `show1 generate` command line that makes the video again at `output`."""
        args = ["show1", "generate", self.prompt, "-o", str(output), "--seed", str(self.seed), "--preset", self.preset,
                "--stages", ",".join(self.stages)]
        for override in self.overrides:
            args += ["--set", override]
        if "sr1" in self.stages:
            args += ["--first-frame", self.first_frame]
        if self.motion is not None:
            args += ["--motion", str(self.motion), "--motion-scale", f"{self.motion_scale:g}", "--motion-init", self.motion_init,
                     "--noise-prior", f"{self.noise_prior:g}"]
        flags = {"--keep-input-frames": self.keep_input_frames, "--clean-prompt": self.clean_prompt, "--lossless": self.lossless}
        args += [flag for flag, on in flags.items() if on]
        args += ["--device", self.device, "--dtype", self.dtype]
        return shlex.join(args)


def read_recipe(path: Path) -> Recipe:
    """The recipe of a show1 video or record file (for `show1 generate --from`)."""
    record = find_record(path)
    if record is None:
        raise InputError(f"{path} has no show1 record (show1 did not write it, or wrote it with --no-metadata)",
                         "pass a video show1 generated, or the NAME.json written beside it")
    made = recipe(record, path)
    motion = record.get("motion")
    if motion and made.motion is not None and made.motion.is_file():
        from show1_cli.finetune.inversion import file_sha256

        if file_sha256(made.motion) != motion["sha256"]:
            logger.warning("the motion adapter %s has changed since %s was made; the result will differ", made.motion, path)
    return made


def recipe(record: dict[str, Any], source: Path | str) -> Recipe:
    """How to make the video of `record` (read from `source`) again with `show1 generate`."""
    stages = tuple(record.get("stages", ()))
    if not stages or stages[0] != "keyframes":
        made_from = record.get("upscaled_from") or record.get("interpolated_from") or "an input video"
        raise InputError(f"{source} was made from {made_from}, not from a prompt alone",
                         "rerun the `show1 interpolate`/`show1 upscale` command on that input instead")
    if not isinstance(record.get("prompt"), str) or not isinstance(record.get("seed"), int):
        raise InputError(f"{source} has no prompt and seed", "pass a record written by show1 generate")
    preset, overrides = _preset_and_overrides(record.get("preset", "default"), record.get("preset_settings", {}))
    motion = record.get("motion") or {}
    return Recipe(
        prompt=record["prompt"],
        seed=record["seed"],
        preset=preset,
        overrides=overrides,
        stages=stages,
        first_frame=record.get("first_frame", "auto"),
        keep_input_frames=bool(record.get("keep_input_frames")),
        clean_prompt=bool(record.get("clean_prompt")),
        motion=Path(motion["adapter"]) if motion else None,
        motion_scale=motion.get("scale", 1.0),
        motion_init=motion.get("init", "noise"),
        noise_prior=motion.get("noise_prior", 1.0),
        lossless=bool(record.get("video", {}).get("lossless")),
        device=record.get("device", "cpu").split(":")[0],  # cuda:1 was a rank's GPU; any one makes the same video
        dtype=record.get("dtype", "auto"),
    )


def _preset_and_overrides(name: str, settings: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """A shipped preset and the --set overrides that turn it into the recorded settings (stages aside)."""
    try:
        base = load_preset(name)
    except InputError:  # a preset file that is gone or was a path: the recorded settings say it all
        name, base = "default", load_preset("default")
    current = _flatten(base.to_dict())
    return name, tuple(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in _flatten(settings).items()
                       if key != "stages" and current.get(key) != value)


def _flatten(settings: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            flat[key] = value
    return flat
