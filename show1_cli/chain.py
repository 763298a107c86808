"""The chain runner: runs a preset's stages in order on one prompt or on a batch of prompts.

- Stages pass tensors to each other ((frames, 3, H, W) in [-1, 1] on the CPU), never re-encoded video.
- The T5 embeddings of every text the run needs (each prompt and each running pixel stage's negative
  prompt) are computed once, before any stage runs, for the whole batch; the text encoder is then dropped.
- Models are loaded once per process through one `ModelStore` (a batch reuses them) and only the running
  stage's models stay on the accelerator (`ModelStore.end_stage()` after every stage).
- `save_intermediates`: after each stage, `DIR/<stage>.mkv` (lossless) and `DIR/<stage>.safetensors`
  (the exact float tensor with the run's metadata). `resume_from` reads such a tensor back and continues
  with the stages after it, giving the same final video as an uninterrupted run.
- Batches: every item gets its own seed (derived from the batch seed and the item's position unless the
  item sets one) written into its output's record, so one item can be reproduced alone with
  `show1 generate PROMPT --seed SEED`. Finished outputs are skipped unless `overwrite`. Each process of
  a multi-process batch runs the items it owns by position (show1_cli/batch.py); an item that fails
  (a bad line, out of memory, NaN output) is a failed result and the batch goes on.
- Every output gets its record (show1_cli/record.py) in its tags and as a NAME.json sidecar.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from show1_cli.errors import InputError, OutputExistsError, Show1Error, StageError
from show1_cli.files import atomic_output, remove_stale_partials, write_error
from show1_cli.presets import Preset, load_preset
from show1_cli.progress import ChainProgress, StageReport
from show1_cli.record import build_record, complete_sidecar, sidecar_path, write_sidecar
from show1_cli.seeds import MAX_SEED, derive_seed
from show1_cli.weights import WeightSource, weight_source

if TYPE_CHECKING:  # torch and the stages load with the first Chain, so that checking a command's input stays fast
    import torch

    from show1_cli.memory import MemoryPlan
    from show1_cli.runtime import Runtime
    from show1_cli.stages import StageContext

logger = logging.getLogger("show1")

# Stages conditioned on the show-1-base T5 embeddings (sr1 includes its IF-II-L first frame).
T5_STAGES = ("keyframes", "interpolate", "sr1")
FRAMES_KEY = "frames"
DONE, SKIPPED, FAILED = "done", "skipped", "failed"


def fps_after(stage: str, fps: float) -> float:
    """Frame rate after a stage: interpolation puts 3 frames between 2 (4x the rate, same duration)."""
    return fps * 4 if stage == "interpolate" else fps


@dataclass
class Job:
    """One video to make: a prompt, its seed and settings, where it goes, and where it starts from."""

    prompt: str
    seed: int
    output: Path
    preset: Preset
    # The stages to run (a suffix of preset.stages when resuming; a single stage for `show1 interpolate`).
    stages: tuple[str, ...] = ()
    # Input video for the first stage (None when the chain starts at keyframes) and its frame rate.
    video: torch.Tensor | None = None
    fps: float | None = None
    save_intermediates: Path | None = None
    # Write the output losslessly (RGB H.264 at QP 0): decoding gives back exactly the frames produced.
    lossless: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stages:
            self.stages = self.preset.stages

    def texts(self) -> list[str]:
        """The texts whose T5 embeddings this job's stages read: the prompt and their negative prompts."""
        needed = [stage for stage in self.stages if stage in T5_STAGES]
        if not needed:
            return []
        return [self.prompt, *(getattr(self.preset, stage).negative_prompt for stage in needed)]


@dataclass
class JobResult:
    """What became of one job: done, skipped (its output existed) or failed (`error` says why)."""

    job: Job | None  # None for a prompts-file item that could not become a job
    output: Path | None
    status: str
    error: str | None = None
    frames: int = 0
    size: tuple[int, int] = (0, 0)
    reports: list[StageReport] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return self.status == SKIPPED


@dataclass
class Chain:
    """Runs jobs with shared models. `options` are stage options from the CLI (keep_input_frames, first_frame).

    `metadata`: write each output's record into the video and beside it as NAME.json (show1_cli/record.py).
    """

    runtime: Runtime
    weights_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    show_progress: bool = True
    metadata: bool = True
    max_memory: int | None = None  # bytes the memory planner may use on the accelerator (--max-memory)

    def __post_init__(self) -> None:
        from show1_cli.runtime import ModelStore

        self.models = ModelStore(self.runtime)

    def run(self, jobs: list[Job], *, overwrite: bool = False, skip_existing: bool = False,
            keep_going: bool = False) -> list[JobResult]:
        """Run every job; with `skip_existing`, jobs whose output exists are skipped (unless `overwrite`).

        With `keep_going` (batches), a job that fails (bad settings, an existing sidecar, out of memory,
        NaN output) becomes a failed result and the next one runs; without, its error is raised.
        """
        results: list[JobResult] = []
        pending: list[Job] = []
        for job in jobs:
            if skip_existing and not overwrite and job.output.exists():
                logger.info("skipping %s: it exists (pass --overwrite to redo it)", job.output)
                if self.metadata:
                    complete_sidecar(job.output)
                results.append(JobResult(job, job.output, SKIPPED))
                continue
            try:
                self._ensure_writable(job.output, overwrite)
            except Show1Error as error:
                if not keep_going:
                    raise
                results.append(_failed(job, error))
                continue
            pending.append(job)
        if not pending:
            return results

        sets = {job.preset.weights for job in pending}
        if len(sets) > 1:
            raise InputError(f"one run cannot mix presets on different weights ({', '.join(sorted(sets))})",
                             "run the items of each weight set as separate batches")
        weights = weight_source(pending[0].preset.weights, self.weights_dir)
        texts = [text for job in pending for text in job.texts()]
        self.models.offload = self.memory_plan(pending[0]).offload("text")
        embeddings, text_report = self._encode(texts, weights)
        for number, job in enumerate(pending, start=1):
            if len(pending) > 1:
                logger.info("item %d of %d: %s", number, len(pending), job.output.name)
            reports = [text_report] if text_report is not None else []  # reported with the first item that used it
            try:
                results.append(self._run_job(job, embeddings, weights, overwrite, reports))
            except Exception as error:
                if not keep_going:
                    raise
                results.append(_failed(job, error))
            text_report = None
        return results

    def memory_plan(self, job: Job) -> MemoryPlan:
        return memory_plan(job, self.runtime, self.options, self.max_memory)

    def _ensure_writable(self, output: Path, overwrite: bool) -> None:
        from show1_cli.video import ensure_writable

        ensure_writable(output, overwrite)
        sidecar = sidecar_path(output)
        if self.metadata and sidecar.exists() and not overwrite:
            raise OutputExistsError(f"{sidecar} exists (the record {output.name} would get)",
                                    "pass --overwrite to replace it, move it away, or add --no-metadata")

    def _encode(self, texts: list[str], weights: WeightSource) -> tuple[dict[str, torch.Tensor], StageReport | None]:
        if not texts:
            return {}, None
        from show1_cli.text import COMPONENT, encode_texts

        root = weights.resolve(COMPONENT)
        started = time.perf_counter()
        self.runtime.reset_peak_memory()
        embeddings = encode_texts(texts, self.models, root, full_cleaning=self.options.get("clean_prompt", False))
        report = StageReport("text", time.perf_counter() - started, self.runtime.peak_memory_bytes())
        logger.info("text encoder: %d texts in %.1f s", len(embeddings), report.seconds)
        return embeddings, report

    def _run_job(self, job: Job, embeddings: dict[str, torch.Tensor], weights: WeightSource, overwrite: bool,
                 reports: list[StageReport]) -> JobResult:
        from show1_cli.stages import StageContext
        from show1_cli.video import write_video

        context = StageContext(
            prompt=job.prompt,
            preset=job.preset,
            seed=job.seed,
            runtime=self.runtime,
            models=self.models,
            weights=weights,
            text_embeddings=embeddings,
            options=dict(self.options),
        )
        remove_stale_partials(job.output)
        plan = self.memory_plan(job)
        for line in plan.lines():
            logger.info("%s", line)
        context.options["vae_tiling"] = plan.vae_tiling()
        video = job.video
        fps = job.fps if job.fps is not None else job.preset.fps / 4
        with ChainProgress(self.runtime, len(job.stages), show=self.show_progress) as progress:
            for stage in job.stages:
                self.models.offload = plan.offload(stage)
                self.models.compile = plan.compiled(stage)
                with progress.stage(stage) as on_step:
                    context.on_step = on_step
                    video = _run_checked(stage, context, video)
                fps = fps_after(stage, fps)
                if job.save_intermediates is not None:
                    record = build_record(job, context, stage, video, fps, [*reports, *progress.reports])
                    save_intermediate(job.save_intermediates, stage, video, fps, record)
        reports = [*reports, *progress.reports]
        record = build_record(job, context, job.stages[-1], video, fps, reports) if self.metadata else None
        write_video(job.output, video, fps, record, lossless=job.lossless, overwrite=overwrite)
        if record is not None:
            write_sidecar(job.output, record, overwrite=True)  # checked before the run; the video is the commit point
        return JobResult(job, job.output, DONE, frames=video.shape[0], size=(video.shape[3], video.shape[2]), reports=reports)


def memory_plan(job: Job, runtime: Runtime, options: dict[str, Any], max_memory: int | None = None) -> MemoryPlan:
    """How `job`'s stages (the text encoder first when they need it) use the accelerator: `--offload` per stage,
    chosen by the memory planner under auto, and where `--compile` applies (show1_cli/memory.py)."""
    from show1_cli.memory import plan_stages

    stages = ("text", *job.stages) if job.texts() else job.stages
    input_shape = (job.video.shape[0], *job.video.shape[2:]) if job.video is not None else None
    first_frame = "sr1" in stages and options.get("first_frame", "auto") != "none"
    return plan_stages(stages, job.preset, dtype_bytes=runtime.dtype.itemsize, budget_bytes=runtime.memory_budget(max_memory),
                       offload=runtime.offload, first_frame=first_frame, windows_per_call=options.get("windows_per_call"),
                       input_shape=input_shape, compile=runtime.compile)


def _run_checked(stage: str, context: StageContext, video: torch.Tensor | None) -> torch.Tensor:
    """Run a stage (which checks its output, see `check_output`), turning running out of accelerator memory
    into an error that says so."""
    import torch

    from show1_cli.stages import run_stage

    try:
        return run_stage(stage, context, video)
    except torch.OutOfMemoryError:
        raise StageError(f"out of accelerator memory in stage {stage}",
                         "use --offload model or sequential, fewer frames or a smaller size") from None
    finally:
        context.models.end_stage()


def _failed(job: Job, error: Exception) -> JobResult:
    reason = str(error) if isinstance(error, Show1Error) else f"internal error: {type(error).__name__}: {error}"
    logger.error("%s failed: %s", job.output, reason, exc_info=logger.isEnabledFor(logging.DEBUG))
    return JobResult(job, job.output, FAILED, error=reason)


# ------------------------------------------------------------------------------------------------
# Intermediates and resume


def intermediate_paths(folder: Path, stage: str) -> tuple[Path, Path]:
    """(lossless video, tensor file) of a stage's saved output."""
    return folder / f"{stage}.mkv", folder / f"{stage}.safetensors"


def save_intermediate(folder: Path, stage: str, video: torch.Tensor, fps: float, metadata: dict[str, Any]) -> None:
    import torch
    from safetensors.torch import save_file

    from show1_cli.video import write_video

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(folder, error) from error
    video_path, tensor_path = intermediate_paths(folder, stage)
    write_video(video_path, video, fps, metadata, lossless=True, overwrite=True)
    text = {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}
    text["fps"] = repr(float(fps))
    text["stage"] = stage
    with atomic_output(tensor_path, overwrite=True) as temp:
        save_file({FRAMES_KEY: video.detach().to("cpu", torch.float32).contiguous()}, temp, metadata=text)
    logger.info("saved %s output to %s and %s", stage, video_path, tensor_path)


@dataclass
class Intermediate:
    """A stage's saved output and what it was made with, read back for --resume."""

    stage: str
    frames: torch.Tensor
    fps: float
    prompt: str
    seed: int


def load_intermediate(folder: Path, stage: str) -> Intermediate:
    _, tensor_path = intermediate_paths(folder, stage)
    if not tensor_path.is_file():
        raise InputError(
            f"no saved {stage} output in {folder} ({tensor_path.name} is missing)",
            f"resume from a folder written by --save-intermediates after {stage} finished",
        )
    from safetensors import safe_open

    try:
        with safe_open(str(tensor_path), framework="pt") as handle:
            frames = handle.get_tensor(FRAMES_KEY)
            metadata = dict(handle.metadata() or {})
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise InputError(f"cannot read {tensor_path}: {error}", "rerun the chain with --save-intermediates") from None
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise InputError(f"{tensor_path} is not a show1 intermediate", "rerun the chain with --save-intermediates")
    prompt, seed, fps = metadata.get("prompt"), _saved_number(metadata, "seed", int), _saved_number(metadata, "fps", float)
    if not prompt:
        problem = "no prompt"
    elif seed is None or not 0 <= seed <= MAX_SEED:
        problem = f"seed {metadata.get('seed')!r}, not a whole number from 0 to {MAX_SEED}"
    elif fps is None or not 0 < fps < math.inf:
        problem = f"fps {metadata.get('fps')!r}, not a positive number"
    else:
        return Intermediate(stage, frames, fps, prompt, seed)
    raise InputError(f"{tensor_path} is damaged: its metadata has {problem}",
                     "rerun the chain with --save-intermediates, or resume from an earlier stage with --from-stage")


def _saved_number(metadata: dict[str, str], key: str, kind: type[int] | type[float]) -> int | float | None:
    """An int or float saved as text in an intermediate's metadata; None when it is absent or not one."""
    try:
        return kind(metadata[key])
    except (KeyError, ValueError):
        return None


def resume_point(folder: Path, stages: tuple[str, ...], from_stage: str | None) -> tuple[str, tuple[str, ...]]:
    """(saved stage to load, stages still to run) for resuming `stages` from `folder`.

    With `from_stage`, the chain restarts at that stage from the saved output of the stage before it;
    without, it continues after the last stage whose output is saved.
    """
    if not folder.is_dir():
        raise InputError(f"--resume folder {folder} does not exist", "pass the folder given to --save-intermediates")
    if from_stage is not None:
        if from_stage not in stages:
            raise InputError(f"--from-stage {from_stage} is not one of this run's stages ({', '.join(stages)})",
                             "choose a stage the preset runs, or set --stages")
        index = stages.index(from_stage)
        if index == 0:
            raise InputError(f"--from-stage {from_stage} is the first stage: there is nothing to resume from",
                             "drop --from-stage/--resume to start from scratch")
        return stages[index - 1], stages[index:]
    saved = [stage for stage in stages if intermediate_paths(folder, stage)[1].is_file()]
    if not saved:
        raise InputError(f"{folder} holds no saved output of {', '.join(stages)}", "pass the folder given to --save-intermediates")
    last = saved[-1]
    remaining = stages[stages.index(last) + 1 :]
    if not remaining:
        raise InputError(f"{folder} already holds the output of the last stage ({last})", "nothing to resume")
    return last, remaining


# ------------------------------------------------------------------------------------------------
# Prompts files


@dataclass(frozen=True)
class PromptItem:
    """One item of a prompts file; a line that cannot be used keeps its `error` and fails alone."""

    prompt: str
    line: int
    index: int = 0  # position among the file's items (0-based): its default seed and file name derive from it
    seed: int | None = None
    overrides: tuple[str, ...] = ()
    output: str | None = None
    error: str | None = None

    def output_name(self) -> str:
        return self.output or f"{self.index + 1:04d}-{slug(self.prompt or 'bad-line')}.mp4"


def read_prompts_file(path: Path) -> list[PromptItem]:
    """Prompts, one per line, or JSON objects per line ({"prompt", "seed", "set", "output"}); # comments, blanks skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"prompts file {path} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read prompts file {path}: {error}", "pass a UTF-8 text file, one prompt per line") from None
    items = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        index = len(items)
        try:
            item = _parse_prompt_line(path, number, line) if line.startswith("{") else PromptItem(line, number)
        except InputError as error:
            item = PromptItem("", number, error=str(error))
        items.append(replace(item, index=index))
    if not items:
        raise InputError(f"prompts file {path} has no prompts", "write one prompt per line")
    return items


def _parse_prompt_line(path: Path, number: int, line: str) -> PromptItem:
    where = f"{path}:{number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not valid JSON ({error.msg})", 'write {"prompt": "..."} or a plain prompt') from None
    unknown = set(data) - {"prompt", "seed", "set", "output"}
    if unknown:
        raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r}", "keys are prompt, seed, set, output")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{where}: missing \"prompt\"", 'write {"prompt": "..."}')
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise InputError(f"{where}: seed must be an integer in 0..{MAX_SEED}", "fix the seed")
    overrides = data.get("set", {})
    if isinstance(overrides, dict):
        overrides = [f"{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in overrides.items()]
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise InputError(f"{where}: \"set\" must be an object or a list of \"section.key=value\"", 'write "set": {"sr1.steps": 50}')
    output = data.get("output")
    if output is not None and (not isinstance(output, str) or Path(output).is_absolute() or ".." in Path(output).parts):
        raise InputError(f"{where}: \"output\" must be a file name inside --out-dir", 'write "output": "name.mp4"')
    return PromptItem(prompt.strip(), number, seed=seed, overrides=tuple(overrides), output=output)


def slug(text: str, length: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].rstrip("-") or "video"


def batch_jobs(
    items: list[PromptItem],
    out_dir: Path,
    *,
    preset_name: str,
    overrides: list[str],
    stages: tuple[str, ...] | None,
    batch_seed: int,
    save_intermediates: Path | None,
    lossless: bool = False,
    owns: Callable[[int], bool] = lambda index: True,
) -> tuple[list[Job], list[JobResult]]:
    """The jobs of the prompt-file items this process `owns` (by index), and the failures of those that cannot run.

    Each job gets its own preset (CLI --set, then the item's "set"), seed and output.
    """
    outputs: dict[str, int] = {}
    for item in items:
        name = item.output_name()
        if name in outputs:
            raise InputError(f"prompts file lines {outputs[name]} and {item.line} both write {name}",
                             'give one of them its own "output"')
        outputs[name] = item.line
    jobs, failures = [], []
    for item in items:
        if not owns(item.index):
            continue
        output = out_dir / item.output_name()
        if item.error is not None:
            failures.append(JobResult(None, output, FAILED, error=item.error))
            continue
        item_sets_stages = any(override.startswith("stages=") for override in item.overrides)
        try:
            preset = load_preset(preset_name, [*overrides, *item.overrides], None if item_sets_stages else stages)
        except InputError as error:
            failures.append(JobResult(None, output, FAILED, error=f"line {item.line}: {error}"))
            continue
        seed = item.seed if item.seed is not None else derive_seed(batch_seed, item.index)
        folder = save_intermediates / output.stem if save_intermediates is not None else None
        jobs.append(Job(item.prompt, seed, output, preset, save_intermediates=folder, lossless=lossless,
                        metadata={"batch_seed": batch_seed, "batch_item": item.index + 1, "batch_line": item.line}))
    return jobs, failures


def resume_job(
    folder: Path,
    from_stage: str | None,
    *,
    prompt: str | None,
    seed: int | None,
    output: Path,
    preset: Preset,
    save_intermediates: Path | None = None,
    lossless: bool = False,
) -> Job:
    """A job continuing `preset`'s stages from the intermediates saved in `folder`.

    Prompt and seed default to the saved ones (the stages after the resume point reseed from the seed,
    so the result equals the uninterrupted run's).
    """
    saved_stage, remaining = resume_point(folder, preset.stages, from_stage)
    saved = load_intermediate(folder, saved_stage)
    prompt = prompt if prompt is not None else saved.prompt
    seed = seed if seed is not None else saved.seed
    if prompt != saved.prompt or seed != saved.seed:
        logger.warning("resuming with prompt %r and seed %d; the saved %s output was made with prompt %r and seed %d",
                       prompt, seed, saved_stage, saved.prompt, saved.seed)
    logger.info("resuming after %s from %s: running %s", saved_stage, folder, ", ".join(remaining))
    before = preset.stages[: preset.stages.index(saved_stage) + 1]
    return Job(prompt, seed, output, preset, stages=remaining, video=saved.frames, fps=saved.fps,
               save_intermediates=save_intermediates, lossless=lossless,
               metadata={"stages_before": list(before), "resumed_from": saved_stage})


__all__ = [
    "Chain",
    "Job",
    "JobResult",
    "batch_jobs",
    "load_intermediate",
    "read_prompts_file",
    "resume_point",
    "resume_job",
]
