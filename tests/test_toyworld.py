"""The toy world: rendered clips are read back correctly by the analyser, held-out combinations never reach
the data set, and a seed always gives the same data set."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from show1_cli.toyworld.analyse import CORNER_COVER, analyse
from show1_cli.toyworld.dataset import write_dataset
from show1_cli.toyworld.world import COLORS, Scene, all_combinations, is_held_out, parse_caption, random_scene, render, render_path


@pytest.mark.parametrize("size", [(24, 32), (96, 128)])
def test_the_analyser_reads_back_what_was_rendered(size):
    rng = random.Random(3)
    combos = all_combinations(held_out=False)[::9] + all_combinations(held_out=True)[::9]
    wrong = []
    for combo in combos:
        clip = render(random_scene(rng, *combo, aspect=size[1] / size[0]), 29, 96, 128)
        clip = F.interpolate(clip, size=size, mode="area")
        reading = analyse(clip)
        if (reading.color, reading.shape, reading.motion, reading.background) != combo:
            wrong.append((combo, reading.as_dict()))
    assert len(wrong) <= len(combos) // 20, wrong  # shapes at 8 pixels high may be misread now and then


def test_each_shape_covers_the_corners_the_analyser_expects():
    for shape, expected in CORNER_COVER.items():
        clip = render(Scene("red", shape, "moving right", "black", travel=0.0), 2, 384, 384)
        assert analyse(clip).corners == pytest.approx(expected, abs=0.03), shape


def test_stray_pixels_are_not_the_object():
    """Decoders leave speckle and corner artefacts; the object is the largest blob, so they move no reading."""
    rng = random.Random(5)
    for shape in ("square", "circle", "triangle"):
        clip = render(random_scene(rng, "orange", shape, "moving right", "white", aspect=4 / 3), 9, 96, 128)
        clean = analyse(clip)
        clip[:, :, 0, 0] = clip[:, :, -1, -1] = -1.0  # a dark pixel in two corners of every frame
        clip[::2, 1, 10:12, 60:62] = -1.0  # and a purple speck away from the object in every other frame
        speckled = analyse(clip)
        assert speckled.as_dict() == clean.as_dict() == {"color": "orange", "shape": shape, "motion": "moving right", "background": "white"}
        assert speckled.corners == pytest.approx(clean.corners) and speckled.shift == pytest.approx(clean.shift)


def test_wavy_edges_keep_their_shape():
    """Generated objects have wavy, rounded edges; warped renders must still read as the shape they are."""
    rng, generator = random.Random(2), torch.Generator().manual_seed(2)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 96), torch.linspace(-1, 1, 128), indexing="ij")
    for combo in all_combinations(held_out=False)[::6]:
        clip = render(random_scene(rng, *combo, aspect=4 / 3), 5, 96, 128)
        displacement = F.interpolate(torch.randn(5, 2, 6, 8, generator=generator) * 0.03, size=(96, 128), mode="bicubic")
        grid = torch.stack([xs, ys], -1) + displacement.permute(0, 2, 3, 1)
        warped = F.grid_sample(clip, grid, padding_mode="border", align_corners=True)
        assert analyse(warped.clamp(-1, 1)).shape == combo[1], combo


def test_motion_and_size_follow_the_spec():
    rng = random.Random(0)
    for _ in range(20):
        scene = random_scene(rng, "red", "square", "moving right", "black", aspect=4 / 3)
        reading = analyse(render(scene, 2, 48, 64))  # first and last frame only: the whole travel
        assert 0.38 <= reading.shift[0] <= 0.52 and abs(reading.shift[1]) < 0.02
    grow = analyse(render(random_scene(rng, "blue", "circle", "growing", "white", aspect=4 / 3), 2, 48, 64))
    assert grow.growth ** 2 >= 2.5  # area at least 2.5x
    clip = render(random_scene(rng, "green", "square", "moving up", "gray", aspect=4 / 3), 29, 96, 128)
    rows = ((clip[0] - clip[0, :, :1, :1]).abs().sum(0) > 0.1).any(1)
    assert 0.25 < rows.float().sum() / 96 < 0.42  # about a third of the frame height


def test_a_rendered_path_puts_the_object_at_each_centre():
    centres = [(0.3 + 0.4 * index / 7, 0.25 + 0.5 * index / 7) for index in range(8)]
    clip = render_path(Scene("green", "square", "moving left", "white"), centres, 96, 128)
    assert clip.shape == (8, 3, 96, 128)
    reading = analyse(clip)
    assert (reading.color, reading.shape, reading.background) == ("green", "square", "white")
    # The analyser averages the first and last quarter of the frames: centres 0.5 and 6.5 of 7 steps apart.
    assert reading.shift == pytest.approx((0.4 * 6 / 7, 0.5 * 6 / 7), abs=0.01)
    assert 1 / 1.05 < reading.growth < 1.05


def test_held_out_combinations_and_captions():
    assert is_held_out("yellow", "triangle", "growing", "black")
    assert is_held_out("red", "square", "moving down", "gray")
    assert is_held_out("purple", "circle", "moving left", "white")
    assert not is_held_out("purple", "circle", "moving left", "black")
    assert len(all_combinations(False)) + len(all_combinations(True)) == len(COLORS) * 3 * 6 * 3
    assert parse_caption("a red circle moving right on a black background") == ("red", "circle", "moving right", "black")
    with pytest.raises(ValueError):
        parse_caption("a red ball moving right on a black background")


def test_the_data_set_is_deterministic_and_excludes_the_held_out(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        assert write_dataset(folder, height=32, width=32, per_combination=1, seed=4, frames=5, limit=12) == 12
    assert (first / "captions.jsonl").read_bytes() == (second / "captions.jsonl").read_bytes()
    assert (first / "clips" / "00003.mp4").read_bytes() == (second / "clips" / "00003.mp4").read_bytes()
    everything = tmp_path / "all"
    write_dataset(everything, height=16, width=16, per_combination=1, seed=4, frames=2)
    from show1_cli.video import read_video

    for line in (everything / "captions.jsonl").read_text().splitlines()[:40]:
        entry = json.loads(line)
        canonical = read_video(everything / entry["file"]).metadata["caption"]
        assert not is_held_out(*parse_caption(canonical))
