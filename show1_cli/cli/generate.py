"""`show1 generate`."""

from __future__ import annotations

from show1_cli.cli.app import DebugOption, QuietOption, app, command
from show1_cli.errors import StageError


@app.command("generate")
@command
def generate(quiet: QuietOption = False, debug: DebugOption = False) -> None:
    """Generate a video from a text prompt."""
    raise StageError("`show1 generate` needs its stage, which this version of show1 does not have yet", "update show1")
