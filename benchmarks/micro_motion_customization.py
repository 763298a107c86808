"""Motion customization on the trained micro cascade: which `finetune-motion --loss` carries a motion the
toy world never had over to another object, without carrying the reference's look along?

The reference is a red circle on black moving diagonally (down and to the right), a motion no training clip
has. Each loss fine-tunes the shipped micro keyframe model on it (`show1 finetune-motion --preset micro`, the
command a user runs) with the reference's caption, then `show1 generate --motion ADAPTER --stages keyframes`
draws new looks (another colour, shape and background, same motion words). The toy world's analyser reads
every video back:

- trajectory error: distance between the object's displacement over the clip (first to last quarter, as
  fractions of width and height) and the reference's; the base model, which only knows the caption's
  "moving right", is the first row;
- vertical share: how much of the reference's downward travel the new video has (0: none, 1: all of it);
- appearance leak: how often the reference's colour or background is read instead of the prompt's;
- prompt colour: how often the prompt's colour is read.

    python benchmarks/micro_motion_customization.py [--steps 400] [--seeds 2] [--losses debiased,motion,mse]

Writes benchmarks/results/micro_motion_customization.json. About 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from report import write_report  # noqa: E402

from show1_cli.presets import load_preset  # noqa: E402
from show1_cli.toyworld.analyse import analyse  # noqa: E402
from show1_cli.toyworld.world import Scene, parse_caption, render_path  # noqa: E402
from show1_cli.video import read_video, write_video  # noqa: E402

REFERENCE = Scene("red", "circle", "moving right", "black")
REFERENCE_PROMPT = REFERENCE.caption()
START, END = (0.3, 0.3), (0.7, 0.7)  # the object's centre, as fractions of (width, height)
NEW_LOOKS = ("a blue square moving right on a gray background", "a green triangle moving right on a white background",
             "a yellow circle moving right on a gray background")


def diagonal_reference(path: Path) -> tuple[float, float]:
    """Writes the reference clip (29 frames at the micro cascade's final size); returns its measured shift."""
    preset = load_preset("micro")
    frames = 29
    centres = [tuple(a + (b - a) * index / (frames - 1) for a, b in zip(START, END, strict=True)) for index in range(frames)]
    clip = render_path(REFERENCE, centres, preset.sr2.height, preset.sr2.width)
    write_video(path, clip, preset.fps, {}, lossless=True)
    return analyse(read_video(path).frames).shift


def show1(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "show1_cli", *map(str, args), "--quiet"], check=True, cwd=REPO)


def measure(videos: list[tuple[str, Path]], reference_shift: tuple[float, float]) -> dict:
    errors, shares, colour_leak, background_leak, colour_right = [], [], 0, 0, 0
    for prompt, path in videos:
        reading = analyse(read_video(path).frames)
        dx, dy = reading.shift[0] - reference_shift[0], reading.shift[1] - reference_shift[1]
        errors.append((dx * dx + dy * dy) ** 0.5)
        shares.append(reading.shift[1] / reference_shift[1])
        wanted_colour, _, _, wanted_background = parse_caption(prompt)
        colour_leak += reading.color == REFERENCE.color != wanted_colour
        background_leak += reading.background == REFERENCE.background != wanted_background
        colour_right += reading.color == wanted_colour
    count = len(videos)
    return {"videos": count, "trajectory_error": sum(errors) / count, "vertical_share": sum(shares) / count,
            "colour_leak": colour_leak / count, "background_leak": background_leak / count, "prompt_colour": colour_right / count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, default=2, help="fine-tuning seeds per loss (each also a sampling seed)")
    parser.add_argument("--losses", default="debiased,motion,mse")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "micro_motion_customization.json")
    args = parser.parse_args()

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        reference_shift = diagonal_reference(work / "reference.mp4")

        def generate(name: str, motion: list[object]) -> list[tuple[str, Path]]:
            videos = []
            for look, prompt in enumerate(NEW_LOOKS):
                for seed in range(args.seeds):
                    output = work / f"{name}-{look}-{seed}.mp4"
                    show1("generate", prompt, "-o", output, "--preset", "micro", "--stages", "keyframes", "--seed", seed,
                          "--lossless", *motion)
                    videos.append((prompt, output))
            return videos

        rows["base model"] = measure(generate("base", []), reference_shift)
        for loss in args.losses.split(","):
            videos, seconds = [], 0.0
            for seed in range(args.seeds):
                adapter = work / f"{loss}-{seed}.safetensors"
                started = time.perf_counter()
                show1("finetune-motion", work / "reference.mp4", "--prompt", REFERENCE_PROMPT, "-o", adapter, "--preset", "micro",
                      "--loss", loss, "--steps", args.steps, "--lr", args.lr, "--seed", seed)
                seconds += time.perf_counter() - started
                videos += generate(f"{loss}-{seed}", ["--motion", adapter])
            rows[loss] = {**measure(videos, reference_shift), "finetune_seconds_mean": seconds / args.seeds}

    results = {"reference": {"prompt": REFERENCE_PROMPT, "start": START, "end": END, "shift_read": reference_shift},
               "new_looks": NEW_LOOKS, "steps": args.steps, "lr": args.lr, "seeds": args.seeds, "rows": rows}
    print(f"diagonal reference (shift read {reference_shift[0]:+.2f}, {reference_shift[1]:+.2f}); {args.steps} steps, lr {args.lr}")
    print(f"  {'':<11} trajectory error  vertical share  colour leak  background leak  prompt colour")
    for name, row in rows.items():
        print(f"  {name:<11} {row['trajectory_error']:>16.3f}  {row['vertical_share']:>14.2f}  {row['colour_leak']:>11.0%}"
              f"  {row['background_leak']:>15.0%}  {row['prompt_colour']:>13.0%}")
    write_report(args.output, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
