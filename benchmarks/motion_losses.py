"""Which `--loss` teaches the motion of a clip best? The measurement behind the default (docs/losses.md).

Each loss setting fine-tunes the same tiny show-1-base UNet (tests/tiny_checkpoints.py, random weights;
or the real one with --weights), with the same seeds, steps, learning rate, prompt and the default `qkv`
parameter set, on a synthetic reference clip: a square crossing a still, textured background (8 frames
at the keyframe size 40x64). Then, on held-out noise draws at timesteps 100-700, each model denoises the
noised clip in one step, x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t), and we measure how well
x0_hat moves like the clip:

- trajectory error: mean distance (pixels) between the square's centre tracked in x0_hat and in the clip;
- motion correlation: Pearson correlation of the frame-to-frame differences of x0_hat and of the clip;
- appearance leak (new look only): correlation of what training changed in x0_hat with the difference
  between the reference's and the new look's mean frames (0: nothing of the reference's look leaked).

Trajectory and correlation are measured on the training clip ("same") and on a clip with the same motion
but another background and square colour ("new look"): motion customization must carry the motion over
to other content. The base model (no training) is the first row; trained rows are means over seeds with
their standard deviation. A random tiny UNet is no video model, so absolute numbers mean little; what is
compared is how far the same training budget moves each loss toward the motion.

    python benchmarks/motion_losses.py [--steps N] [--lr LR] [--seeds N] [--losses motion,mse,...]
                                       [--device cpu|cuda] [--weights DIR-with-show-1-base/]

Prints a table and writes benchmarks/results/motion_losses.json. About 3 minutes on 2 CPU cores.
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
sys.path.insert(0, str(ROOT))  # for tests.* when run as a script

from show1_cli.finetune.train import EPSILON_CHANNELS, TrainSettings, noise_scheduler_from_config, train_motion  # noqa: E402
from show1_cli.models import load_unet  # noqa: E402
from show1_cli.runtime import ModelStore, resolve_runtime  # noqa: E402
from show1_cli.text import encode_texts  # noqa: E402
from show1_cli.training.losses import parse_loss  # noqa: E402
from tests.motion_clips import SQUARE_COLOUR, moving_square_clip, square_centres  # noqa: E402
from tests.tiny_checkpoints import BASE, write_tiny_weights  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "motion_losses.json"
FRAMES, HEIGHT, WIDTH = 8, 40, 64
EVAL_TIMESTEPS = (100, 250, 400, 550, 700)
EVAL_DRAWS = 3  # noise draws per timestep
NEW_LOOK = {"seed": 7, "colour": (-0.1, 0.9, 0.8)}  # same motion, other background and square colour
DEFAULT_LOSSES = "motion,mse,debiased,motion+0.1*mse"
PROMPT = "a square moving from left to right"


@torch.no_grad()
def denoised(unet, schedule, clip: torch.Tensor, text: torch.Tensor, device) -> list[torch.Tensor]:
    """The one-step denoised clip x0_hat, (F, 3, H, W), for each fixed (timestep, noise) draw."""
    unet.eval()
    clean = clip.permute(1, 0, 2, 3).unsqueeze(0).to(device)
    generator = torch.Generator().manual_seed(2024)
    outputs = []
    for t in EVAL_TIMESTEPS:
        alpha = schedule.alphas_cumprod[t]
        for _ in range(EVAL_DRAWS):
            noise = torch.randn(clean.shape, generator=generator).to(device)
            noisy = schedule.add_noise(clean, noise, torch.tensor([t], device=device))
            eps = unet(noisy, t, text.to(device)).sample[:, :EPSILON_CHANNELS]
            outputs.append(((noisy - (1 - alpha).sqrt() * eps) / alpha.sqrt())[0].transpose(0, 1).cpu().clamp(-1, 1))
    return outputs


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def motion_scores(outputs: list[torch.Tensor], clip: torch.Tensor, colour) -> dict[str, float]:
    """Trajectory error (pixels) and motion correlation of the denoised clips against the clip."""
    truth = square_centres(clip, colour)
    errors = [(square_centres(x0, colour) - truth).norm(dim=1).mean().item() for x0 in outputs]
    correlations = [correlation(x0[1:] - x0[:-1], clip[1:] - clip[:-1]) for x0 in outputs]
    return {"trajectory_error_px": mean(errors), "motion_correlation": mean(correlations)}


def appearance_leak(trained: list[torch.Tensor], base: list[torch.Tensor], towards: torch.Tensor, away: torch.Tensor) -> float:
    """How much training moved the denoised new-look clip toward the reference's appearance: correlation of
    (trained - base) output with (reference mean frame - new-look mean frame). 0: no leak."""
    direction = (towards.mean(dim=0) - away.mean(dim=0)).expand_as(trained[0])
    return mean([correlation(t - b, direction) for t, b in zip(trained, base, strict=True)])


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def spread(values: list[float]) -> float:
    """Standard deviation across training seeds (0 with one seed)."""
    m = mean(values)
    return (sum((v - m) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5


METRICS = (
    ("same", "trajectory_error_px"),
    ("new_look", "trajectory_error_px"),
    ("same", "motion_correlation"),
    ("new_look", "motion_correlation"),
    ("new_look", "appearance_leak"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per loss setting")
    parser.add_argument("--losses", default=DEFAULT_LOSSES, help="comma-separated --loss settings")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weights", type=Path, help="folder holding show-1-base/ (default: tiny weights in a temporary folder)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args()
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as scratch:
        weights = args.weights or write_tiny_weights(Path(scratch), [BASE])
        config = json.loads((weights / BASE / "scheduler" / "scheduler_config.json").read_text())
        schedule = noise_scheduler_from_config(config)
        schedule.alphas_cumprod = schedule.alphas_cumprod.to(device)
        reference = moving_square_clip(FRAMES, HEIGHT, WIDTH)
        new_look = moving_square_clip(FRAMES, HEIGHT, WIDTH, **NEW_LOOK)
        runtime = resolve_runtime(args.device, "fp32", "none")
        text = encode_texts([PROMPT], ModelStore(runtime), weights / BASE)[PROMPT]
        base_unet = load_unet(weights / BASE, device=device)
        base_out = {"same": denoised(base_unet, schedule, reference, text, device),
                    "new_look": denoised(base_unet, schedule, new_look, text, device)}
        del base_unet

        def scores(outputs) -> dict[str, dict[str, float]]:
            result = {"same": motion_scores(outputs["same"], reference, SQUARE_COLOUR),
                      "new_look": motion_scores(outputs["new_look"], new_look, NEW_LOOK["colour"])}
            if outputs is not base_out:
                leak = appearance_leak(outputs["new_look"], base_out["new_look"], reference, new_look)
                result["new_look"]["appearance_leak"] = leak
            return result

        rows: dict[str, dict] = {"base": {"scores": scores(base_out)}}
        for setting in args.losses.split(","):
            runs = []
            for seed in range(args.seeds):
                unet = load_unet(weights / BASE, device=device)
                settings = TrainSettings(steps=args.steps, lr=args.lr, loss=parse_loss(setting), seed=seed)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                started = time.perf_counter()
                train_motion(unet, schedule, reference, text, settings)
                seconds = time.perf_counter() - started
                outputs = {"same": denoised(unet, schedule, reference, text, device),
                           "new_look": denoised(unet, schedule, new_look, text, device)}
                run = {"seed": seed, "scores": scores(outputs), "seconds_per_step": seconds / args.steps}
                if device.type == "cuda":
                    run["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
                runs.append(run)
            rows[setting] = {
                "scores": {look: {metric: mean([r["scores"][look][metric] for r in runs]) for metric in runs[0]["scores"][look]}
                           for look in ("same", "new_look")},
                "spread": {f"{look}.{metric}": spread([r["scores"][look][metric] for r in runs]) for look, metric in METRICS},
                "seconds_per_step": mean([r["seconds_per_step"] for r in runs]),
                "runs": runs,
            }

    header = ["traj err same", "traj err new", "motion corr same", "motion corr new", "leak new"]
    print(f"{'loss':<16}" + "".join(f"{h:>19}" for h in header) + f"{'s/step':>8}")
    for name, row in rows.items():
        cells = []
        for look, metric in METRICS:
            value = row["scores"][look].get(metric)
            err = row.get("spread", {}).get(f"{look}.{metric}")
            cells.append((f"{value:>10.3f}" if value is not None else f"{'-':>10}") + (f" +-{err:<6.3f}" if err is not None else " " * 9))
        print(f"{name:<16}" + "".join(f"{c:>19}" for c in cells) + f"{row.get('seconds_per_step', 0):>8.3f}")
    trained = [name for name in rows if name != "base"]
    best = min(trained, key=lambda name: rows[name]["scores"]["new_look"]["trajectory_error_px"])
    print(f"lowest trajectory error on the new look: {best}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "benchmark": "motion_losses",
        "settings": {"prompt": PROMPT, "weights": str(args.weights or "tiny"), "steps": args.steps,
                      "lr": args.lr, "seeds": args.seeds, "frames": FRAMES, "height": HEIGHT, "width": WIDTH,
                     "eval_timesteps": EVAL_TIMESTEPS, "eval_draws": EVAL_DRAWS, "parameter_set": "qkv"},
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "rows": rows, "lowest_trajectory_error_new_look": best,
    }, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
