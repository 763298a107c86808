"""`show1 finetune-motion`."""

from __future__ import annotations

from show1_cli.cli.app import DebugOption, QuietOption, app, command
from show1_cli.errors import StageError


@app.command("finetune-motion")
@command
def finetune_motion(quiet: QuietOption = False, debug: DebugOption = False) -> None:
    """Teach the keyframe model the motion of a reference clip."""
    raise StageError("`show1 finetune-motion` needs its stage, which this version of show1 does not have yet", "update show1")
