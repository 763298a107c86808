"""`show1 toyworld ...`: the toy world of coloured shapes the micro cascade is trained and measured on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from show1_cli.cli.app import DebugOption, JsonOption, OverwriteOption, command, err_console
from show1_cli.cli.help import Typer
from show1_cli.errors import InputError, OutputExistsError

app = Typer(help="The toy world of coloured shapes: make a training data set, read a video back.", no_args_is_help=True)


@app.command("data")
@command
def data(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write clips/ and captions.jsonl.", file_okay=False)],
    per_combination: Annotated[int, typer.Option("--per-combination", min=1, help="Clips per colour/shape/motion/background.")] = 6,
    size: Annotated[str, typer.Option("--size", metavar="WxH", help="Frame size of the clips.")] = "256x192",
    frames: Annotated[int, typer.Option("--frames", min=2, help="Frames per clip (at 8 fps).")] = 29,
    seed: Annotated[int, typer.Option("--seed", help="The same seed always gives the same data set.")] = 20261201,
    overwrite: OverwriteOption = False,
    debug: DebugOption = False,
) -> None:
    """Render a training data set in the `show1 train` format; held-out combinations are left out.

    Example: show1 toyworld data toy/ --per-combination 6
    """
    from show1_cli.toyworld.dataset import CAPTIONS, write_dataset

    width, _, height = size.lower().partition("x")
    if not width.isdigit() or not height.isdigit() or int(width) < 8 or int(height) < 8:
        raise InputError(f"--size {size!r} is not WxH", "write for example --size 256x192")
    if (folder / CAPTIONS).exists() and not overwrite:
        raise OutputExistsError(f"{folder} already holds a data set", "pass --overwrite to render it again, or choose another DIR")
    count = write_dataset(folder, height=int(height), width=int(width), per_combination=per_combination, seed=seed, frames=frames)
    err_console.print(f"[green]wrote[/] {count} clips and {folder / CAPTIONS}")


@app.command("analyse")
@command
def analyse(
    video: Annotated[Path, typer.Argument(metavar="VIDEO", help="A video of the toy world, e.g. from --preset micro.", dir_okay=False)],
    prompt: Annotated[str | None, typer.Option("--prompt", help="Compare with this canonical caption (default: the video's).")] = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Read back the colour, shape, motion and background a toy-world video shows; with a prompt, say what matches.

    Example: show1 toyworld analyse demo.mp4
    """
    from show1_cli.toyworld.analyse import analyse as read_back
    from show1_cli.toyworld.world import parse_caption
    from show1_cli.video import read_video

    clip = read_video(video)
    reading = read_back(clip.frames).as_dict()
    prompt = prompt if prompt is not None else clip.metadata.get("prompt")
    result: dict = {"video": str(video), **reading}
    if prompt:
        try:
            wanted = dict(zip(("color", "shape", "motion", "background"), parse_caption(prompt), strict=True))
        except ValueError:
            raise InputError(f"{prompt!r} is not a canonical toy-world caption",
                             'write "a {color} {shape} {motion} on a {background} background"') from None
        result["prompt"] = prompt
        result["matches"] = {key: reading[key] == value for key, value in wanted.items()}
    if as_json:
        typer.echo(json.dumps(result))
        return
    for key in ("color", "shape", "motion", "background"):
        mark = "" if "matches" not in result else ("  ok" if result["matches"][key] else "  differs from the prompt")
        typer.echo(f"{key:<11} {reading[key]}{mark}")
