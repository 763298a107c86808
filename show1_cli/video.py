"""Reading and writing video files.

Frames travel through `show1` as float tensors of shape (frames, 3, height, width), RGB, in [-1, 1].
This module turns such tensors into video files and back.

Writing
    * Container: chosen by the suffix, `.mp4` (MPEG-4/ISO) or `.mkv` (Matroska); `.webm` (VP9, CRF 30) and
      `.gif` (a fixed 3-3-2 palette of 256 colours, delays in whole centiseconds, no metadata) for sharing
      and previews; an output without suffix is a folder of PNG frames (`0001.png`, ...), written and
      replaced as a whole like a file.
    * Default (lossy) encoding: H.264 through `libx264`, `yuv420p`, CRF 17 (visually lossless for the
      small Show-1 outputs) and `faststart` for MP4 so players can start before the whole file is read.
      `yuv420p` needs even sizes; an odd width or height is encoded as `yuv444p` H.264 instead (same
      size, exact dimensions kept, but some players cannot show 4:4:4 H.264), with a logged warning.
      Without `libx264` in the PyAV build the fallback is MPEG-4 Part 2 (`mpeg4`, qscale 2), with a
      logged warning.
    * Lossless encoding (`lossless=True`, for intermediate files between stages): H.264 in RGB through
      `libx264rgb` with QP 0, which decodes back to exactly the uint8 RGB frames that were written. It
      works in both `.mp4` and `.mkv` and for any size. Without `libx264rgb` the fallback is FFV1
      (`bgr0`), also bit-exact; it is native to Matroska, so prefer `.mkv` for lossless files if your
      PyAV build lacks `libx264rgb`.
    * Frames are clamped to [-1, 1] and rounded to uint8 (`round((x + 1) * 127.5)`), so a uint8 frame
      read back by `read_video` and written losslessly again is unchanged.
    * The frame rate may be fractional (7.5): it becomes an exact rational time base.
    * Metadata: the mapping is stored as one typed JSON object in the container tag `show1` (for MP4
      through `movflags=use_metadata_tags`, which keeps arbitrary tags): numbers stay numbers, lists and
      objects stay JSON, nothing is a JSON string inside a string. Readable copies go into the standard
      tags players and ffprobe show: `title` (the `prompt`), `comment` (the `summary`) and
      `creation_time` (the `created` time), when the mapping has those keys.
    * Atomic (show1_cli/files.py): the file is written to a hidden temporary file next to the target
      (`.<name>.partial-<random>`), flushed to disk, then moved into place. On any failure, Ctrl-C
      included, the temporary file is removed and nothing is left at the target. Without `overwrite`
      an existing target is refused before encoding and again at the moment of the move (the move is
      then a hard link, which cannot replace an existing file).

Reading
    Any file PyAV can decode: all frames of the first video stream, converted to RGB, with the stream's
    average frame rate, and the metadata `show1` stored (an empty dict for other files). `probe_video`
    reads the same facts (frame count, size, rate, codec, metadata) without decoding a frame.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from .choices import OUTPUT_FORMATS
from .errors import InputError
from .files import atomic_output, exists_error

if TYPE_CHECKING:  # torch loads when frames are decoded or encoded, so that checking paths stays fast
    import torch

logger = logging.getLogger("show1.video")

#: Container formats by (lower-case) suffix.
CONTAINERS: dict[str, str] = {".mp4": "mp4", ".mkv": "matroska", ".webm": "webm", ".gif": "gif"}
#: The frames of a PNG folder: 0001.png, 0002.png, ...
FRAME_NAME = "{index:04d}.png"
FRAME_PATTERN = re.compile(r"\d{4,}\.png")
#: The container tag holding show1's metadata as a JSON object.
METADATA_TAG = "show1"
#: The standard container tags filled from the metadata (tag -> key), for players, ffprobe and exiftool.
READABLE_TAGS = {"title": "prompt", "comment": "summary", "creation_time": "created"}
#: Frame rate used for decoded files that carry none (single images).
DEFAULT_FPS = 8.0
#: The most decoded frames (as float32, the form stages take) an input video may come to; every stage's
#: input is far smaller, so a larger file is a mistake or a hostile file, refused before it exhausts memory.
MAX_DECODED_BYTES = 4 * 2**30
_FLOAT_BYTES = 4
#: Quality of the default lossy H.264 encoding (lower is better; 17 is visually lossless).
H264_CRF = 17


_SMPTE170M = 6  # AVCOL_SPC/PRI/TRC_SMPTE170M: BT.601 525-line, FFmpeg's default RGB<->YUV matrix
_MPEG_RANGE = 1  # AVCOL_RANGE_MPEG: limited ("TV") range


@dataclass
class Video:
    """A decoded clip: frames (F, 3, H, W) float32 RGB in [-1, 1], its frame rate and show1 metadata."""

    frames: torch.Tensor
    fps: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoFacts:
    """What a video file's headers and packets tell without decoding: frames, size, rate, codec, show1 metadata."""

    frames: int
    width: int
    height: int
    fps: float
    codec: str
    metadata: dict[str, Any]

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


@dataclass(frozen=True)
class _Encoding:
    codec: str
    pix_fmt: str
    options: dict[str, str]


# --------------------------------------------------------------------------------------------- reading


def read_video(path: Path) -> Video:
    """Decode every frame of the first video stream of `path`.

    Raises `InputError` when the file is missing, is not a file, cannot be decoded, has no video stream
    or no frames, or would decode to more than `MAX_DECODED_BYTES`.
    """
    path = Path(path)
    with _open_video(path) as (container, stream):
        stream.thread_type = "AUTO"
        codec = stream.codec_context  # None in some corrupt files
        declared_bytes = _FLOAT_BYTES * 3 * (codec.width * codec.height if codec else 0) * max(stream.frames, 1)
        if declared_bytes > MAX_DECODED_BYTES:
            raise _too_large(path, declared_bytes)
        arrays = []
        decoded_bytes = 0
        try:
            for frame in container.decode(stream):
                arrays.append(frame.to_ndarray(format="rgb24"))
                decoded_bytes += _FLOAT_BYTES * arrays[-1].size
                if decoded_bytes > MAX_DECODED_BYTES:
                    raise _too_large(path, decoded_bytes)
        except (av.error.FFmpegError, ValueError) as exc:
            raise _corrupt(path, exc) from exc
        if not arrays:
            raise InputError(f"{path} contains no video frames", "pass a file with at least one frame")
        if stream.frames > len(arrays):
            logger.warning("%s: decoded %d of the %d frames its container declares; the file may be truncated",
                           path, len(arrays), stream.frames)
        fps = _stream_fps(stream, path)
        metadata = _parse_metadata(container.metadata, path)
    import torch  # after the checks, so that a bad input answers fast

    data = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    frames = data.to(torch.float32) / 127.5 - 1.0
    return Video(frames=frames, fps=fps, metadata=metadata)


def probe_video(path: Path) -> VideoFacts:
    """The facts of `path`'s first video stream, counting its packets instead of decoding frames."""
    path = Path(path)
    with _open_video(path) as (container, stream):
        context = stream.codec_context
        if context is None:
            raise _corrupt(path, ValueError("no codec parameters"))
        try:
            frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        except av.error.FFmpegError as exc:
            raise _corrupt(path, exc) from exc
        return VideoFacts(frames, context.width, context.height, _stream_fps(stream, path), context.name,
                          _parse_metadata(container.metadata, path))


@contextmanager
def _open_video(path: Path) -> Iterator[tuple[Any, Any]]:
    if not path.exists():
        raise InputError(f"input video {path} does not exist", "check the path, or create it with `show1 generate`")
    if not path.is_file():
        raise InputError(f"input video {path} is not a file", "pass the path of a video file")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read {path} as a video ({_reason(exc)})",
            "pass a video file PyAV/FFmpeg can decode, such as an .mp4 written by show1",
        ) from exc
    try:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream", "pass a file that contains video")
        yield container, container.streams.video[0]
    finally:
        container.close()


def _corrupt(path: Path, exc: BaseException) -> InputError:
    return InputError(f"cannot decode the video in {path} ({_reason(exc)})",
                      "the file may be truncated or corrupt; regenerate it or pass another file")


def _too_large(path: Path, size: int) -> InputError:
    return InputError(f"{path} decodes to {size / 2**30:.1f} GiB of frames, more than the {MAX_DECODED_BYTES / 2**30:.0f} GiB show1 reads",
                      "pass a shorter or smaller video (for example scaled down with ffmpeg -vf scale=...)")


def _stream_fps(stream, path: Path) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    logger.warning("%s has no frame rate; assuming %g fps", path, DEFAULT_FPS)
    return DEFAULT_FPS


def _parse_metadata(tags: Mapping[str, str], path: Path) -> dict[str, Any]:
    # Matroska upper-cases tag names; look the tag up without regard to case.
    raw = next((value for key, value in tags.items() if key.lower() == METADATA_TAG), None)
    if raw is None:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        logger.warning("ignoring unreadable show1 metadata in %s", path)
        return {}
    if not isinstance(parsed, dict):
        logger.warning("ignoring unreadable show1 metadata in %s", path)
        return {}
    return parsed


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------- writing


def ensure_writable(path: Path, overwrite: bool) -> None:
    """Check, before any expensive work, that `write_video(path, ..., overwrite=overwrite)` can succeed.

    Raises `OutputExistsError` when `path` exists and `overwrite` is false, and `InputError` when the
    suffix is not `.mp4`/`.mkv`, the folder does not exist or is not writable, or `path` is a folder.
    """
    path = Path(path)
    if path.suffix and path.suffix.lower() not in CONTAINERS:
        raise InputError(f"cannot write video to {path}: unsupported file type {path.suffix!r}", f"choose an -o ending in {OUTPUT_FORMATS}")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: folder {parent} does not exist", f"create {parent} first or choose another -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: folder {parent} is not writable", "choose another -o")
    if is_frames_folder(path):
        if path.exists() and not path.is_dir():
            raise InputError(f"cannot write PNG frames to {path}: it is a file", "choose another -o, or add a suffix such as .mp4")
        if path.is_dir() and any(not FRAME_PATTERN.fullmatch(entry.name) for entry in path.iterdir()):
            raise InputError(f"cannot write PNG frames to {path}: the folder holds other files", "choose a new or empty folder")
    elif path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder", f"choose a file name ending in {OUTPUT_FORMATS}")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise exists_error(path)


def is_frames_folder(path: Path) -> bool:
    """An -o without suffix names a folder of PNG frames."""
    return not Path(path).suffix


def ensure_not_input(output: Path, input_path: Path) -> None:
    """Refuse an output that is the input video (the same path or another link to it), whatever --overwrite says:
    the command would replace the file it reads."""
    try:
        same = os.path.samefile(output, input_path)
    except OSError:  # one of them does not exist, so they are not the same file
        return
    if same:
        raise InputError(f"-o {output} is the input video {input_path}: writing it would replace what is being read",
                         "write to another file, then move it over the input if that is what you want")


def write_video(
    path: Path,
    frames: torch.Tensor,
    fps: float,
    metadata: Mapping[str, Any] | None = None,
    *,
    lossless: bool = False,
    overwrite: bool = False,
) -> Path:
    """Encode `frames` (F, 3, H, W) in [-1, 1] to `path` atomically and return `path`.

    See the module documentation for codecs, metadata and the atomic-write guarantees.
    """
    path = Path(path)
    ensure_writable(path, overwrite)
    rate = _rate(fps)
    pixels = _to_uint8(frames)
    height, width = pixels.shape[1:3]
    if is_frames_folder(path):
        with atomic_output(path, overwrite) as temp:
            temp.mkdir()
            for index, array in enumerate(pixels, start=1):
                _encode(temp / FRAME_NAME.format(index=index), "image2", _Encoding("png", "rgb24", {}), array[None], rate, {})
        logger.info("wrote %s (%d PNG frames, %dx%d)", path, len(pixels), width, height)
        return path
    container_format = CONTAINERS[path.suffix.lower()]
    encoding = _choose_encoding(lossless, width, height, container_format)
    with atomic_output(path, overwrite) as temp:
        _encode(temp, container_format, encoding, pixels, rate, _metadata_tags(metadata) if container_format != "gif" else {})
    logger.info("wrote %s (%d frames, %dx%d, %g fps, %s)", path, len(pixels), width, height, float(rate), encoding.codec)
    return path


def _rate(fps: float) -> Fraction:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise InputError(f"invalid frame rate {fps!r}", "pass a positive number of frames per second") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"invalid frame rate {fps!r}", "pass a positive number of frames per second")
    return Fraction(value).limit_denominator(1001)


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) float in [-1, 1] -> contiguous (F, H, W, 3) uint8."""
    import torch

    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames must be a torch.Tensor, not {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[1] != 3 or min(frames.shape) == 0:
        raise ValueError(f"frames must have shape (frames, 3, height, width) with no empty dimension, got {tuple(frames.shape)}")
    data = frames.detach().to(device="cpu", dtype=torch.float32)
    data = torch.nan_to_num(data, nan=0.0).clamp(-1.0, 1.0)
    data = ((data + 1.0) * 127.5).round().to(torch.uint8)
    return data.permute(0, 2, 3, 1).contiguous().numpy()


def _metadata_tags(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    if not metadata:
        return {}
    for key in metadata:
        if not isinstance(key, str):
            raise TypeError(f"metadata keys must be strings, got {key!r}")
    tags = {METADATA_TAG: json.dumps(metadata, ensure_ascii=False, sort_keys=True)}
    for tag, key in READABLE_TAGS.items():
        if metadata.get(key):
            tags[tag] = str(metadata[key])
    return tags


@functools.cache
def _encoder_available(name: str) -> bool:
    if name not in av.codecs_available:
        return False
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def _choose_encoding(lossless: bool, width: int, height: int, container_format: str = "mp4") -> _Encoding:
    if container_format in ("webm", "gif"):
        if lossless:
            raise InputError(f"--lossless cannot be written as .{container_format}", "use .mp4, .mkv or a folder of PNG frames")
        if container_format == "gif":  # a small preview: 256 colours
            return _Encoding("gif", "rgb8", {})
        return _Encoding("libvpx-vp9", "yuv420p", {"crf": "30", "b:v": "0"})
    if lossless:
        if _encoder_available("libx264rgb"):
            return _Encoding("libx264rgb", "rgb24", {"qp": "0", "preset": "medium"})
        if _encoder_available("ffv1"):
            logger.warning("libx264rgb is not available in this PyAV build; writing lossless FFV1 instead")
            return _Encoding("ffv1", "bgr0", {})
        raise InputError(
            "no lossless video encoder (libx264rgb or ffv1) is available in this PyAV build",
            "install a PyAV build with libx264 (the PyPI wheels have it) or drop --lossless",
        )
    if _encoder_available("libx264"):
        if width % 2 or height % 2:
            logger.warning(
                "%dx%d has an odd side; writing 4:4:4 H.264 (yuv444p), which some players cannot show", width, height
            )
            return _Encoding("libx264", "yuv444p", {"crf": str(H264_CRF), "preset": "medium"})
        return _Encoding("libx264", "yuv420p", {"crf": str(H264_CRF), "preset": "medium"})
    if _encoder_available("mpeg4"):
        logger.warning("libx264 is not available in this PyAV build; writing MPEG-4 Part 2 video instead of H.264")
        return _Encoding("mpeg4", "yuv420p", {"qscale": "2"})
    raise InputError(
        "no video encoder (libx264 or mpeg4) is available in this PyAV build",
        "install a PyAV build with libx264 (the PyPI wheels have it)",
    )


def _encode(
    target: Path, container_format: str, encoding: _Encoding, pixels: np.ndarray, rate: Fraction, tags: Mapping[str, str]
) -> None:
    options = {"movflags": "use_metadata_tags+faststart"} if container_format == "mp4" else {}
    height, width = pixels.shape[1:3]
    with av.open(str(target), mode="w", format=container_format, options=options) as container:
        container.metadata.update(tags)
        stream = container.add_stream(encoding.codec, rate=rate, options=dict(encoding.options))
        stream.width = width
        stream.height = height
        stream.pix_fmt = encoding.pix_fmt
        stream.codec_context.time_base = 1 / rate
        if encoding.pix_fmt.startswith("yuv"):
            # FFmpeg converts RGB to YUV with BT.601 in limited range; say so, so players decode it the same way.
            context = stream.codec_context
            context.colorspace = context.color_primaries = context.color_trc = _SMPTE170M
            context.color_range = _MPEG_RANGE
        for index, array in enumerate(pixels):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            frame.time_base = stream.codec_context.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
