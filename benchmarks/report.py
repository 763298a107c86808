"""Where a benchmark's figures go: a JSON file under benchmarks/results/ (or --output), announced on stdout."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(path: Path, figures: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
