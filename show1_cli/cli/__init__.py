"""The `show1` command line: a thin Typer layer over presets, weights, stages and video files."""

from show1_cli.cli import finetune, generate, interpolate, presets, upscale  # noqa: F401  (registers commands)
from show1_cli.cli.app import app

app.add_typer(presets.app, name="presets")


def main() -> None:
    app(prog_name="show1")


__all__ = ["app", "main"]
