"""Which words of the prompt does a micro keyframe model read? A training diagnostic (docs/losses.md, section 5).

Prompt accuracy (benchmarks/micro_quality.py) says whether videos follow their prompts; this says why not,
in minutes, on a model or on a running training's checkpoint:

- word cost: on toy-world clips, the v- (or noise-) prediction loss at the noisiest timesteps with the
  clip's own caption and with one attribute's word swapped (colour, shape, motion to its opposite,
  background), same noise. A model that reads the word loses when it is swapped; 0% means it ignores it.
- trajectories: from pure noise at one timestep, the x0 the model implies for "a red circle MOTION on a black
  background", as the object's centroid (pixels) in each of the 8 frames, averaged over a few noise draws.
  Where the model reads the motion, each motion draws its own path.

    python benchmarks/micro_prompt_reading.py --model BUILD/trained/keyframes --data BUILD/data
    python benchmarks/micro_prompt_reading.py --model BUILD/scaffold/show-1-base --data BUILD/data \\
        --checkpoint BUILD/trained/keyframes.train/checkpoint.pt \\
        --config show1_cli/training/configs/unet-keyframes.json --prediction-type v_prediction

`--model` is a show-1-base folder (unet/, scheduler/, tokenizer/, text_encoder/); with `--checkpoint` the
UNet takes that training checkpoint's EMA weights, built from `--config` where the run's config is not the
folder's, and `--prediction-type` names what it predicts where the folder's scheduler config does not.
Writes benchmarks/results/micro_prompt_reading.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from show1_cli.models import load_unet  # noqa: E402
from show1_cli.models.unet_3d_condition import UNet3DConditionModel  # noqa: E402
from show1_cli.text import load_text_encoder, load_tokenizer, tokenize  # noqa: E402
from show1_cli.toyworld.world import BACKGROUNDS  # noqa: E402
from show1_cli.training.data import Needs, load_dataset  # noqa: E402
from show1_cli.training.losses import DiffusionTerms  # noqa: E402
from show1_cli.training.objectives import KEYFRAME_STRIDE, keyframe_span  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "micro_prompt_reading.json"
FRAMES, HEIGHT, WIDTH = 8, 24, 32  # the micro preset's keyframes
# Each attribute's words and what a swap turns them into (every wording the toy world's captions use).
SWAPS = {
    "color": {"red": "blue", "blue": "red", "green": "purple", "purple": "green", "yellow": "orange", "orange": "yellow"},
    "shape": {"circle": "square", "ball": "box", "square": "triangle", "box": "triangle", "triangle": "circle"},
    "motion": {"left": "right", "right": "left", "up": "down", "down": "up", "rising": "falling", "falling": "rising",
               "growing": "shrinking", "shrinking": "growing", "bigger": "smaller", "smaller": "bigger"},
    "background": {"black": "white", "white": "gray", "gray": "black"},
}
MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")


def swapped(caption: str, attribute: str) -> str:
    words = caption.split()
    return " ".join(SWAPS[attribute].get(word, word) for word in words)


class Model:
    def __init__(self, folder: Path, checkpoint: Path | None, config: Path | None, prediction_type: str | None):
        if config is not None:
            self.unet = UNet3DConditionModel.from_config(json.loads(config.read_text())).eval()
        else:
            self.unet = load_unet(folder).float()
        if checkpoint is not None:
            ema = EMAModel(self.unet.parameters())  # as show1 train keeps it (training/loop.py)
            ema.load_state_dict(torch.load(checkpoint, weights_only=True, map_location="cpu")["ema"])
            ema.copy_to(self.unet.parameters())
        # The training noise schedule of the checkpoint's scheduler config (betas and prediction type).
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        if prediction_type is not None:
            scheduler_config["prediction_type"] = prediction_type
        self.scheduler = DDPMScheduler.from_config(scheduler_config)
        self.terms = DiffusionTerms.from_scheduler(self.scheduler)
        self.prediction_type = self.scheduler.config.prediction_type
        self.tokenizer = load_tokenizer(folder)
        self.encoder = load_text_encoder(folder, torch.float32)
        self._states: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def states(self, text: str) -> torch.Tensor:
        if text not in self._states:
            input_ids, mask = tokenize(self.tokenizer, text)
            self._states[text] = self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return self._states[text]

    @torch.no_grad()
    def predict(self, noisy: torch.Tensor, t: int, text: str) -> torch.Tensor:
        return self.unet(noisy, torch.tensor([t]), encoder_hidden_states=self.states(text)).sample[:, :3]

    def target(self, clean: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
        return self.terms.target(clean, noise, torch.tensor([t]), self.prediction_type).float()

    def implied_x0(self, noisy: torch.Tensor, output: torch.Tensor, t: int) -> torch.Tensor:
        timestep = torch.tensor([t])
        return self.terms.predict_x0(noisy, self.terms.epsilon(output, noisy, timestep, self.prediction_type), timestep).float()


def word_costs(model: Model, data: Path, clips: int, timesteps: list[int], seed: int) -> dict[str, dict[str, float]]:
    dataset = load_dataset(data, Needs(keyframe_span(FRAMES), HEIGHT, WIDTH))
    indices = list(range(len(dataset)))
    random.Random(seed).shuffle(indices)
    generator = torch.Generator().manual_seed(seed)
    costs: dict[str, dict[str, float]] = {}
    for t in timesteps:
        totals = {"true": 0.0, **{attribute: 0.0 for attribute in SWAPS}}
        for index in indices[:clips]:
            clean = dataset.frames(index, HEIGHT, WIDTH)[: keyframe_span(FRAMES) : KEYFRAME_STRIDE].transpose(0, 1)[None]
            noise = torch.randn(clean.shape, generator=generator)
            noisy = model.scheduler.add_noise(clean, noise, torch.tensor([t]))
            target = model.target(clean, noise, t)
            caption = dataset.clips[index].caption
            totals["true"] += float(((model.predict(noisy, t, caption) - target) ** 2).mean())
            for attribute in SWAPS:
                totals[attribute] += float(((model.predict(noisy, t, swapped(caption, attribute)) - target) ** 2).mean())
        costs[str(t)] = {"loss": round(totals["true"] / clips, 5),
                         **{attribute: round(100 * (totals[attribute] / totals["true"] - 1), 1) for attribute in SWAPS}}
    return costs


def trajectories(model: Model, t: int, draws: int) -> dict[str, dict[str, list[float]]]:
    background = torch.tensor(BACKGROUNDS["black"], dtype=torch.float32)[:, None, None, None] / 127.5 - 1
    ys, xs = torch.meshgrid(torch.arange(HEIGHT, dtype=torch.float32), torch.arange(WIDTH, dtype=torch.float32), indexing="ij")
    paths = {}
    for motion in MOTIONS:
        centres = []
        for draw in range(draws):
            noisy = torch.randn(1, 3, FRAMES, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(draw))
            x0 = model.implied_x0(noisy, model.predict(noisy, t, f"a red circle {motion} on a black background"), t)[0]
            weight = (x0 - background).abs().sum(0).clamp(min=0)  # (F, H, W): how far from the background
            mass = weight.sum((1, 2))
            centres.append(torch.stack([(weight * xs).sum((1, 2)) / mass, (weight * ys).sum((1, 2)) / mass]))
        mean = torch.stack(centres).mean(0)
        paths[motion] = {"x": [round(float(v), 1) for v in mean[0]], "y": [round(float(v), 1) for v in mean[1]]}
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a show-1-base folder of the micro cascade")
    parser.add_argument("--checkpoint", type=Path, help="a training checkpoint whose EMA weights to use")
    parser.add_argument("--config", type=Path, help="the UNet config of --checkpoint, where it differs from --model's")
    parser.add_argument("--prediction-type", choices=("epsilon", "v_prediction"), help="what --checkpoint predicts")
    parser.add_argument("--data", type=Path, required=True, help="a toy-world data set (show1 toyworld data)")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--timesteps", default="990,950,900")
    parser.add_argument("--trajectory-timestep", type=int, default=990)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    model = Model(args.model, args.checkpoint, args.config, args.prediction_type)
    costs = word_costs(model, args.data, args.clips, [int(t) for t in args.timesteps.split(",")], args.seed)
    print(f"{'t':>5} {'loss':>8} " + " ".join(f"{attribute:>11}" for attribute in SWAPS) + "   (loss cost of a swapped word, %)")
    for t, row in costs.items():
        print(f"{t:>5} {row['loss']:8.4f} " + " ".join(f"{row[attribute]:10.1f}%" for attribute in SWAPS))
    paths = trajectories(model, args.trajectory_timestep, args.draws)
    print(f"object centroid per frame in the x0 implied at t={args.trajectory_timestep} from pure noise (x / y, pixels):")
    for motion, path in paths.items():
        print(f"  {motion:13s} x " + " ".join(f"{v:5.1f}" for v in path["x"]) + "   y " + " ".join(f"{v:5.1f}" for v in path["y"]))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "model": str(args.model), "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "data": str(args.data), "clips": args.clips, "seed": args.seed,
        "word_cost_percent": costs, "trajectory_timestep": args.trajectory_timestep, "trajectories": paths,
    }, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
