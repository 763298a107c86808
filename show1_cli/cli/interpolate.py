"""`show1 interpolate`."""

from __future__ import annotations

from show1_cli.cli.app import DebugOption, QuietOption, app, command
from show1_cli.errors import StageError


@app.command("interpolate")
@command
def interpolate(quiet: QuietOption = False, debug: DebugOption = False) -> None:
    """Insert three frames between every pair of frames of a video (N frames become 4N-3)."""
    raise StageError("`show1 interpolate` needs its stage, which this version of show1 does not have yet", "update show1")
