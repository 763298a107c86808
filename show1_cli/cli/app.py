"""The Typer application, the options every command shares, and how commands report errors and results."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

from show1_cli import __version__, choices
from show1_cli.cli.help import Typer
from show1_cli.errors import InputError, Show1Error
from show1_cli.progress import StageReport, format_bytes
from show1_cli.seeds import MAX_SEED, random_seed

if TYPE_CHECKING:
    from show1_cli.video import Video

err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # no wrapping at 80 columns in logs

app = Typer(
    name="show1",
    help="Text-to-video generation with the Show-1 cascade (keyframes, interpolation, two super-resolutions).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"show1 {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Text-to-video generation with the Show-1 cascade.

    [bold]show1 generate[/] runs the whole chain; [bold]interpolate[/], [bold]upscale[/] run one stage on a
    video file; [bold]finetune-motion[/] teaches the keyframe model the motion of a reference clip.
    """


# Options shared by the commands. Each command lists the ones it takes, so `--help` stays honest. Options with a
# fixed set of values are typed `Literal[...]`: the help lists the values and shell completion offers them.
PresetOption = Annotated[
    str, typer.Option("--preset", "-p", metavar="NAME|FILE", help="Preset name (see `show1 presets list`) or path to a YAML file.")
]
CleanPromptOption = Annotated[
    bool, typer.Option("--clean-prompt", help="Also apply DeepFloyd IF's caption clean-up (URLs, HTML, punctuation; needs "
                       "show1-cli\\[clean]). Default: lower-case and strip, as the official script.")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="SECTION.KEY=VALUE", help="Override one preset field, e.g. --set sr1.steps=50 (repeatable)."),
]
OutputOption = Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help=f"Output: {choices.OUTPUT_FORMATS}.")]
SeedOption = Annotated[
    int | None, typer.Option("--seed", metavar="N", help=f"Random seed (0 to {MAX_SEED}); the same seed gives the same video on the "
                             "same device. Random if omitted.")
]
DeviceOption = Annotated[str, typer.Option("--device", metavar="[auto|cuda|cuda:N|cpu]", help="Where the models run.")]
DtypeOption = Annotated[
    Literal[("auto", *choices.DTYPES)], typer.Option("--dtype", help="Number format; auto: fp16 on CUDA, fp32 on the CPU.")
]
OffloadOption = Annotated[
    Literal[choices.OFFLOAD_CHOICES],
    typer.Option(
        "--offload",
        help="auto: per stage, the fastest of the others that fits the free GPU memory (see --dry-run); none: keep the running "
        "stage's models on the GPU (fastest); model: move each model to the GPU only for its forward pass (the paper's ~15 GB "
        "setting); sequential: stream weights layer by layer (least memory, slowest).",
    ),
]
CompileOption = Annotated[
    bool,
    typer.Option("--compile", help="Compile the UNets' blocks with torch.compile: each stage's first UNet call compiles (minutes on "
                 "the CPU), its later steps run faster; for long runs and batches. Not with --offload sequential."),
]
MaxMemoryOption = Annotated[
    str | None,
    typer.Option("--max-memory", metavar="SIZE", help="With --offload auto: plan for at most this much GPU memory, e.g. 8GB."),
]
WeightsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--weights-dir",
        metavar="DIR",
        envvar="SHOW1_WEIGHTS_DIR",
        help="Folder with one subfolder per hub repository (show-1-base, ...). Default: the Hugging Face cache.",
        file_okay=False,
    ),
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
NoMetadataOption = Annotated[
    bool, typer.Option("--no-metadata", help="Write no record of how the video was made: no NAME.json beside it, no tags in it.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display and no summary; warnings and errors only.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON summary line on stdout (output, seed, preset, seconds and peak memory per stage).")
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Verbose logging and full tracebacks.")]
KeepInputFramesOption = Annotated[
    bool,
    typer.Option("--keep-input-frames", help="Interpolation: keep every input frame unchanged (the original regenerates them)."),
]
LosslessOption = Annotated[
    bool,
    typer.Option("--lossless", help="Write the output losslessly (RGB H.264, QP 0): bigger files, exact frames for further processing."),
]
FirstFrameOption = Annotated[
    Literal[choices.FIRST_FRAMES],
    typer.Option("--first-frame", help="sr1's first frame: auto (IF-II-L when its weights are present), if (IF-II-L, required), "
                 "or none."),
]
SchedulerOption = Annotated[
    list[str] | None,
    typer.Option("--scheduler", metavar="NAME|STAGE=NAME", help="Sampler of every stage (the first frame too), or of one: "
                 "--scheduler sr1=unipc (repeatable). default: each checkpoint's own, as the official script; dpm: "
                 "DPM-Solver++ 2M; unipc: UniPC. Both take the checkpoint's betas and thresholding."),
]
# For commands that take a video made by show1: its metadata supplies the prompt and the seed.
InputPromptOption = Annotated[
    str | None, typer.Option("--prompt", metavar="TEXT", help="The video's prompt. Default: the prompt stored in IN by show1.")
]
InputSeedOption = Annotated[
    int | None, typer.Option("--seed", metavar="N", help=f"Random seed (0 to {MAX_SEED}). Default: the seed stored in IN by show1, "
                             "else random.")
]


def prompt_and_seed(video: Video, input_path: Path, prompt: str | None, seed: int | None) -> tuple[str, int]:
    """The prompt and seed for processing `video`: the ones given, else those show1 stored in it."""
    if prompt is None:
        prompt = video.metadata.get("prompt")
        if not prompt:
            raise InputError(f"{input_path} carries no prompt (it was not written by show1)", 'pass --prompt "what the video shows"')
    if seed is None:
        stored = video.metadata.get("seed")
        seed = stored if isinstance(stored, int) else random_seed()
    return prompt, seed


def make_chain(device: str, dtype: str, offload: str, weights_dir: Path | None, options: dict[str, Any], *, show_progress: bool,
               metadata: bool = True, max_memory: str | None = None, compile: bool = False):
    """The chain runner for a command's checked input; this is where torch and the model libraries load."""
    from show1_cli.chain import Chain
    from show1_cli.memory import parse_size
    from show1_cli.runtime import resolve_runtime
    from show1_cli.weights import weights_dir_from_env

    budget = parse_size(max_memory) if max_memory is not None else None
    return Chain(resolve_runtime(device, dtype, offload, compile), weights_dir_from_env(weights_dir), options=options,
                 show_progress=show_progress, metadata=metadata, max_memory=budget)


def stages_before(video: Video, running: tuple[str, ...]) -> list[str]:
    """The stages that made the input video, as its show1 metadata says (none for other files)."""
    return [stage for stage in video.metadata.get("stages", []) if stage not in running]


def configure_logging(debug: bool) -> None:
    # Progress and the summary are drawn by rich; the log carries warnings, and everything with --debug.
    level = logging.DEBUG if debug else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    if not debug:
        # Library chatter (download notices, deprecation hints) is not for end users.
        for noisy in ("diffusers", "transformers", "accelerate", "huggingface_hub", "libav"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def check_seed(seed: int | None) -> None:
    """Every command's --seed: what torch generators take and what metadata and prompt files round-trip."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed {seed} is out of range", f"use a seed from 0 to {MAX_SEED}")


class Terminated(BaseException):
    """SIGTERM (a scheduler's stop, `kill`), raised where the process is, so that it unwinds like Ctrl-C."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises `Terminated`: atomic writes remove their partial files on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_text(arguments: dict[str, Any]) -> None:
    """Every text argument must be text: a shell can hand over bytes that are not UTF-8 (Python keeps them as
    lone surrogates), which no tokenizer or metadata writer takes."""
    for name, value in arguments.items():
        for text in value if isinstance(value, list | tuple) else [value]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as error:
                    raise InputError(f"{name.replace('_', ' ')} holds bytes that are not UTF-8 text (at character {error.start})",
                                     "pass UTF-8 text (check the terminal's or the script's encoding)") from None


def command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command: set up logging, and turn failures into one line and an exit code.

    Show1Error -> its message and fix, exit 2 (bad input) or 1; Ctrl-C -> exit 130, SIGTERM -> 143; any other exception is
    a bug: one line pointing at --debug, which re-raises everything with its traceback.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug", False))
        configure_logging(debug)
        try:
            with terminate_as_interrupt():
                check_seed(kwargs.get("seed"))
                check_text(kwargs)
                return function(*args, **kwargs)
        except Show1Error as error:
            if debug:
                raise
            fix = f" [dim]({error.fix})[/]" if error.fix else ""
            err_console.print(f"[bold red]error:[/] {error.message}{fix}", soft_wrap=True)
            raise typer.Exit(error.exit_code) from None
        except (KeyboardInterrupt, Terminated) as stop:
            what = "interrupted" if isinstance(stop, KeyboardInterrupt) else "terminated"
            err_console.print(f"[bold red]{what}[/]: the file being written was removed; finished outputs, saved "
                              "intermediates and checkpoints are kept", soft_wrap=True)
            raise typer.Exit(130 if isinstance(stop, KeyboardInterrupt) else 128 + signal.SIGTERM) from None
        except Exception as error:  # a bug: keep the user's terminal readable unless they ask for details
            if debug:
                raise
            err_console.print(
                f"[bold red]internal error:[/] {type(error).__name__}: {error} (rerun with --debug for the traceback)",
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def report_run(
    output: Path | None,
    seed: int,
    preset: str,
    reports: list[StageReport],
    *,
    as_json: bool,
    quiet: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """The end of a run: a JSON line on stdout for scripts, or a short human summary on stderr."""
    if as_json:
        summary = {
            "output": str(output) if output else None,
            "seed": seed,
            "preset": preset,
            "stages": {
                report.name: {"seconds": round(report.seconds, 3), "peak_memory_bytes": report.peak_memory_bytes} for report in reports
            },
            **(extra or {}),
        }
        typer.echo(json.dumps(summary))
        return
    if quiet:
        return
    for report in reports:
        err_console.print(f"  {report.name:<12} {report.seconds:8.1f} s   peak memory {format_bytes(report.peak_memory_bytes)}")
    if output:
        err_console.print(f"[green]wrote[/] {output} (seed {seed}, preset {preset})")
