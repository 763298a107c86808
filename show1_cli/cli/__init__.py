"""The `show1` command line: a thin Typer layer over presets, weights, stages and video files."""

from show1_cli.cli import finetune, generate, info, interpolate, presets, toyworld, train, upscale, weights  # noqa: F401  (registers commands)
from show1_cli.cli.app import app

app.add_typer(presets.app, name="presets")
app.add_typer(weights.app, name="weights")
app.add_typer(toyworld.app, name="toyworld")


def main() -> None:
    app(prog_name="show1")


__all__ = ["app", "main"]
