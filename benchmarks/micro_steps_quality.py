"""Fewer denoising steps at equal quality, measured on the trained micro cascade: the curve behind `fast`.

Each stage is measured on its own, from the same inputs and seeds: its input is the reference chain's output
of the stage before (keyframes start from the prompt), so a row changes one stage only. The reference runs
every stage with its checkpoint's own sampler at the step count of the `default` preset (the official
script's). The rows: that sampler at the micro preset's steps, and DPM-Solver++ 2M and UniPC at a grid of
step counts. Quality of a row, against the reference of the same stage:
- prompt accuracy: the toy world's analyser reads colour, background, shape and motion back from the
  stage's output (the mean of the four, in points);
- PSNR of the output against the reference output of the same prompt and seed.
A row keeps the reference's quality when its accuracy is within 1 point of the reference's and its PSNR
against the reference output is at least 35 dB (the analyser reads what the keyframes decided, so for the
upscalers accuracy alone cannot tell 4 steps from 125; the PSNR floor asks for the same picture). The fewest
steps from which every larger count of the grid keeps it is that stage's `fast` candidate: with a few dozen
readings one reading moves the accuracy by several points, and a single lucky count must not set the preset.

This is the toy world at toy sizes: it shows how many steps each solver needs to reach its sampler's
result on these checkpoints (same schedulers, same prediction and thresholding settings as the real ones),
not the real weights' detail at full size.

    python benchmarks/micro_steps_quality.py --stages keyframes,interpolate --grid 5,10,15,20,30
    python benchmarks/micro_steps_quality.py --stages sr1 --per-motion 1   # sr1's 125-step reference is slow

Writes benchmarks/results/micro_steps_quality.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from micro_quality import ATTRIBUTES, cpu_chain, sample_prompts, wanted  # noqa: E402
from report import write_report  # noqa: E402

from show1_cli.chain import Job  # noqa: E402
from show1_cli.presets import load_preset  # noqa: E402
from show1_cli.toyworld.analyse import analyse  # noqa: E402
from show1_cli.toyworld.world import Scene  # noqa: E402
from show1_cli.video import read_video  # noqa: E402

STAGES = ("keyframes", "interpolate", "sr1", "sr2")
SOLVERS = ("dpm", "unipc")
WITHIN_POINTS = 1.0
PSNR_FLOOR_DB = 35.0


def psnr(output, reference) -> float:
    error = float(((output.float() - reference.float()) / 2).pow(2).mean())  # frames in [-1, 1]
    return math.inf if error == 0 else 10 * math.log10(1 / error)


def accuracy(videos: list, prompts: list[str]) -> float:
    """Mean of the four attributes' accuracy over the videos, in points."""
    hits = 0
    for video, prompt in zip(videos, prompts, strict=True):
        reading = analyse(video).as_dict()
        hits += sum(reading[attribute] == value for attribute, value in zip(ATTRIBUTES, wanted(prompt), strict=True))
    return 100 * hits / (len(ATTRIBUTES) * len(videos))


def fewest_steps_keeping_quality(rows: list[dict], scheduler: str, reference_accuracy: float) -> int | None:
    """The fewest steps of `scheduler` from which every row at that many steps or more keeps the reference's quality."""
    fewest = None
    for row in sorted((row for row in rows if row["scheduler"] == scheduler), key=lambda row: row["steps"], reverse=True):
        if row["accuracy"] < reference_accuracy - WITHIN_POINTS or row["psnr_db"] < PSNR_FLOOR_DB:
            break
        fewest = row["steps"]
    return fewest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--grid", default="5,10,15,20,30", help="step counts tried with each solver")
    parser.add_argument("--per-motion", type=int, default=2, help="held-in prompts per motion")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "micro_steps_quality.json")
    args = parser.parse_args()
    stages = args.stages.split(",")
    if unknown := [stage for stage in stages if stage not in STAGES]:
        parser.error(f"unknown stages {unknown}: choose from {', '.join(STAGES)}")
    grid = [int(steps) for steps in args.grid.split(",")]

    default, micro = load_preset("default"), load_preset("micro")
    reference_steps = {stage: getattr(default, stage).steps for stage in STAGES}
    chain = cpu_chain()
    prompts = [Scene(*combo).caption() for combo in sample_prompts(False, args.per_motion, 0)]
    cases = [(prompt, seed) for prompt in prompts for seed in range(args.seeds)]
    case_prompts = [prompt for prompt, _ in cases]

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)

        def run_stage(stage: str, settings: list[str], inputs: list | None, tag: str) -> tuple[list, float]:
            preset = load_preset("micro", settings, [stage])
            fps = micro.fps / 4 if stage == "interpolate" else micro.fps  # the input's rate: keyframes, or frames
            jobs = [Job(prompt, seed, folder / f"{tag}-{index}.mkv", preset, lossless=True,
                        video=None if inputs is None else inputs[index], fps=None if inputs is None else fps)
                    for index, (prompt, seed) in enumerate(cases)]
            started = time.perf_counter()
            chain.run(jobs, overwrite=True)
            seconds = (time.perf_counter() - started) / len(jobs)
            return [read_video(job.output).frames for job in jobs], seconds

        # The reference chain: every stage with its own sampler at the default preset's steps.
        reference: dict[str, list] = {}
        inputs = None
        for stage in STAGES[: max(STAGES.index(stage) for stage in stages) + 1]:
            reference[stage], _ = run_stage(stage, [f"{stage}.steps={reference_steps[stage]}"], inputs, f"reference-{stage}")
            inputs = reference[stage]

        results: dict = {"prompts": prompts, "seeds": args.seeds, "reference_steps": reference_steps, "stages": {}}
        for stage in stages:
            previous = reference[STAGES[STAGES.index(stage) - 1]] if stage != "keyframes" else None
            base = accuracy(reference[stage], case_prompts)
            rows = [{"scheduler": "default", "steps": reference_steps[stage], "accuracy": base, "psnr_db": None}]
            trials = [("default", getattr(micro, stage).steps)] + [(solver, steps) for solver in SOLVERS for steps in grid]
            for scheduler, steps in trials:
                settings = [f"{stage}.steps={steps}", f"{stage}.scheduler={scheduler}"]
                videos, seconds = run_stage(stage, settings, previous, f"{stage}-{scheduler}-{steps}")
                psnrs = [psnr(video, target) for video, target in zip(videos, reference[stage], strict=True)]
                rows.append({"scheduler": scheduler, "steps": steps, "accuracy": accuracy(videos, case_prompts),
                             "psnr_db": sum(psnrs) / len(psnrs), "seconds_per_video": round(seconds, 2)})
                print(f"{stage:<12} {scheduler:<8} {steps:>4} steps  accuracy {rows[-1]['accuracy']:5.1f} "
                      f"(reference {base:5.1f})  PSNR {rows[-1]['psnr_db']:5.1f} dB  {seconds:.1f} s/video", flush=True)
            fewest = {solver: fewest_steps_keeping_quality(rows, solver, base) for solver in SOLVERS}
            results["stages"][stage] = {"reference_accuracy": base, "rows": rows, "fewest_steps_keeping_quality": fewest}
            print(f"{stage}: fewest steps keeping the reference's quality (accuracy within {WITHIN_POINTS:g} point, PSNR "
                  f"at least {PSNR_FLOOR_DB:g} dB): {fewest}", flush=True)

    write_report(args.output, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
