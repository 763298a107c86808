"""Write a toy-world data set in the `show1 train` format: clips plus `captions.jsonl`.

Every combination that is not held out appears `per_combination` times, each time with its own jitter
and caption wording. Clips are 29 frames at 8 fps, like the cascade's output. Everything is drawn from
one seeded generator, so a seed always gives the same data set.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from show1_cli.toyworld.world import all_combinations, random_scene, render, varied_caption
from show1_cli.video import write_video

FRAMES = 29
FPS = 8.0
CAPTIONS = "captions.jsonl"


def write_dataset(
    folder: Path,
    *,
    height: int,
    width: int,
    per_combination: int,
    seed: int,
    frames: int = FRAMES,
    limit: int | None = None,
    on_clip: Callable[[int, int], None] | None = None,
) -> int:
    """Render the data set into `folder` (clips/NNNNN.mp4 and captions.jsonl); returns the clip count.

    `limit` keeps only the first clips of the shuffled set (small data sets for tests and quick trials).
    """
    rng = random.Random(seed)
    combos = all_combinations(held_out=False) * per_combination
    rng.shuffle(combos)
    combos = combos[:limit]
    clips = folder / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, combo in enumerate(combos):
        scene = random_scene(rng, *combo, aspect=width / height)
        name = f"clips/{index:05d}.mp4"
        write_video(folder / name, render(scene, frames, height, width), FPS, {"caption": scene.caption()}, overwrite=True)
        lines.append(json.dumps({"file": name, "caption": varied_caption(scene, rng)}))
        if on_clip is not None:
            on_clip(index + 1, len(combos))
    (folder / CAPTIONS).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(combos)
