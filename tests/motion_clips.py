"""Synthetic reference clips for motion customization: a square moving over a still background.

Used by tests/test_finetune.py and benchmarks/motion_losses.py. The square's trajectory is known
exactly, so how well a model learned the motion can be measured by tracking the square in what it
generates (`square_centres`).
"""

from __future__ import annotations

import torch


def square_trajectory(frames: int, height: int, width: int, side: int) -> list[tuple[float, float]]:
    """Top-left corners (row, column): left to right across the frame while drifting down by a quarter."""
    travel_x = width - side
    travel_y = (height - side) / 4
    return [(travel_y * f / (frames - 1) + (height - side) / 4, travel_x * f / (frames - 1)) for f in range(frames)]


SQUARE_COLOUR = (0.9, 0.6, -0.2)


def moving_square_clip(
    frames: int, height: int, width: int, *, side: int | None = None, seed: int = 0, colour: tuple[float, float, float] = SQUARE_COLOUR
) -> torch.Tensor:
    """(frames, 3, height, width) in [-1, 1]: a bright square crossing a fixed, smoothly textured dark
    background (`seed` picks the background)."""
    side = side or max(2, min(height, width) // 4)
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 8), max(2, width // 8), generator=generator)
    background = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    background = background * 0.6 - 0.8  # dark, in [-0.8, -0.2]
    fill = torch.tensor(colour).view(3, 1, 1)
    clip = background.expand(frames, 3, height, width).clone()
    for index, (top, left) in enumerate(square_trajectory(frames, height, width, side)):
        row, col = round(top), round(left)
        clip[index, :, row : row + side, col : col + side] = fill
    return clip


def square_centres(clip: torch.Tensor, colour: tuple[float, float, float] = SQUARE_COLOUR) -> torch.Tensor:
    """(frames, 2) centre (row, column) of the square in each frame: the mass centre of the 5 % of pixels
    closest to the square's colour, weighted by closeness (works on noisy or blurred frames too)."""
    distance = (clip - torch.tensor(colour).view(1, 3, 1, 1)).square().sum(dim=1)  # (F, H, W)
    flat = -distance.flatten(1)
    threshold = flat.quantile(0.95, dim=1, keepdim=True)
    weights = ((flat >= threshold).float() * (flat - threshold + 1e-6)).view_as(distance)
    rows = torch.arange(distance.shape[1], dtype=torch.float32).view(1, -1, 1)
    cols = torch.arange(distance.shape[2], dtype=torch.float32).view(1, 1, -1)
    total = weights.sum(dim=(1, 2))
    return torch.stack([(weights * rows).sum(dim=(1, 2)) / total, (weights * cols).sum(dim=(1, 2)) / total], dim=1)
