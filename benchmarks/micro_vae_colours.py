"""Does a micro autoencoder keep the toy world's colours? A round-trip probe (docs/losses.md, section 5).

sr2 works in the autoencoder's latent space, so a colour the autoencoder cannot code comes out of the whole
cascade wrong however good the other stages are. This renders fresh clips of every colour on every
background (8 frames at the micro sr2 size), encodes and decodes them with sr2's own functions, and reports
per autoencoder the PSNR against the clip and the colour the analyser reads back, for each pair and in all.
Minutes on a CPU: run it on an autoencoder before training sr2 on it.

    python benchmarks/micro_vae_colours.py --vae shipped=show1_cli/data/micro/show-1-sr2/vae \\
        --vae new=BUILD/trained/vae/vae --output benchmarks/results/micro_vae_colours.json
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from micro_steps_quality import psnr  # noqa: E402
from report import write_report  # noqa: E402

from show1_cli.stages.sr2 import decode_latents, encode_frames  # noqa: E402
from show1_cli.toyworld.analyse import analyse  # noqa: E402
from show1_cli.toyworld.world import BACKGROUNDS, COLORS, MOTIONS, SHAPES, is_held_out, random_scene, render  # noqa: E402

FRAMES, HEIGHT, WIDTH = 8, 192, 256  # the micro preset's sr2 output


def probe_clips(per_pair: int, seed: int) -> list[tuple[str, str, torch.Tensor]]:
    """(colour, background, clip) for every pair, shapes and motions drawn in turn."""
    rng = random.Random(seed)
    clips = []
    for color in COLORS:
        for background in BACKGROUNDS:
            for _ in range(per_pair):
                scene = random_scene(rng, color, rng.choice(SHAPES), rng.choice(MOTIONS), background, WIDTH / HEIGHT)
                clips.append((color, background, render(scene, FRAMES, HEIGHT, WIDTH)))
    return clips


def round_trip(vae: AutoencoderKL, clip: torch.Tensor, seed: int) -> torch.Tensor:
    with torch.no_grad():
        return decode_latents(vae, encode_frames(vae, clip, torch.Generator().manual_seed(seed)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", action="append", required=True, metavar="NAME=FOLDER",
                        help="an AutoencoderKL folder (config.json and weights), under a name for the report")
    parser.add_argument("--per-pair", type=int, default=3, help="clips per colour and background")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "micro_vae_colours.json")
    args = parser.parse_args()
    clips = probe_clips(args.per_pair, args.seed)
    # A growing circle is neither a held-out shape nor a held-out motion: only the colour and background decide.
    figures: dict = {"clips": f"{args.per_pair} per colour and background, {FRAMES} frames {WIDTH}x{HEIGHT}, seed {args.seed}",
                     "held_out_pairs": sorted({f"{c} on {b}" for c, b, _ in clips if is_held_out(c, "circle", "growing", b)}),
                     "autoencoders": {}}
    for entry in args.vae:
        name, _, folder = entry.partition("=")
        vae = AutoencoderKL.from_pretrained(folder).eval()
        pairs: dict[tuple[str, str], dict] = {}
        for index, (color, background, clip) in enumerate(clips):
            decoded = round_trip(vae, clip, args.seed + index)
            pair = pairs.setdefault((color, background), {"read": [], "psnr_db": []})
            pair["read"].append(analyse(decoded).color)
            pair["psnr_db"].append(round(psnr(decoded, clip), 2))
        misses = {key: [read for read in pair["read"] if read != key[0]] for key, pair in pairs.items()}
        right = len(clips) - sum(len(wrong) for wrong in misses.values())
        mean = sum(sum(pair["psnr_db"]) for pair in pairs.values()) / len(clips)
        figures["autoencoders"][name] = {"folder": folder, "colours_right": f"{right}/{len(clips)}", "psnr_db_mean": round(mean, 2),
                                         "pairs": {f"{color} on {background}": pair for (color, background), pair in pairs.items()}}
        print(f"{name}: colours right {right}/{len(clips)}, mean {mean:.2f} dB")
        for (color, background), wrong in misses.items():
            if wrong:
                decibels = pairs[color, background]["psnr_db"]
                print(f"  {color} on {background}: read {', '.join(str(read) for read in wrong)} "
                      f"({sum(decibels) / len(decibels):.1f} dB)")
    write_report(args.output, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
