"""Batched against one-window-at-a-time interpolation, measured in one run on the tiny checkpoints.

Interpolates 8 frames to 29 (7 windows of 5 frames, default 64x40, guidance 4) twice with the same seed:
all windows in one UNet batch per step (what show1 does) and one window per call (what the original
does), and reports the wall times, their ratio and the largest difference between the two results.

    python benchmarks/interpolation_batching.py [--steps N] [--device cpu|cuda] [--weights DIR]

Prints the figures and writes them to benchmarks/results/interpolation_batching.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.tiny_checkpoints when run as a script

from show1_cli.models import load_unet  # noqa: E402
from show1_cli.runtime import ModelStore, resolve_runtime  # noqa: E402
from show1_cli.stages.interpolate import interpolate_video  # noqa: E402
from show1_cli.stages.sampling import load_scheduler  # noqa: E402
from show1_cli.text import encode_texts  # noqa: E402
from tests.tiny_checkpoints import BASE, INTERPOLATION, write_tiny_weights  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "interpolation_batching.json"


def timed(function) -> tuple[float, torch.Tensor]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=40)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per variant (the fastest counts)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", type=Path, help="a folder written by `python -m tests.tiny_checkpoints` (default: a fresh one)")
    args = parser.parse_args()

    runtime = resolve_runtime(args.device, "fp32", "none")
    with tempfile.TemporaryDirectory() as scratch:
        weights = args.weights or write_tiny_weights(Path(scratch), (BASE, INTERPOLATION))
        prompt = "a bird flies over snowy mountains"
        embeddings = encode_texts([prompt, ""], ModelStore(runtime), weights / BASE)
        unet = load_unet(weights / INTERPOLATION).to(runtime.device)
        scheduler = load_scheduler(weights / INTERPOLATION)
        video = torch.rand(args.frames, 3, args.height, args.width, generator=torch.Generator().manual_seed(0)) * 2 - 1

        def run(windows_per_call: int | None) -> torch.Tensor:
            return interpolate_video(
                unet, scheduler, video, prompt_embeds=embeddings[prompt], negative_embeds=embeddings[""], steps=args.steps,
                guidance_scale=4.0, generator=torch.Generator().manual_seed(1), windows_per_call=windows_per_call,
                device=runtime.device,
            )

        run(None)  # warm-up (allocator, kernels)
        batched_times, single_times = [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both variants alike
            seconds, batched = timed(lambda: run(None))
            batched_times.append(seconds)
            seconds, one_by_one = timed(lambda: run(1))
            single_times.append(seconds)

    windows = args.frames - 1
    figures = {
        "device": str(runtime.device),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "video": f"{args.frames} frames {args.width}x{args.height} -> {batched.shape[0]} frames",
        "windows": windows,
        "steps": args.steps,
        "unet_calls_batched": args.steps,
        "unet_calls_one_by_one": args.steps * windows,
        "batched_seconds": round(min(batched_times), 3),
        "one_by_one_seconds": round(min(single_times), 3),
        "speedup": round(min(single_times) / min(batched_times), 2),
        "max_abs_difference": float((batched - one_by_one).abs().max()),
    }
    for key, value in figures.items():
        print(f"{key:>22}: {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
