"""`show1 presets`: list the shipped presets and show one fully resolved."""

from __future__ import annotations

import typer
import yaml
from rich.console import Console
from rich.table import Table

from show1_cli.cli.app import DebugOption, SetOption, command
from show1_cli.cli.help import Typer
from show1_cli.presets import available_presets, load_preset

app = Typer(help="List and inspect presets.", no_args_is_help=True)


@app.command("list")
@command
def list_presets(debug: DebugOption = False) -> None:
    """List the shipped presets with their stages, output size and steps.

    Example: show1 presets list
    """
    table = Table("preset", "stages", "output (frames x W x H)", "steps per stage", "fps")
    for name in available_presets():
        preset = load_preset(name)
        frames, height, width = preset.output_shape()
        steps = " / ".join(f"{stage} {getattr(preset, stage).steps}" for stage in preset.stages)
        table.add_row(name, ", ".join(preset.stages), f"{frames} x {width} x {height}", steps, f"{preset.fps:g}")
    Console().print(table)


@app.command("show")
@command
def show_preset(
    name: str = typer.Argument(..., help="Preset name or path to a YAML file."),
    overrides: SetOption = None,
    debug: DebugOption = False,
) -> None:
    """Print a preset as YAML, with its base presets and any --set overrides applied.

    Example: show1 presets show fast --set sr1.steps=60 > my-preset.yaml
    """
    preset = load_preset(name, overrides or [])
    typer.echo(yaml.safe_dump(preset.to_dict(), sort_keys=False, allow_unicode=True), nl=False)
