"""Start time of the `show1` command: how long the answers that load no model take.

Times, in fresh processes, `show1 --help`, `show1 --version`, `show1 presets list`, `show1 generate --help`
and an input error (`show1 generate "a cat"` without -o), each the median of several runs. With
`--baseline REV`, the same commands run from that git revision's show1_cli (exported to a temporary
folder), interleaved run by run with the working tree's, so a busy machine slows both alike; the ratio
is baseline median / current median.

    python benchmarks/start_time.py [--runs 7] [--baseline REV]

Prints the figures and writes them to benchmarks/results/start_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "start_time.json"
COMMANDS = {
    "--help": ["--help"],
    "--version": ["--version"],
    "presets list": ["presets", "list"],
    "generate --help": ["generate", "--help"],
    "input error": ["generate", "a cat"],  # missing -o: exit 2 before any model loads
}
# What the package needs to run from a folder on PYTHONPATH.
PACKAGE_PATHS = ["show1_cli", "presets", "weights.lock"]


def export_revision(revision: str, folder: Path) -> None:
    """Write `revision`'s show1_cli, presets and weights.lock into `folder`."""
    archive = subprocess.run(["git", "archive", revision, *PACKAGE_PATHS], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")


def time_once(source: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "show1_cli", *args], env=env, cwd=tempfile.gettempdir(), capture_output=True)
    seconds = time.perf_counter() - started
    expected = 2 if args == COMMANDS["input error"] else 0
    if done.returncode != expected:
        raise SystemExit(f"show1 {' '.join(args)} from {source} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="runs per command and source (median reported)")
    parser.add_argument("--baseline", metavar="REV", help="also time this git revision, interleaved with the working tree")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        sources = {"current": ROOT}
        if args.baseline:
            sources["baseline"] = Path(temp)
            export_revision(args.baseline, sources["baseline"])
        times: dict[str, dict[str, list[float]]] = {name: {label: [] for label in COMMANDS} for name in sources}
        for _ in range(args.runs):
            for label, command in COMMANDS.items():
                for name, source in sources.items():
                    times[name][label].append(time_once(source, command))

    medians = {name: {label: statistics.median(runs) for label, runs in by_command.items()} for name, by_command in times.items()}
    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "runs_per_command": args.runs,
        "median_seconds": {name: {label: round(value, 3) for label, value in by.items()} for name, by in medians.items()},
    }
    if args.baseline:
        revision = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, capture_output=True, text=True)
        result["baseline"] = revision.stdout.strip() or args.baseline
        result["speedup"] = {label: round(medians["baseline"][label] / medians["current"][label], 1) for label in COMMANDS}

    print(f"{'command':<18}" + "".join(f"{name:>12}" for name in sources) + ("     speedup" if args.baseline else ""))
    for label in COMMANDS:
        row = f"{label:<18}" + "".join(f"{medians[name][label]:>11.3f}s" for name in sources)
        if args.baseline:
            row += f"{result['speedup'][label]:>11.1f}x"
        print(row)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
