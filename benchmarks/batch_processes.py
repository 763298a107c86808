"""Items per second of a prompts-file batch with 1 process and with 2 processes under torchrun, on the CPU.

Runs the real command on the tiny test checkpoints (written to a temporary folder), each process
single-threaded (OMP_NUM_THREADS=1), so 2 processes use 2 cores where 1 uses one:

    show1 generate --prompts P --out-dir D --seed 7 --json                        (1 process)
    torchrun --standalone --nproc-per-node 2 -m show1_cli generate ... (same)     (2 processes)

The two are run alternately, `--repeats` times each, into fresh folders, so both see the same machine
load; the medians are reported. Two rates per run: over the batch itself (from each process's JSON
summary: model loading, text encoding and the items; the slowest process counts) and over the whole
command (wall clock, including Python and launcher start-up). The 1-minute load average before and
after is recorded: on a machine whose cores are busy with other work the ratio says less than it would
on idle cores.

    python benchmarks/batch_processes.py [--items 16] [--repeats 2] [--steps 8]

Prints the figures and writes them to benchmarks/results/batch_processes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tiny_checkpoints import write_tiny_weights  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "batch_processes.json"
LAUNCHERS = {
    1: [sys.executable, "-m", "show1_cli"],
    2: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "show1_cli"],
}


def run_batch(processes: int, prompts: Path, out_dir: Path, settings: list[str], env: dict[str, str]) -> dict[str, float]:
    command = [*LAUNCHERS[processes], "generate", "--prompts", str(prompts), "--out-dir", str(out_dir), "--seed", "7", "--json",
               "--device", "cpu", *settings]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{run.stderr[-3000:]}")
    summaries = [json.loads(line)["summary"] for line in run.stdout.splitlines() if line.startswith('{"summary"')]
    done = sum(summary["done"] for summary in summaries)
    batch_seconds = max(summary["seconds"] for summary in summaries)
    return {"done": done, "batch_seconds": batch_seconds, "wall_seconds": wall,
            "items_per_second_batch": done / batch_seconds, "items_per_second_wall": done / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="keyframe denoising steps per item")
    args = parser.parse_args()

    settings = ["--stages", "keyframes"] + [arg for item in (f"keyframes.steps={args.steps}", "keyframes.frames=4",
                                                             "keyframes.height=32", "keyframes.width=64")
                                            for arg in ("--set", item)]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        weights = write_tiny_weights(work / "weights")
        prompts = work / "prompts.txt"
        prompts.write_text("".join(f"prompt number {index}: a ball rolling\n" for index in range(args.items)), encoding="utf-8")
        env = {**os.environ, "SHOW1_WEIGHTS_DIR": str(weights), "SHOW1_WEIGHTS_LOCK": str(weights / "weights.lock"),
               "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        load_before = os.getloadavg()[0]
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for repeat in range(args.repeats):
            for processes in (1, 2):
                result = run_batch(processes, prompts, work / f"out-{processes}-{repeat}", settings, env)
                assert result["done"] == args.items, result
                runs[processes].append(result)
                print(f"repeat {repeat + 1}, {processes} process(es): {result['items_per_second_batch']:.2f} items/s in the batch, "
                      f"{result['items_per_second_wall']:.2f} items/s wall clock")
        load_after = os.getloadavg()[0]

    median = {processes: {key: statistics.median(run[key] for run in results) for key in results[0]}
              for processes, results in runs.items()}
    ratio_batch = median[2]["items_per_second_batch"] / median[1]["items_per_second_batch"]
    ratio_wall = median[2]["items_per_second_wall"] / median[1]["items_per_second_wall"]
    report = {
        "items": args.items,
        "repeats": args.repeats,
        "settings": settings,
        "median": {f"{processes}_process": values for processes, values in median.items()},
        "runs": {f"{processes}_process": results for processes, results in runs.items()},
        "speedup_2_over_1_batch": ratio_batch,
        "speedup_2_over_1_wall": ratio_wall,
        "machine": {"cpus": os.cpu_count(), "load_1min_before": load_before, "load_1min_after": load_after,
                    "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__},
    }
    print(f"1 process:   {median[1]['items_per_second_batch']:.2f} items/s in the batch, "
          f"{median[1]['items_per_second_wall']:.2f} items/s wall clock")
    print(f"2 processes: {median[2]['items_per_second_batch']:.2f} items/s in the batch, "
          f"{median[2]['items_per_second_wall']:.2f} items/s wall clock")
    print(f"2 over 1: x{ratio_batch:.2f} in the batch, x{ratio_wall:.2f} wall clock "
          f"({os.cpu_count()} CPUs, 1-minute load {load_before:.2f} before, {load_after:.2f} after)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
