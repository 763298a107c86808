"""show1 against the official Show-1 flow, stage by stage, on the same tiny random-weight checkpoints.

The official side runs in its own environment (`--official-python`: an interpreter where the official
pipelines import, i.e. diffusers 0.19 and transformers 4.29, see benchmarks/official/requirements.txt)
through benchmarks/official/run_official.py, which calls the pipelines of a checkout of the official
repository (`--official`) unmodified, in the order and with the settings of its run_inference.py. show1 runs
its stage functions with its default preset. Both sides: the checkpoints written by tests/tiny_checkpoints.py
(the real hub layouts), CPU, fp32, the same seed and `--steps` steps per stage.

Every show1 stage is fed what the official stage got: the official text states and the official output of
the stage before (unclamped, as the script hands it on). Its output is compared with the official one, both
clamped to [-1, 1] (show1's videos are): the largest absolute difference. Further rows measure what a user
of show1 sees besides: its own text encoders, batched interpolation windows, clamped hand-overs between
stages, and sr2's float resize instead of the script's 8-bit images.

The random-weight test models are far more sensitive than trained ones: their first sampling step (t = 995,
where x0 = (x - sigma * eps) / alpha with sigma / alpha near 160, times the guidance scale) turns a 1e-4
change of a stage's input into differences of 0.1 or more. Rows that chain such differences say so.

    python benchmarks/official_parity.py --official PATH/TO/Show-1 --official-python PATH/TO/venv/bin/python [--steps N]

Prints a table and writes benchmarks/results/official_parity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.tiny_checkpoints when run as a script

from show1_cli.models import load_unet  # noqa: E402
from show1_cli.presets import load_preset  # noqa: E402
from show1_cli.runtime import ModelStore, resolve_runtime  # noqa: E402
from show1_cli.stages import first_frame, interpolate, keyframes, sr1, sr2  # noqa: E402
from show1_cli.stages.sampling import load_scheduler  # noqa: E402
from show1_cli.text import encode_texts  # noqa: E402
from tests.tiny_checkpoints import write_tiny_weights  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "official_parity.json"
OFFICIAL_RUNNER = ROOT / "benchmarks" / "official" / "run_official.py"
PROMPT = "A burning lamborghini driving on rainbow."  # run_inference.py's prompt and seed
SEED = 345
TOLERANCE = 1e-3
STEPPED = ("keyframes", "interpolate", "first_frame", "sr1", "sr2")


@dataclass
class Row:
    name: str
    show1: torch.Tensor
    official: torch.Tensor
    video: bool = True  # compared in [-1, 1]; embeddings are compared as they are
    note: str = ""

    def difference(self) -> float:
        official = self.official.clamp(-1, 1) if self.video else self.official
        return float((self.show1.float() - official.float()).abs().max())


def frames(video: torch.Tensor) -> torch.Tensor:
    """The pipelines' (1, 3, F, H, W) -> show1's (F, 3, H, W)."""
    return video[0].transpose(0, 1)


def run_official(args: argparse.Namespace, weights: Path, out: Path) -> dict:
    command = [str(args.official_python), str(OFFICIAL_RUNNER), "--official", str(args.official), "--weights", str(weights),
               "--steps", str(args.steps), "--seed", str(args.seed), "--prompt", args.prompt, "--out", str(out)]
    subprocess.run(command, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"})
    return torch.load(out, weights_only=True)


class Recording:
    """A scheduler that keeps the sample after every step, as the official pipelines' callback sees it."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.samples: list[torch.Tensor] = []

    def __getattr__(self, name: str):
        return getattr(self.scheduler, name)

    def step(self, *args, **kwargs):
        result = self.scheduler.step(*args, **kwargs)
        self.samples.append(result[0].clone())
        return result


class Show1Side:
    """show1's stage functions with its default preset (steps aside) on the weights folder, CPU, fp32."""

    def __init__(self, weights: Path, seed: int, steps: int):
        self.preset = load_preset("default", [f"{stage}.steps={steps}" for stage in STEPPED])
        self.weights = weights
        self.seed = seed
        self.seconds: dict[str, float] = {}

    def timed(self, name: str, function, *args) -> torch.Tensor:
        started = time.perf_counter()
        result = function(*args)
        self.seconds[name] = round(time.perf_counter() - started, 2)
        return result

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def unet(self, component: str):
        if component == first_frame.COMPONENT:
            from diffusers import UNet2DConditionModel

            return UNet2DConditionModel.from_pretrained(self.weights / component, subfolder="unet")
        return load_unet(self.weights / component)

    def schedulers(self, component: str) -> tuple:
        root = self.weights / component
        return load_scheduler(root), load_scheduler(root, "image_noising_scheduler")

    def t5_states(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        runtime = resolve_runtime("cpu", "fp32", "none")
        states = encode_texts([prompt, ""], ModelStore(runtime), self.weights / keyframes.COMPONENT)
        return states[prompt], states[""]

    def clip_states(self, prompt: str) -> torch.Tensor:
        from transformers import CLIPTextModel, CLIPTokenizer

        root = self.weights / sr2.COMPONENT
        encoder = CLIPTextModel.from_pretrained(root, subfolder="text_encoder").eval()
        tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
        return sr2.encode_prompt(tokenizer, encoder, [self.preset.sr2.negative_prompt, prompt], "cpu")

    def keyframes(self, text: tuple) -> torch.Tensor:
        settings = self.preset.keyframes
        return keyframes.generate_keyframes(
            self.unet(keyframes.COMPONENT), load_scheduler(self.weights / keyframes.COMPONENT), prompt_embeds=text[0],
            negative_embeds=text[1], frames=settings.frames, height=settings.height, width=settings.width, steps=settings.steps,
            guidance_scale=settings.guidance_scale, generator=self.generator(),
        )

    def interpolation(self, video: torch.Tensor, text: tuple, windows_per_call: int | None = None) -> torch.Tensor:
        settings = self.preset.interpolate
        return interpolate.interpolate_video(
            self.unet(interpolate.COMPONENT), load_scheduler(self.weights / interpolate.COMPONENT), video,
            prompt_embeds=text[0], negative_embeds=text[1], steps=settings.steps, guidance_scale=settings.guidance_scale,
            generator=self.generator(), windows_per_call=windows_per_call,
        )

    def first_frame(self, frame: torch.Tensor, text: tuple) -> torch.Tensor:
        settings = self.preset.first_frame
        return first_frame.upscale_image(
            self.unet(first_frame.COMPONENT), *self.schedulers(first_frame.COMPONENT), frame, height=self.preset.sr1.height,
            width=self.preset.sr1.width, prompt_embeds=text[0], negative_embeds=text[1], steps=settings.steps,
            guidance_scale=settings.guidance_scale, noise_level=settings.noise_level, generator=self.generator(),
        )

    def sr1(self, video: torch.Tensor, anchor: torch.Tensor, text: tuple, scheduler=None) -> torch.Tensor:
        settings = self.preset.sr1
        sampling, noising = self.schedulers(sr1.COMPONENT)
        return sr1.super_resolve(
            self.unet(sr1.COMPONENT), scheduler or sampling, noising, video, height=settings.height, width=settings.width,
            prompt_embeds=text[0], negative_embeds=text[1], steps=settings.steps, guidance_scale=settings.guidance_scale,
            noise_level=settings.noise_level, window=settings.window, stride=settings.stride, generator=self.generator(),
            first_frame=anchor,
        )

    def sr1_windows(self, video: torch.Tensor, official: dict, text: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """sr1 window by window, each anchored on the frame the official flow anchored it on: (show1, official)
        windows side by side, as (windows * frames, 3, H, W)."""
        settings = self.preset.sr1
        ours, theirs = [], []
        for index, (start, end) in enumerate(sr1.windows(video.shape[0], settings.window, settings.stride)):
            before = official["sr1_windows"][index - 1][0, :, settings.stride] if index else official["first_frame"][0]
            ours.append(self.sr1(video[start:end], before, text))
            theirs.append(frames(official["sr1_windows"][index]))
        return torch.cat(ours), torch.cat(theirs)

    def sr2(self, video: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
        settings = self.preset.sr2
        root = self.weights / sr2.COMPONENT
        return sr2.translate(
            self.unet(sr2.COMPONENT), sr2.load_vae(root), load_scheduler(root), video, height=settings.height,
            width=settings.width, prompt_embeds=clip[1:], negative_embeds=clip[:1], steps=settings.steps,
            guidance_scale=settings.guidance_scale, strength=settings.strength, generator=self.generator(),
        )


def compare(official: dict, show1: Show1Side, prompt: str) -> tuple[list[Row], list[float]]:
    """The rows of the table (every stage gets the official text states and the official input of that stage),
    and the first sr1 window's difference after each of its steps."""
    text, clip = (official["t5_prompt"], official["t5_negative"]), official["clip"]
    own_text = show1.t5_states(prompt)
    keyframes_in, interpolated = frames(official["keyframes"]), frames(official["interpolation"])
    eight_bit = official["sr2_input"].permute(0, 3, 1, 2).float() / 255 * 2 - 1
    sr2_size = show1.preset.sr2.height, show1.preset.sr2.width
    recording = Recording(load_scheduler(show1.weights / sr1.COMPONENT))
    rows = [
        Row("T5 prompt states", own_text[0], text[0], video=False, note="show1's encoder on the same weights"),
        Row("T5 negative states", own_text[1], text[1], video=False),
        Row("sr2 CLIP states", show1.clip_states(prompt), clip, video=False),
        Row("keyframes", show1.timed("keyframes", show1.keyframes, text), frames(official["keyframes"])),
        Row("keyframes, show1's T5 states", show1.keyframes(own_text), frames(official["keyframes"]),
            note="the T5 rounding above, through the sampler"),
        Row("interpolation", show1.timed("interpolation", show1.interpolation, keyframes_in, text), interpolated,
            note="show1's default: all windows in one UNet batch"),
        Row("interpolation, one window per call", show1.interpolation(keyframes_in, text, 1), interpolated,
            note="as the original calls the UNet"),
        Row("interpolation, clamped keyframes", show1.interpolation(keyframes_in.clamp(-1, 1), text), interpolated,
            note="what show1's chain hands on"),
        Row("first frame (IF-II-L)", show1.timed("first_frame", show1.first_frame, interpolated[0], text),
            official["first_frame"][0]),
        Row("sr1", show1.timed("sr1", show1.sr1, interpolated, official["first_frame"][0], text, recording),
            frames(official["sr1"]), note="anchored on the official first frame"),
        Row("sr1, each window on the official anchor", *show1.sr1_windows(interpolated, official, text),
            note="every window fed the anchor the original gave it"),
        Row("sr2 input, show1 resizing", sr2.resize_frames(frames(official["sr1"]).clamp(-1, 1), *sr2_size), eight_bit,
            note="float bicubic against the script's 8-bit PIL resize"),
        Row("sr2", show1.timed("sr2", show1.sr2, eight_bit, clip), frames(official["sr2"]),
            note="fed the script's 8-bit PIL-resized frames"),
        Row("sr2, show1 resizing", show1.sr2(frames(official["sr1"]).clamp(-1, 1), clip), frames(official["sr2"]),
            note="fed the sr1 video: float bicubic resize, no 8-bit step"),
    ]
    official_steps = official["sr1_first_window_steps"]
    growth = [float((ours - frames(theirs)).abs().max()) for ours, theirs in zip(recording.samples, official_steps, strict=False)]
    return rows, growth


def official_commit(checkout: Path) -> str | None:
    result = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def report(args: argparse.Namespace, compared: tuple[list[Row], list[float]], official: dict, show1: Show1Side) -> dict:
    rows, growth = compared
    stages = {
        row.name: {"max_abs_difference": row.difference(), "within_tolerance": row.difference() <= TOLERANCE, "note": row.note}
        for row in rows
    }
    return {
        "what": "max abs difference, show1 against the official flow, each stage fed the official input of that stage; "
                "videos clamped to [-1, 1]",
        "tolerance": TOLERANCE,
        "steps": args.steps,
        "seed": args.seed,
        "prompt": args.prompt,
        "device": "cpu",
        "dtype": "float32",
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "official_commit": official_commit(args.official),
        "official_versions": official["versions"],
        "show1_versions": versions(),
        "stages": stages,
        "sr1_first_window_by_step": growth,
        "official_out_of_range": {name: round(float(official[name].abs().max()) - 1, 6)
                                  for name in ("keyframes", "interpolation", "first_frame", "sr1", "sr2")},
        "seconds": {"official": official["seconds"], "show1": show1.seconds},
    }


def versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"torch": str(torch.__version__), "diffusers": diffusers.__version__, "transformers": transformers.__version__}


def print_table(figures: dict) -> None:
    print(f"{'stage':<40} {'max abs diff':>12}  within {figures['tolerance']:g}")
    for name, stage in figures["stages"].items():
        print(f"{name:<40} {stage['max_abs_difference']:>12.3g}  {'yes' if stage['within_tolerance'] else 'NO':<6} {stage['note']}")
    print("sr1, first window, after each step:", " ".join(f"{value:.2g}" for value in figures["sr1_first_window_by_step"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="a checkout of the official Show-1 repository")
    parser.add_argument("--official-python", type=Path, default=Path(sys.executable),
                        help="an interpreter where the official pipelines import (diffusers 0.19); default: this one")
    parser.add_argument("--steps", type=int, default=5, help="denoising steps of every stage (sr2 runs 80%% of them)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--weights", type=Path, help="a folder written by `python -m tests.tiny_checkpoints` (default: a fresh one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        weights = args.weights or write_tiny_weights(Path(scratch) / "weights")
        official = run_official(args, weights, Path(scratch) / "official.pt")
        show1 = Show1Side(weights, args.seed, args.steps)
        with torch.no_grad():
            figures = report(args, compare(official, show1, args.prompt), official, show1)
    print_table(figures)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
