"""Read a toy-world video back: which colour, shape, motion and background does it show?

The analyser knows nothing of how the video was made. Per frame it takes the background colour from the
border, marks the pixels that differ clearly from it, keeps the largest connected blob of them as the
object, and measures the object's colour, centre, area, and how much of the corners of its bounding box it
covers. The motion comes from how centre and area change over the clip, the shape from the corners: a square
fills all four, a circle a little of each, an upright triangle the bottom two only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from show1_cli.toyworld.world import BACKGROUNDS, COLORS

# A pixel is the object's when it is this far (RGB distance, 0-255) from the background colour.
OBJECT_DISTANCE = 60.0
# A quarter of the bounding box's height and width at each corner. What each shape covers of its top and
# bottom corners, from geometry: the circle fills 32% of each corner, the triangle 75% of the bottom ones.
CORNER = 0.25
CORNER_COVER = {"square": (1.0, 1.0), "circle": (0.32, 0.32), "triangle": (0.0, 0.75)}
# Growth below this linear size ratio counts as no growth (the world's growing objects change 1.8x).
GROWTH_THRESHOLD = 1.3


@dataclass(frozen=True)
class Reading:
    """What the analyser read from a video; `None` where it could not tell (no object found)."""

    color: str | None
    shape: str | None
    motion: str | None
    background: str
    corners: tuple[float, float]  # median fraction of the bounding box's (top, bottom) corners it covers
    shift: tuple[float, float]  # centre displacement first->last, as fractions of (width, height)
    growth: float  # linear size ratio last/first

    def as_dict(self) -> dict[str, str | None]:
        return {"color": self.color, "shape": self.shape, "motion": self.motion, "background": self.background}


def _nearest(rgb: torch.Tensor, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    colours = torch.tensor([palette[name] for name in names], dtype=torch.float32)
    return names[int((colours - rgb).norm(dim=1).argmin())]


def _corner_cover(mask: torch.Tensor) -> tuple[float, float]:
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].float()
    tall, wide = max(1, round(box.shape[0] * CORNER)), max(1, round(box.shape[1] * CORNER))
    top = (box[:tall, :wide].mean() + box[:tall, -wide:].mean()) / 2
    bottom = (box[-tall:, :wide].mean() + box[-tall:, -wide:].mean()) / 2
    return float(top), float(bottom)


def _largest_blobs(masks: torch.Tensor) -> torch.Tensor:
    """Each frame's largest 8-connected blob of a (F, H, W) mask.

    Stray pixels (decoder speckle, a corner artefact) would otherwise stretch the bounding box: one pixel
    in a corner of the frame made a square's box the whole frame, which it filled a fifth of, like no shape.
    """
    frames, height, width = masks.shape
    pixels = height * width
    # Every pixel takes its neighbours' largest label until each blob holds one (as many rounds as it is wide).
    labels = torch.arange(1, pixels + 1, dtype=torch.float32).reshape(1, height, width) * masks
    while not torch.equal(grown := F.max_pool2d(labels[:, None], 3, stride=1, padding=1)[:, 0] * masks, labels):
        labels = grown
    labels = labels.flatten(1).long()
    counts = torch.zeros(frames, pixels + 1).scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float32))
    counts[:, 0] = 0
    return (labels == counts.argmax(dim=1, keepdim=True)).reshape(frames, height, width) & masks


def analyse(video: torch.Tensor) -> Reading:
    """Read a (frames, 3, H, W) video in [-1, 1]."""
    pixels = ((video.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1)  # (F, H, W, 3), 0-255
    frames, height, width, _ = pixels.shape
    border = torch.cat([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], dim=1).reshape(-1, 3)
    background_rgb = border.median(dim=0).values
    background = _nearest(background_rgb, BACKGROUNDS)

    masks = _largest_blobs((pixels - background_rgb).norm(dim=-1) > OBJECT_DISTANCE)  # (F, H, W)
    areas = masks.flatten(1).sum(dim=1).float()
    present = areas >= 4
    if int(present.sum()) < 2:
        return Reading(None, None, None, background, (0.0, 0.0), (0.0, 0.0), 1.0)

    color = _nearest(pixels[masks].median(dim=0).values, COLORS)
    ys = torch.arange(height, dtype=torch.float32)[None, :, None]
    xs = torch.arange(width, dtype=torch.float32)[None, None, :]
    weights = masks.float()
    cx = (weights * xs).flatten(1).sum(1) / areas.clamp(min=1)
    cy = (weights * ys).flatten(1).sum(1) / areas.clamp(min=1)
    index = torch.nonzero(present).flatten()
    # Ends averaged over a few frames, so one bad frame does not decide the motion.
    head, tail = index[: max(1, len(index) // 4)], index[-max(1, len(index) // 4) :]
    shift_x = float(cx[tail].mean() - cx[head].mean()) / width
    shift_y = float(cy[tail].mean() - cy[head].mean()) / height
    growth = math.sqrt(float(areas[tail].mean() / areas[head].mean().clamp(min=1)))

    if growth >= GROWTH_THRESHOLD:
        motion = "growing"
    elif growth <= 1 / GROWTH_THRESHOLD:
        motion = "shrinking"
    elif abs(shift_x) >= abs(shift_y):
        motion = "moving right" if shift_x > 0 else "moving left"
    else:
        motion = "moving down" if shift_y > 0 else "moving up"

    cover = torch.tensor([_corner_cover(masks[i]) for i in index.tolist()]).median(dim=0).values
    shape = min(CORNER_COVER, key=lambda name: float((cover - torch.tensor(CORNER_COVER[name])).norm()))
    corners = (float(cover[0]), float(cover[1]))
    return Reading(color, shape, motion, background, corners, (shift_x, shift_y), growth)
