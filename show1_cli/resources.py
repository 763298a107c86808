"""Where the data files shipped with show1 (presets, weights.lock) live.

In a source checkout they sit at the repository root; in an installed wheel they are packaged in
`show1_cli/data/` (see pyproject.toml), so both places are looked at.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_path(name: str) -> Path:
    """The shipped file or folder `name` (for example "presets" or "weights.lock")."""
    for candidate in (_PACKAGE_DIR / "data" / name, _PACKAGE_DIR.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"show1 is installed without its data file {name!r}; reinstall the package")
