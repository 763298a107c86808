"""Frame convolutions as Conv2d (`FramewiseConv3d`, what show1 runs) against nn.Conv3d, measured in one run.

Builds a UNet from a config (default: the micro keyframe model, show1_cli/training/configs/unet-keyframes.json)
with random weights, twice with the same parameters: once with the temporal convs' frame convolutions as
show1 builds them, once put back to plain `nn.Conv3d`. Times a training step (forward and backward, batch 8)
and a guided sampling call (batch 2, no grad) of each, alternating, and reports the fastest of the repeats,
the ratios, and the largest difference between the two models' outputs.

    python benchmarks/temporal_conv.py [--config FILE] [--frames 8 --height 24 --width 32] [--threads N]

Prints the figures and writes them to benchmarks/results/temporal_conv.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from show1_cli.models import UNet3DConditionModel
from show1_cli.models.unet_3d_blocks import FramewiseConv3d

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "show1_cli" / "training" / "configs" / "unet-keyframes.json"
RESULTS = ROOT / "benchmarks" / "results" / "temporal_conv.json"


def with_plain_conv3d(model: UNet3DConditionModel) -> UNet3DConditionModel:
    """A copy of `model` whose frame convolutions are nn.Conv3d again (same parameters)."""
    plain = UNet3DConditionModel.from_config(model.config)
    plain.load_state_dict(model.state_dict())
    for module in plain.modules():
        for name, child in module.named_children():
            if isinstance(child, FramewiseConv3d):
                conv = torch.nn.Conv3d(child.in_channels, child.out_channels, child.kernel_size, padding=child.padding)
                conv.weight, conv.bias = child.weight, child.bias
                setattr(module, name, conv)
    return plain


def inputs(model: UNet3DConditionModel, batch: int, frames: int, height: int, width: int) -> dict:
    config = model.config
    generator = torch.Generator().manual_seed(0)
    return {
        "sample": torch.randn(batch, config.in_channels, frames, height, width, generator=generator),
        "timestep": torch.randint(0, 1000, (batch,), generator=generator),
        "encoder_hidden_states": torch.randn(batch, 12, config.encoder_hid_dim or config.cross_attention_dim, generator=generator),
    }


def training_step(model, batch) -> None:
    model.train()
    model(**batch).sample.square().mean().backward()
    model.zero_grad(set_to_none=True)


def sampling_call(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).sample


def seconds_of(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=24)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant, alternating (the fastest counts)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = {key: value for key, value in json.loads(args.config.read_text()).items() if not key.startswith("_")}
    torch.manual_seed(0)
    framewise = UNet3DConditionModel.from_config(config)
    plain = with_plain_conv3d(framewise)
    train_batch = inputs(framewise, 8, args.frames, args.height, args.width)
    sample_batch = inputs(framewise, 2, args.frames, args.height, args.width)

    figures = {}
    for task, function, batch in (("training step", training_step, train_batch), ("sampling call", sampling_call, sample_batch)):
        for model in (framewise, plain):
            function(model, batch)  # warm-up
        seconds = {"framewise": [], "conv3d": []}
        for _ in range(args.repeats):
            seconds["framewise"].append(seconds_of(function, framewise, batch))
            seconds["conv3d"].append(seconds_of(function, plain, batch))
        best = {name: min(values) for name, values in seconds.items()}
        figures[task] = {"conv3d_s": round(best["conv3d"], 4), "framewise_s": round(best["framewise"], 4),
                         "speedup": round(best["conv3d"] / best["framewise"], 2)}
    difference = (sampling_call(framewise, sample_batch) - sampling_call(plain, sample_batch)).abs().max().item()

    result = {
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "video": [args.frames, args.height, args.width],
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "max_abs_difference": difference,
        **figures,
    }
    for task in ("training step", "sampling call"):
        f = figures[task]
        print(f"{task:14}  conv3d {f['conv3d_s']:.3f} s  framewise {f['framewise_s']:.3f} s  speedup {f['speedup']:.2f}x")
    print(f"max abs difference of the outputs: {difference:.2e}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
