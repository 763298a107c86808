"""Output formats beside MP4: .webm, .gif and a folder of PNG frames, all written atomically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from show1_cli.errors import InputError
from show1_cli.video import read_video, write_video
from tests.conftest import run_cli

KEYFRAMES = ["--stages", "keyframes", "--set", "keyframes.steps=1", "--set", "keyframes.frames=3", "--set", "keyframes.height=16",
             "--set", "keyframes.width=32", "--seed", "4"]


@pytest.fixture(scope="module")
def reference(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """The exact frames of the run every format below writes (lossless MKV)."""
    path = tmp_path_factory.mktemp("reference") / "exact.mkv"
    assert run_cli("generate", "a cat", "-o", path, "--lossless", *KEYFRAMES).exit_code == 0
    return read_video(path).frames


def smooth_video() -> torch.Tensor:
    """Gradients that move from frame to frame: content a lossy codec keeps well."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 64), indexing="ij")
    return torch.stack([torch.stack([x * 0.8, y * 0.8, (x + y + frame / 4) / 3]) for frame in range(6)]).clamp(-1, 1)


# GIF's fixed 256-colour palette costs about 17 levels of 255 on average.
@pytest.mark.parametrize(("suffix", "mean_error"), [(".webm", 0.02), (".gif", 0.15)])
def test_webm_and_gif_hold_the_frames(suffix, mean_error, tmp_path):
    frames = smooth_video()
    write_video(tmp_path / f"v{suffix}", frames, 8.0, {"prompt": "a gradient"})
    back = read_video(tmp_path / f"v{suffix}")
    assert back.frames.shape == frames.shape and back.fps == pytest.approx(8.0, rel=0.05)  # GIF delays are whole centiseconds
    assert (back.frames - frames).abs().mean() < mean_error
    with pytest.raises(InputError, match="--lossless cannot be written"):
        write_video(tmp_path / f"exact{suffix}", frames, 8.0, lossless=True)


@pytest.mark.parametrize("suffix", [".webm", ".gif"])
def test_generate_writes_webm_and_gif_with_their_record(suffix, reference, tiny_weights, tmp_path):
    output = tmp_path / f"cat{suffix}"
    result = run_cli("generate", "a cat", "-o", output, *KEYFRAMES)
    assert result.exit_code == 0, result.output
    assert read_video(output).frames.shape == reference.shape
    assert (tmp_path / "cat.json").is_file()


def test_a_name_without_suffix_is_a_folder_of_png_frames(reference, tiny_weights, tmp_path):
    folder = tmp_path / "frames"
    assert run_cli("generate", "a cat", "-o", folder, *KEYFRAMES).exit_code == 0
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["0001.png", "0002.png", "0003.png"]
    for index, name in enumerate(names):  # PNG is lossless: exactly the frames
        assert torch.equal(read_video(folder / name).frames[0], reference[index])
    again = run_cli("generate", "a cat", "-o", folder, *KEYFRAMES)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert run_cli("generate", "a cat", "-o", folder, *KEYFRAMES, "--overwrite", "--set", "keyframes.frames=2").exit_code == 0
    assert sorted(path.name for path in folder.iterdir()) == ["0001.png", "0002.png"]  # replaced as a whole
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_a_folder_with_other_files_is_never_replaced(tiny_weights, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    result = run_cli("generate", "a cat", "-o", folder, *KEYFRAMES, "--overwrite")
    assert result.exit_code == 2 and "holds other files" in result.output
    assert (folder / "notes.txt").read_text() == "keep me"


def test_a_png_folder_left_half_written_by_a_killed_run_is_swept_by_the_next(tiny_weights, tmp_path):
    stale = tmp_path / ".frames.partial-0badc0de"  # what SIGKILL leaves while the frames are being written
    stale.mkdir()
    (stale / "0001.png").write_bytes(b"half a frame")
    result = run_cli("generate", "a cat", "-o", tmp_path / "frames", *KEYFRAMES)
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frames", "frames.json"]
