"""Does a micro autoencoder keep the toy world's colours? A round-trip probe (docs/losses.md, section 5).

sr2 works in the autoencoder's latent space, so a colour the autoencoder cannot code comes out of the whole
cascade wrong however good the other stages are. This renders fresh clips of every colour on every
background (8 frames at the micro sr2 size), encodes and decodes them with sr2's own functions, and reports
per autoencoder the PSNR against the clip and the colour the analyser reads back, for each pair and in all.
Minutes on a CPU: run it on an autoencoder before training sr2 on it.

With `--chain-per-motion K` it also round-trips what sr2 really gets: the shipped cascade's sr1 output
(keyframes, interpolation, sr1 through show1's chain, resized as sr2 resizes it) for K prompts per motion of
micro_quality.py's held-in and held-out samples, whose colours drift from the palette; the analyser reads the
colour of sr1's output and of each autoencoder's round trip of it.

    python benchmarks/micro_vae_colours.py --vae shipped=show1_cli/data/micro/show-1-sr2/vae \\
        --vae new=BUILD/trained/vae/vae --chain-per-motion 3 --output benchmarks/results/micro_vae_colours.json
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
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


def chain_inputs(per_motion: int) -> list[tuple[str, str, torch.Tensor]]:
    """(group, the prompt's colour, sr2's input) for micro_quality's prompt samples, one seed each: the shipped
    cascade's sr1 output at sr2's size."""
    from micro_quality import cpu_chain, sample_prompts

    from show1_cli.chain import Job
    from show1_cli.presets import load_preset
    from show1_cli.stages.sr2 import resize_frames
    from show1_cli.toyworld.world import Scene
    from show1_cli.video import read_video

    preset = load_preset("micro", [], ["keyframes", "interpolate", "sr1"])
    chain = cpu_chain()
    inputs = []
    with tempfile.TemporaryDirectory() as folder:
        for group, held_out in (("held_in", False), ("held_out", True)):
            scenes = [Scene(*combo) for combo in sample_prompts(held_out, per_motion, 0)]
            jobs = [Job(scene.caption(), 0, Path(folder) / f"{group}-{index}.mp4", preset, lossless=True)
                    for index, scene in enumerate(scenes)]
            chain.run(jobs, overwrite=True)
            inputs += [(group, scene.color, resize_frames(read_video(job.output).frames, HEIGHT, WIDTH))
                       for scene, job in zip(scenes, jobs, strict=True)]
    return inputs


def round_trip(vae: AutoencoderKL, clip: torch.Tensor, seed: int) -> torch.Tensor:
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        return torch.cat([decode_latents(vae, encode_frames(vae, clip[start : start + FRAMES], generator))
                          for start in range(0, len(clip), FRAMES)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", action="append", required=True, metavar="NAME=FOLDER",
                        help="an AutoencoderKL folder (config.json and weights), under a name for the report")
    parser.add_argument("--per-pair", type=int, default=3, help="clips per colour and background")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chain-per-motion", type=int, default=0,
                        help="also round-trip the shipped cascade's sr1 output for this many prompts per motion and group")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "micro_vae_colours.json")
    args = parser.parse_args()
    clips = probe_clips(args.per_pair, args.seed)
    inputs = chain_inputs(args.chain_per_motion) if args.chain_per_motion else []
    # A growing circle is neither a held-out shape nor a held-out motion: only the colour and background decide.
    figures: dict = {"clips": f"{args.per_pair} per colour and background, {FRAMES} frames {WIDTH}x{HEIGHT}, seed {args.seed}",
                     "held_out_pairs": sorted({f"{c} on {b}" for c, b, _ in clips if is_held_out(c, "circle", "growing", b)}),
                     "autoencoders": {}}
    if inputs:
        figures["chain_inputs"] = {"prompts_per_motion": args.chain_per_motion, "sr1_colours_right": colour_hits(inputs)}
        print(f"sr1's own output: colours right {figures['chain_inputs']['sr1_colours_right']}")
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
        if inputs:
            decoded = [(group, color, round_trip(vae, frames, args.seed)) for group, color, frames in inputs]
            hits = colour_hits(decoded, [frames for _, _, frames in inputs])
            figures["autoencoders"][name]["chain_inputs_colours_right"] = hits
            print(f"  sr1's output round-tripped: colours right {hits}")
        for (color, background), wrong in misses.items():
            if wrong:
                decibels = pairs[color, background]["psnr_db"]
                print(f"  {color} on {background}: read {', '.join(str(read) for read in wrong)} "
                      f"({sum(decibels) / len(decibels):.1f} dB)")
    write_report(args.output, figures)
    return 0


def colour_hits(videos: list[tuple[str, str, torch.Tensor]], sources: list[torch.Tensor] | None = None) -> dict[str, str]:
    """Per group: how many videos the analyser reads in the prompt's colour (and their mean PSNR against `sources`)."""
    rows: dict[str, list] = {}
    for index, (group, color, video) in enumerate(videos):
        rows.setdefault(group, []).append((analyse(video).color == color, psnr(video, sources[index]) if sources else None))
    figures = {}
    for group, found in rows.items():
        figures[group] = f"{sum(right for right, _ in found)}/{len(found)}"
        if sources:
            figures[group] += f", {sum(db for _, db in found) / len(found):.1f} dB"
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
