"""Peak memory of sr2's VAE decoding, frame by frame (slicing, what show1 does) against all frames at once.

Builds an AutoencoderKL with the real sr2/zeroscope VAE configuration (SD layout: 128-256-512-512 channels,
2 layers per block, 4 latent channels; random weights - memory and time do not depend on the values) and
decodes the latents of a 576x320 clip of 29 frames both ways, each variant in its own subprocess so that
one's allocations cannot hide the other's peak:
- on CUDA, the peak allocated accelerator memory (torch.cuda.max_memory_allocated) of the decode;
- on the CPU, the peak resident memory of the process (ru_maxrss), and its increase over the resident
  memory just before the decode (model and latents loaded).

Decoding everything at once needs memory proportional to the frame count (on the CPU, tens of GB for 29
frames). When that would not fit in the memory this machine has available, the all-at-once variant is
measured at smaller frame counts and extended linearly to the requested count, and the result says so.

    python benchmarks/sr2_vae_decoding.py [--frames 29] [--height 320] [--width 576] [--device cpu|cuda]

Prints the figures and writes them to benchmarks/results/sr2_vae_decoding.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from show1_cli.stages.sr2 import configure_vae, decode_latents  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "sr2_vae_decoding.json"
# The VAE of zeroscope_v2_576w / show-1-sr2 (the Stable Diffusion 2 VAE layout).
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=768,
    scaling_factor=0.18215,
)
GiB = 1024**3


def rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_now_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def available_bytes() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def child(frames: int, height: int, width: int, slicing: bool, device: str, dtype: str) -> dict:
    """One measurement, in this (fresh) process."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    vae = AutoencoderKL(**VAE_CONFIG).to(device, torch_dtype).eval()
    configure_vae(vae, height, width, slicing=slicing)
    latents = torch.randn(frames, 4, height // 8, width // 8, device=device, dtype=torch_dtype)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss_now_bytes()
    started = time.perf_counter()
    with torch.no_grad():
        video = decode_latents(vae, latents)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = rss_peak_bytes()
    seconds = time.perf_counter() - started
    assert video.shape == (frames, 3, height, width)
    return {"frames": frames, "slicing": slicing, "seconds": round(seconds, 2), "peak_bytes": peak, "before_bytes": before,
            "decode_bytes": peak - before}


def measure(frames: int, args: argparse.Namespace, slicing: bool) -> dict:
    command = [sys.executable, __file__, "--child", "--frames", str(frames), "--height", str(args.height), "--width", str(args.width),
               "--device", args.device, "--dtype", args.dtype] + (["--slicing"] if slicing else [])
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {'sliced' if slicing else 'at once'}, {frames:2d} frames: peak {result['peak_bytes'] / GiB:6.2f} GiB "
          f"(decode {result['decode_bytes'] / GiB:6.2f} GiB), {result['seconds']:7.1f} s", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=29)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=576)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="fp16 on CUDA, fp32 on the CPU by default")
    parser.add_argument("--slicing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")
    if args.child:
        print(json.dumps(child(args.frames, args.height, args.width, args.slicing, args.device, args.dtype)))
        return 0

    print(f"sr2 VAE decoding, {args.frames} frames at {args.width}x{args.height}, {args.device} {args.dtype}")
    sliced = measure(args.frames, args, slicing=True)
    # One frame at once shows what each extra frame costs; decide whether all of them fit.
    small = [measure(count, args, slicing=False) for count in (1, 2)]
    per_frame = small[1]["decode_bytes"] - small[0]["decode_bytes"]
    fixed = small[0]["decode_bytes"] - per_frame
    needed = small[0]["before_bytes"] + fixed + per_frame * args.frames
    room = torch.cuda.mem_get_info()[0] if args.device.startswith("cuda") else available_bytes()
    if needed < 0.7 * room:
        at_once = measure(args.frames, args, slicing=False)
        at_once["measured"] = True
    else:
        larger = measure(4, args, slicing=False)
        per_frame = (larger["decode_bytes"] - small[0]["decode_bytes"]) / 3
        decode = small[0]["decode_bytes"] + per_frame * (args.frames - 1)
        at_once = {"frames": args.frames, "slicing": False, "measured": False, "decode_bytes": int(decode),
                   "peak_bytes": int(small[0]["before_bytes"] + decode),
                   "seconds": round(larger["seconds"] / 4 * args.frames, 1),
                   "note": f"extended linearly from 1, 2 and 4 frames: about {needed / GiB:.1f} GiB would be needed, "
                           f"{room / GiB:.1f} GiB is available", "samples": [*small, larger]}
        print(f"  at once, {args.frames} frames: does not fit here ({at_once['note']}): "
              f"peak about {at_once['peak_bytes'] / GiB:.2f} GiB (decode {decode / GiB:.2f} GiB)")
    ratio = at_once["decode_bytes"] / max(sliced["decode_bytes"], 1)
    print(f"decode memory at once / sliced: {ratio:.1f}x")
    report = {
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "device": args.device,
        "dtype": args.dtype,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
        "vae_config": {key: list(value) if isinstance(value, tuple) else value for key, value in VAE_CONFIG.items()},
        "sliced": sliced,
        "at_once": at_once,
        "at_once_small": small,
        "decode_memory_ratio": round(ratio, 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
