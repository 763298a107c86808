"""`show1 upscale`."""

from __future__ import annotations

from show1_cli.cli.app import DebugOption, QuietOption, app, command
from show1_cli.errors import StageError


@app.command("upscale")
@command
def upscale(quiet: QuietOption = False, debug: DebugOption = False) -> None:
    """Upscale a video with the pixel (sr1) and latent (sr2) super-resolution stages."""
    raise StageError("`show1 upscale` needs its stage, which this version of show1 does not have yet", "update show1")
