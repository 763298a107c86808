"""The toy world the micro cascade is trained on: one coloured shape moving on a plain background.

A scene is a colour, a shape, a motion and a background, plus jitter (size, start position, speed)
drawn from a seeded generator. `render` draws it as a clip of float frames; `caption` names it, in the
canonical wording or a varied one. Some combinations are held out of training entirely, so that a
trained model can be tested on prompts it never saw (`is_held_out`).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (16, 16, 16),
    "gray": (128, 128, 128),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")

# Relative to the frame: the object's height, how far it travels, how much its side changes.
OBJECT_HEIGHT = 1 / 3
TRAVEL = (0.40, 0.50)  # fraction of the frame's width (left/right) or height (up/down)
GROWTH = 1.8  # linear size ratio of growing/shrinking objects: area changes 3.2x (at least 2.5x with jitter)
# How far the start may stray from the middle of the positions the motion allows. Uniform over all of them
# would make a caption say little about where the object is in any frame: the small keyframe model then
# learns the layout a motion implies far more slowly (docs/losses.md).
START_JITTER = 0.1

# Training captions may say the same thing in other words.
_SHAPE_WORDS = {"circle": ("circle", "ball"), "square": ("square", "box"), "triangle": ("triangle",)}
_MOTION_WORDS = {
    "moving left": ("moving left", "moving to the left", "is moving left"),
    "moving right": ("moving right", "moving to the right", "is moving right"),
    "moving up": ("moving up", "rising", "is moving up"),
    "moving down": ("moving down", "falling", "is moving down"),
    "growing": ("growing", "getting bigger", "is growing"),
    "shrinking": ("shrinking", "getting smaller", "is shrinking"),
}


@dataclass(frozen=True)
class Scene:
    """What a clip shows, and the jitter that makes two clips of the same caption differ."""

    color: str
    shape: str
    motion: str
    background: str
    size: float = 1.0  # multiplies OBJECT_HEIGHT
    travel: float = 0.45  # fraction of the frame travelled (moving motions)
    start: tuple[float, float] = (0.5, 0.5)  # start centre as fractions of (width, height)

    def caption(self) -> str:
        return f"a {self.color} {self.shape} {self.motion} on a {self.background} background"


def is_held_out(color: str, shape: str, motion: str, background: str) -> bool:
    """Combinations no training clip shows: yellow triangles, squares moving down, purple on white."""
    return (
        (color == "yellow" and shape == "triangle")
        or (shape == "square" and motion == "moving down")
        or (color == "purple" and background == "white")
    )


def all_combinations(held_out: bool) -> list[tuple[str, str, str, str]]:
    """Every (colour, shape, motion, background), only the held-out ones or only the others."""
    return [combo for combo in itertools.product(COLORS, SHAPES, MOTIONS, BACKGROUNDS) if is_held_out(*combo) == held_out]


def parse_caption(text: str) -> tuple[str, str, str, str]:
    """(colour, shape, motion, background) of a canonical caption; ValueError for anything else."""
    for color, shape, motion, background in itertools.product(COLORS, SHAPES, MOTIONS, BACKGROUNDS):
        if text.strip().lower() == Scene(color, shape, motion, background).caption():
            return color, shape, motion, background
    raise ValueError(f"not a canonical toy-world caption: {text!r}")


def random_scene(rng: random.Random, color: str, shape: str, motion: str, background: str, aspect: float) -> Scene:
    """A scene with jittered size, travel and start, kept fully inside a frame of width/height `aspect`."""
    size = rng.uniform(0.85, 1.15)
    travel = rng.uniform(*TRAVEL)
    half_h = OBJECT_HEIGHT * size / 2  # half the object's height, in frame heights
    if motion in ("growing", "shrinking"):
        half_h *= math.sqrt(GROWTH)  # room for the largest size
    half_w = half_h / aspect  # the same half-size in frame widths
    x_lo, x_hi, y_lo, y_hi = half_w, 1 - half_w, half_h, 1 - half_h
    if motion == "moving right":
        x_hi -= travel
    elif motion == "moving left":
        x_lo += travel
    elif motion == "moving down":
        y_hi -= travel
    elif motion == "moving up":
        y_lo += travel
    start = (_jittered(rng, x_lo, max(x_lo, x_hi)), _jittered(rng, y_lo, max(y_lo, y_hi)))
    return Scene(color, shape, motion, background, size=size, travel=travel, start=start)


def _jittered(rng: random.Random, low: float, high: float) -> float:
    """A point of [low, high] at most START_JITTER from its middle."""
    middle, reach = (low + high) / 2, min(START_JITTER, (high - low) / 2)
    return rng.uniform(middle - reach, middle + reach)


def varied_caption(scene: Scene, rng: random.Random) -> str:
    """The scene's caption in one of the wordings training may use (the canonical one half the time)."""
    if rng.random() < 0.5:
        return scene.caption()
    shape = rng.choice(_SHAPE_WORDS[scene.shape])
    motion = rng.choice(_MOTION_WORDS[scene.motion])
    return f"a {scene.color} {shape} {motion} on a {scene.background} background"


def caption_vocabulary() -> list[str]:
    """Every caption wording of the world (to train tokenizers on)."""
    lines = []
    for color, shape, motion, background in itertools.product(COLORS, SHAPES, MOTIONS, BACKGROUNDS):
        for shape_word in _SHAPE_WORDS[shape]:
            for motion_word in _MOTION_WORDS[motion]:
                lines.append(f"a {color} {shape_word} {motion_word} on a {background} background")
    return lines


def _position(scene: Scene, progress: float) -> tuple[float, float, float]:
    """(centre x, centre y, height) of the object at `progress` in [0, 1], as fractions of the frame."""
    x, y = scene.start
    height = OBJECT_HEIGHT * scene.size
    shift = scene.travel * progress
    if scene.motion == "moving right":
        x += shift
    elif scene.motion == "moving left":
        x -= shift
    elif scene.motion == "moving down":
        y += shift
    elif scene.motion == "moving up":
        y -= shift
    elif scene.motion == "growing":
        height *= GROWTH ** (progress - 0.5)
    elif scene.motion == "shrinking":
        height *= GROWTH ** (0.5 - progress)
    return x, y, height


def _coverage(shape: str, xs: torch.Tensor, ys: torch.Tensor, cx: float, cy: float, half: float) -> torch.Tensor:
    """1 where the point (x, y) (in pixels) lies inside the shape centred at (cx, cy) with half-height `half`."""
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        inside = dx * dx + dy * dy <= half * half
    elif shape == "square":
        inside = (dx.abs() <= half) & (dy.abs() <= half)
    else:  # upright triangle: apex at the top, base at the bottom, as wide as it is high
        rel = (dy + half) / (2 * half)  # 0 at the apex, 1 at the base
        inside = (rel >= 0) & (rel <= 1) & (dx.abs() <= rel * half)
    return inside.float()


def render(scene: Scene, frames: int, height: int, width: int, supersample: int = 3) -> torch.Tensor:
    """The clip as (frames, 3, height, width) floats in [-1, 1], edges anti-aliased by supersampling."""
    offsets = (torch.arange(supersample, dtype=torch.float32) + 0.5) / supersample
    ys = (torch.arange(height, dtype=torch.float32)[:, None] + offsets[None, :]).reshape(-1)
    xs = (torch.arange(width, dtype=torch.float32)[:, None] + offsets[None, :]).reshape(-1)
    grid_y, grid_x = ys[:, None], xs[None, :]
    color = torch.tensor(COLORS[scene.color], dtype=torch.float32)[:, None, None]
    background = torch.tensor(BACKGROUNDS[scene.background], dtype=torch.float32)[:, None, None]
    clip = torch.empty(frames, 3, height, width)
    for index in range(frames):
        progress = index / max(frames - 1, 1)
        x, y, size = _position(scene, progress)
        cover = _coverage(scene.shape, grid_x, grid_y, x * width, y * height, size * height / 2)
        cover = torch.nn.functional.avg_pool2d(cover[None, None], supersample)[0]
        clip[index] = background + (color - background) * cover
    return clip / 127.5 - 1.0


def render_path(scene: Scene, centres: Sequence[tuple[float, float]], height: int, width: int) -> torch.Tensor:
    """The scene's object at its start size, one frame at each centre (fractions of width and height): a path
    none of the world's motions has, such as a diagonal, for teaching a motion from a reference clip."""
    return torch.cat([render(replace(scene, travel=0.0, start=centre), 1, height, width) for centre in centres])
