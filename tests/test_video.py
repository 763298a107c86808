"""Tests of show1_cli.video: round trips through real files, checked with PyAV directly as well."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from show1_cli import files as files_module
from show1_cli import video as video_module
from show1_cli.errors import InputError, OutputExistsError
from show1_cli.video import Video, ensure_writable, read_video, write_video

METADATA = {
    "prompt": 'a "cat" says \'miaou\' — 猫, ü; {json}',
    "negative_prompt": "low resolution, blur",
    "seed": 42,
    "preset": "fast",
    "stages": ["keyframes"],
    "weights": {"showlab/show-1-base": {"revision": "0123abcd", "lock_sha256": None}},
    "guidance_scale": 9.5,
}


def smooth_frames(count: int = 5, height: int = 40, width: int = 64) -> torch.Tensor:
    """A small moving-gradient clip in [-1, 1]: content that lossy codecs keep well."""
    y = torch.linspace(-1, 1, height).view(1, height, 1)
    x = torch.linspace(-1, 1, width).view(1, 1, width)
    frames = []
    for index in range(count):
        shift = index / max(count, 1)
        red = torch.sin(3 * x + 2 * shift) * 0.8 + 0 * y
        green = torch.cos(2 * y - shift) * 0.7 + 0 * x
        blue = (x * y) * 0.9
        frames.append(torch.cat([red, green, blue], 0))
    return torch.stack(frames).clamp(-1, 1)


def quantise(frames: torch.Tensor) -> np.ndarray:
    """What write_video stores: (F, H, W, 3) uint8."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def decode_with_pyav(path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return frames, stream.average_rate, dict(container.metadata), stream.codec_context.name, stream.codec_context.pix_fmt


def no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


# ------------------------------------------------------------------------------------------- round trip


def test_mp4_round_trip_h264(tmp_path):
    clip = smooth_frames()
    out = tmp_path / "clip.mp4"
    assert write_video(out, clip, 8, METADATA) == out

    pixels, rate, tags, codec, pix_fmt = decode_with_pyav(out)
    assert pixels.shape == (5, 40, 64, 3)
    assert rate == 8
    assert codec == "h264" and pix_fmt == "yuv420p"
    assert json.loads(tags["show1"]) == METADATA
    assert tags["title"] == METADATA["prompt"]
    error = np.abs(pixels.astype(np.int16) - quantise(clip).astype(np.int16))
    assert error.mean() < 4.0  # uint8 levels; 4:2:0 chroma subsampling alone costs ~2.4 on this clip

    video = read_video(out)
    assert isinstance(video, Video)
    assert video.frames.shape == (5, 3, 40, 64)
    assert video.frames.dtype == torch.float32
    assert video.frames.min() >= -1 and video.frames.max() <= 1
    assert video.fps == 8.0
    assert video.metadata == METADATA
    assert (video.frames - clip).abs().mean() < 4.0 / 127.5
    # read_video and PyAV agree on the content.
    assert np.array_equal(quantise(video.frames), pixels)


def test_fractional_fps_survives(tmp_path):
    out = write_video(tmp_path / "slow.mp4", smooth_frames(4), 7.5, METADATA)
    assert decode_with_pyav(out)[1] == Fraction(15, 2)
    assert read_video(out).fps == 7.5

    ntsc = write_video(tmp_path / "ntsc.mkv", smooth_frames(3), 30000 / 1001)
    assert read_video(ntsc).fps == pytest.approx(30000 / 1001, rel=1e-9)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_lossless_is_bit_exact(tmp_path, suffix):
    gen = torch.Generator().manual_seed(1)
    noise = torch.rand(5, 3, 40, 64, generator=gen) * 2 - 1  # worst case for any lossy codec
    out = write_video(tmp_path / f"inter{suffix}", noise, 8, METADATA, lossless=True)

    pixels, rate, _, _, _ = decode_with_pyav(out)
    assert np.array_equal(pixels, quantise(noise))
    assert rate == 8

    video = read_video(out)
    assert video.metadata == METADATA
    assert np.array_equal(quantise(video.frames), quantise(noise))
    # Chaining: writing what was read, losslessly again, changes nothing.
    again = write_video(tmp_path / f"again{suffix}", video.frames, video.fps, video.metadata, lossless=True)
    assert torch.equal(read_video(again).frames, video.frames)


def test_lossy_noise_is_not_exact_but_lossless_is(tmp_path):
    """Guards the test above: the lossy path really is lossy, so bit-exactness means lossless encoding."""
    noise = torch.rand(3, 3, 40, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    lossy = write_video(tmp_path / "lossy.mp4", noise, 8)
    assert not np.array_equal(decode_with_pyav(lossy)[0], quantise(noise))


def test_mkv_metadata_and_h264(tmp_path):
    out = write_video(tmp_path / "clip.mkv", smooth_frames(3), 8, METADATA)
    _, _, tags, codec, _ = decode_with_pyav(out)
    assert codec == "h264"
    assert json.loads({k.lower(): v for k, v in tags.items()}["show1"]) == METADATA
    assert read_video(out).metadata == METADATA


def test_values_clamped_and_non_string_metadata(tmp_path):
    clip = smooth_frames(2) * 3  # out of range on purpose
    clip[0, 0, 0, 0] = float("nan")
    out = write_video(tmp_path / "c.mp4", clip, 8, {"seed": 7, "weights": {"base": "abc"}}, lossless=True)
    video = read_video(out)
    assert video.frames.min() >= -1 and video.frames.max() <= 1
    assert video.frames[0, 0, 0, 0] == pytest.approx(0.0, abs=1 / 127.5)
    assert video.metadata == {"seed": 7, "weights": {"base": "abc"}}


def test_odd_size_keeps_dimensions(tmp_path, caplog):
    clip = smooth_frames(3, height=41, width=63)
    with caplog.at_level(logging.WARNING, logger="show1.video"):
        out = write_video(tmp_path / "odd.mp4", clip, 8)
    assert "odd" in caplog.text
    pixels, _, _, codec, pix_fmt = decode_with_pyav(out)
    assert pixels.shape == (3, 41, 63, 3)
    assert codec == "h264" and pix_fmt == "yuv444p"
    assert read_video(out).frames.shape == (3, 3, 41, 63)


def test_single_frame(tmp_path):
    out = write_video(tmp_path / "one.mp4", smooth_frames(1), 8)
    assert read_video(out).frames.shape == (1, 3, 40, 64)


def test_foreign_file_has_empty_metadata(tmp_path):
    out = tmp_path / "foreign.mp4"
    pixels = quantise(smooth_frames(3))
    with av.open(str(out), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 40, "yuv420p"
        for array in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    video = read_video(out)
    assert video.metadata == {}
    assert video.fps == 12.0
    assert video.frames.shape == (3, 3, 40, 64)


def test_fallback_encoder_when_libx264_missing(tmp_path, monkeypatch, caplog):
    real = video_module._encoder_available
    monkeypatch.setattr(video_module, "_encoder_available", lambda name: name not in {"libx264", "libx264rgb"} and real(name))
    with caplog.at_level(logging.WARNING, logger="show1.video"):
        lossy = write_video(tmp_path / "fallback.mp4", smooth_frames(3), 8, METADATA)
        lossless = write_video(tmp_path / "fallback.mkv", smooth_frames(3), 8, METADATA, lossless=True)
    assert "libx264 is not available" in caplog.text
    assert "libx264rgb is not available" in caplog.text
    assert decode_with_pyav(lossy)[3] == "mpeg4"
    assert read_video(lossy).metadata == METADATA
    _, _, _, codec, _ = decode_with_pyav(lossless)
    assert codec == "ffv1"
    assert np.array_equal(quantise(read_video(lossless).frames), quantise(smooth_frames(3)))


# ------------------------------------------------------------------------------ overwrite and atomicity


def test_refuses_to_overwrite_and_keeps_old_file(tmp_path):
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError) as info:
        ensure_writable(out, overwrite=False)
    assert "--overwrite" in str(info.value)
    with pytest.raises(OutputExistsError):
        write_video(out, smooth_frames(2), 8)
    assert out.read_bytes() == b"precious"
    assert no_leftovers(tmp_path) == []


def test_overwrite_replaces(tmp_path):
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"old")
    ensure_writable(out, overwrite=True)
    write_video(out, smooth_frames(2), 8, METADATA, overwrite=True)
    assert read_video(out).metadata == METADATA
    assert no_leftovers(tmp_path) == []


def test_target_appearing_during_encoding_is_not_replaced(tmp_path, monkeypatch):
    out = tmp_path / "clip.mp4"
    real_encode = video_module._encode

    def encode_then_race(*args, **kwargs):
        real_encode(*args, **kwargs)
        out.write_bytes(b"someone else's")

    monkeypatch.setattr(video_module, "_encode", encode_then_race)
    with pytest.raises(OutputExistsError):
        write_video(out, smooth_frames(2), 8)
    assert out.read_bytes() == b"someone else's"
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize("lossless", [False, True])
@pytest.mark.parametrize("error", [RuntimeError("encoder exploded"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch, error, lossless):
    """Fail while encoding, once the partial file is on disk: neither it nor the output may remain."""
    real_from_ndarray = av.VideoFrame.from_ndarray
    partial_seen = []

    def failing_from_ndarray(array, format):
        partial_seen.extend(no_leftovers(tmp_path))
        if partial_seen:
            raise error
        return real_from_ndarray(array, format=format)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", staticmethod(failing_from_ndarray))
    out = tmp_path / "clip.mp4"
    # x264 holds back its lookahead before muxing anything; enough frames make packets reach the file.
    with pytest.raises(type(error)):
        write_video(out, smooth_frames(80), 8, METADATA, lossless=lossless)
    assert partial_seen, "the failure did not happen mid-write"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_keeps_existing_file_with_overwrite(tmp_path, monkeypatch):
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(files_module, "_fsync", boom)  # after encoding, before the rename
    with pytest.raises(RuntimeError):
        write_video(out, smooth_frames(2), 8, overwrite=True)
    assert out.read_bytes() == b"old"
    assert no_leftovers(tmp_path) == []


def test_bad_frames_leave_nothing(tmp_path):
    out = tmp_path / "clip.mp4"
    with pytest.raises(ValueError):
        write_video(out, torch.zeros(5, 4, 40, 64), 8)
    with pytest.raises(ValueError):
        write_video(out, torch.zeros(0, 3, 40, 64), 8)
    with pytest.raises(InputError):
        write_video(out, torch.zeros(2, 3, 40, 64), 0)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ bad paths


@pytest.mark.parametrize("name", ["clip.avi", "clip.png", "clip.mov"])
def test_unsupported_suffix(tmp_path, name):
    with pytest.raises(InputError) as info:
        ensure_writable(tmp_path / name, overwrite=False)
    assert ".mp4" in str(info.value) and ".mkv" in str(info.value)
    assert not isinstance(info.value, OutputExistsError)


def test_missing_parent_folder(tmp_path):
    with pytest.raises(InputError) as info:
        ensure_writable(tmp_path / "nope" / "clip.mp4", overwrite=True)
    assert "does not exist" in str(info.value)


def test_output_is_a_folder(tmp_path):
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(InputError):
        ensure_writable(tmp_path / "dir.mp4", overwrite=True)


def test_ensure_writable_accepts_new_file(tmp_path):
    ensure_writable(tmp_path / "new.MP4", overwrite=False)
    ensure_writable(tmp_path / "new.mkv", overwrite=False)


def test_read_missing_file(tmp_path):
    with pytest.raises(InputError) as info:
        read_video(tmp_path / "missing.mp4")
    assert "does not exist" in info.value.message
    assert info.value.fix
    assert "\n" not in str(info.value)


def test_read_garbage_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 10)
    with pytest.raises(InputError) as info:
        read_video(bad)
    assert "bad.mp4" in info.value.message
    assert info.value.fix
    assert "\n" not in str(info.value)


def test_read_truncated_file(tmp_path):
    good = write_video(tmp_path / "good.mp4", smooth_frames(5), 8)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError):
        read_video(truncated)


def test_read_folder(tmp_path):
    with pytest.raises(InputError):
        read_video(tmp_path)


def test_read_file_without_video_stream(tmp_path):
    audio = tmp_path / "tone.mkv"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InputError) as info:
        read_video(audio)
    assert "no video stream" in info.value.message
