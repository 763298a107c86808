"""The errors `show1` reports to its users.

Every failure a user can act on is a `Show1Error` carrying what went wrong and how to fix it. The CLI
prints it as one line and exits with `exit_code`; anything else is a bug and shows a traceback with
`--debug`.
"""

from __future__ import annotations


class Show1Error(Exception):
    """A failure the user can act on: `message` names the problem, `fix` the way out."""

    exit_code = 1

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class InputError(Show1Error):
    """Bad input: an option, a preset, a prompt file, a video or adapter file that cannot be used."""

    exit_code = 2


class OutputExistsError(InputError):
    """The output path already exists and `--overwrite` was not given."""


class WeightsError(Show1Error):
    """A model component is missing, corrupt, gated or does not match the expected layout."""


class StageError(Show1Error):
    """A stage could not run (for example out of accelerator memory)."""
