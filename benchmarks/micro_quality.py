"""Prompt following of the micro cascade, measured with the toy world's own analyser.

A stratified sample of canonical prompts (the same number per motion) held in and held out of training,
each generated with several seeds through show1's chain (the code `show1 generate --preset micro` runs),
then read back by the analyser: the accuracy of colour, background, shape and motion per group, and the
per-stage generation time. Writes benchmarks/results/micro_quality.json.

    python benchmarks/micro_quality.py                          # the shipped micro cascade, full chain
    python benchmarks/micro_quality.py --stages keyframes,interpolate --per-motion 10 --seeds 2
    python benchmarks/micro_quality.py --weights-dir BUILD/weights   # an unshipped build (its weights.lock inside)
    python benchmarks/micro_quality.py --keep-videos DIR             # keep the videos to look at them
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from report import write_report  # noqa: E402

from show1_cli.chain import Chain, Job  # noqa: E402
from show1_cli.presets import load_preset  # noqa: E402
from show1_cli.runtime import resolve_runtime  # noqa: E402
from show1_cli.toyworld.analyse import analyse  # noqa: E402
from show1_cli.toyworld.world import MOTIONS, Scene, all_combinations, parse_caption  # noqa: E402
from show1_cli.video import read_video  # noqa: E402

ATTRIBUTES = ("color", "background", "shape", "motion")
TARGETS = {"color": 0.95, "background": 0.95, "motion": 0.90, "shape": 0.80}


def cpu_chain(weights_dir: Path | None = None) -> Chain:
    """show1's chain as `show1 generate --device cpu --dtype fp32` builds it (the micro cascade has no IF-II-L)."""
    return Chain(resolve_runtime("cpu", "fp32", "none"), weights_dir, options={"first_frame": "auto"}, show_progress=False)


def sample_prompts(held_out: bool, per_motion: int, seed: int) -> list[tuple[str, str, str, str]]:
    """`per_motion` combinations for each motion (fewer where the group has fewer), seeded."""
    rng = random.Random(seed)
    picked = []
    for motion in MOTIONS:
        group = [combo for combo in all_combinations(held_out) if combo[2] == motion]
        rng.shuffle(group)
        picked += group[:per_motion]
    return picked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-motion", type=int, default=10, help="prompts per motion and group (10: 60 held in)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--stages", default="keyframes,interpolate,sr1,sr2")
    parser.add_argument("--set", action="append", default=[], help="preset override, e.g. keyframes.steps=50")
    parser.add_argument("--weights-dir", type=Path, default=None, help="a built micro cascade (with weights.lock inside)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "micro_quality.json")
    parser.add_argument("--groups", default="held_in,held_out", help="which groups to generate")
    parser.add_argument("--keep-videos", type=Path, default=None, help="write the videos (and their records) here")
    args = parser.parse_args()
    if unknown := set(args.groups.split(",")) - {"held_in", "held_out"}:
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}: choose held_in, held_out or both")

    preset = load_preset("micro", args.set, args.stages.split(","))
    if args.weights_dir is not None:  # the build's folder and lock, through the code the hub weights go through
        os.environ["SHOW1_WEIGHTS_LOCK"] = str(args.weights_dir / "weights.lock")
        preset = dataclasses.replace(preset, weights="hub")
    chain = cpu_chain(args.weights_dir)
    groups = {group: sample_prompts(group == "held_out", args.per_motion, 0) for group in args.groups.split(",")}

    results: dict = {"stages": preset.stages, "settings": preset.to_dict(), "seeds": args.seeds, "groups": {}}
    stage_seconds: dict[str, list[float]] = defaultdict(list)
    if args.keep_videos:
        args.keep_videos.mkdir(parents=True, exist_ok=True)
    with contextlib.nullcontext(args.keep_videos) if args.keep_videos else tempfile.TemporaryDirectory() as folder:
        for group, combos in groups.items():
            hits = {attribute: 0 for attribute in ATTRIBUTES}
            items = []
            jobs = [Job(Scene(*combo).caption(), seed, Path(folder) / f"{group}-{index}-{seed}.mp4", preset, lossless=True)
                    for index, combo in enumerate(combos) for seed in range(args.seeds)]
            started = time.perf_counter()
            for job, result in zip(jobs, chain.run(jobs, overwrite=True), strict=True):
                for report in result.reports:
                    stage_seconds[report.name].append(report.seconds)
                reading = analyse(read_video(job.output).frames).as_dict()
                expected = dict(zip(ATTRIBUTES, wanted(job.prompt), strict=True))
                for attribute in ATTRIBUTES:
                    hits[attribute] += reading[attribute] == expected[attribute]
                items.append({"prompt": job.prompt, "seed": job.seed, "read": reading})
            count = len(jobs)
            results["groups"][group] = {
                "videos": count,
                "accuracy": {attribute: hits[attribute] / count for attribute in ATTRIBUTES},
                "seconds": round(time.perf_counter() - started, 1),
                "items": items,
            }
    results["stage_seconds_mean"] = {name: sum(values) / len(values) for name, values in stage_seconds.items()}
    results["video_seconds_mean"] = sum(results["stage_seconds_mean"].values())

    print(f"micro cascade, stages {','.join(preset.stages)}, {args.seeds} seeds per prompt")
    for group, data in results["groups"].items():
        accuracy = "  ".join(f"{name} {value:.0%}" for name, value in data["accuracy"].items())
        print(f"  {group:<9} {data['videos']:>4} videos  {accuracy}")
    if len(results["groups"]) == 2:
        accuracy = {group: data["accuracy"] for group, data in results["groups"].items()}
        results["held_out_gap"] = {a: accuracy["held_in"][a] - accuracy["held_out"][a] for a in ATTRIBUTES}
    print("  targets  " + "  ".join(f"{name} >= {value:.0%}" for name, value in TARGETS.items()) + ", held out within 10 points")
    print("  per video: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in results["stage_seconds_mean"].items())
          + f"; total {results['video_seconds_mean']:.1f} s")
    write_report(args.output, results)
    return 0


def wanted(prompt: str) -> tuple[str, str, str, str]:
    """The prompt's colour, background, shape and motion, in the order of ATTRIBUTES."""
    color, shape, motion, background = parse_caption(prompt)
    return color, background, shape, motion


if __name__ == "__main__":
    raise SystemExit(main())
