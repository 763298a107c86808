"""Training data: a folder of clips with `captions.jsonl`, checked up front and read per stage.

Format: `DIR/captions.jsonl` holds one `{"file": "relative/path.mp4", "caption": "..."}` per line; the
clips are anything PyAV decodes. `load_dataset` reads every line and opens every clip's header before
training starts, and reports all problems together (missing or unreadable clips, too few frames, frames
smaller than the stage needs, bad lines); with `skip_bad` it keeps the usable clips instead.

Clips are decoded when a sample needs them and resized to the size the stage trains at with area
averaging (as a camera or a downscaler would), so each stage sees frames exactly as large as its
inference path gives it. Resized clips are kept in memory as uint8 while they fit in `CACHE_BYTES`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from show1_cli.errors import InputError
from show1_cli.video import probe_video, read_video

logger = logging.getLogger("show1")

CAPTIONS = "captions.jsonl"
CACHE_BYTES = 2 * 1024**3
SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class Needs:
    """What a stage needs of every clip: at least `frames` frames of at least `height` x `width`."""

    frames: int
    height: int
    width: int


@dataclass(frozen=True)
class Clip:
    path: Path
    caption: str
    frames: int
    height: int
    width: int


@dataclass
class ClipDataset:
    """The usable clips of a data set; `frames(i, height, width)` gives clip i resized, in [-1, 1]."""

    root: Path
    clips: list[Clip]
    skipped: int = 0
    _cache: dict[tuple[int, int, int], torch.Tensor] = field(default_factory=dict, repr=False)
    _cache_bytes: int = 0

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def captions(self) -> list[str]:
        return [clip.caption for clip in self.clips]

    def fingerprint(self) -> str:
        """sha256 of captions.jsonl and of each usable clip's path and size."""
        digest = hashlib.sha256((self.root / CAPTIONS).read_bytes())
        for clip in self.clips:
            digest.update(f"{clip.path.relative_to(self.root)}:{clip.path.stat().st_size}".encode())
        return digest.hexdigest()

    def frames(self, index: int, height: int, width: int) -> torch.Tensor:
        """Clip `index` as (F, 3, height, width) float32 in [-1, 1], area-resized from the decoded frames."""
        key = (index, height, width)
        cached = self._cache.get(key)
        if cached is None:
            cached = _resize_uint8(_decode(self.clips[index].path), height, width)
            if self._cache_bytes + cached.numel() <= CACHE_BYTES:
                self._cache[key] = cached
                self._cache_bytes += cached.numel()
        return cached.float() / 127.5 - 1.0


def _decode(path: Path) -> torch.Tensor:
    """The clip as (F, 3, H, W) uint8, decoded by the same reader as every input video (exact: read_video's
    floats are the uint8 values over 127.5, minus 1)."""
    return ((read_video(path).frames + 1) * 127.5).round().to(torch.uint8)


def _resize_uint8(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if frames.shape[-2:] == (height, width):
        return frames.contiguous()
    resized = F.interpolate(frames.float(), size=(height, width), mode="area")
    return resized.round().clamp(0, 255).to(torch.uint8)


def load_dataset(root: Path, needs: Needs, *, skip_bad: bool = False) -> ClipDataset:
    """Read and check `root/captions.jsonl` and its clips for a stage that `needs` what it says."""
    root = Path(root)
    index = root / CAPTIONS
    if not root.is_dir():
        raise InputError(f"--data {root} is not a folder", f"pass a folder holding {CAPTIONS} and its clips")
    if not index.is_file():
        raise InputError(f"{root} has no {CAPTIONS}", 'write one {"file": "clip.mp4", "caption": "..."} per line')
    try:
        lines = index.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {index}: {error}", "write it as UTF-8 text, one JSON object per line") from None

    clips: list[Clip] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{CAPTIONS}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"{where}: not JSON ({error.msg})")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not isinstance(entry.get("caption"), str):
            problems.append(f'{where}: needs "file" and "caption" strings')
            continue
        if not entry["caption"].strip():
            problems.append(f"{where}: empty caption")
            continue
        relative = Path(entry["file"])
        if relative.is_absolute() or ".." in relative.parts:
            problems.append(f"{where}: {entry['file']} is not a path inside {root}")
            continue
        path = root / relative
        if not path.is_file():
            problems.append(f"{where}: {entry['file']} is missing")
            continue
        try:
            facts = probe_video(path)
        except InputError as error:
            problems.append(f"{where}: {entry['file']} is unreadable ({error.message})")
            continue
        count, height, width = facts.frames, facts.height, facts.width
        if count < needs.frames:
            problems.append(f"{where}: {entry['file']} has {count} frames, fewer than the {needs.frames} needed")
            continue
        if height < needs.height or width < needs.width:
            problems.append(f"{where}: {entry['file']} is {width}x{height}, smaller than the {needs.width}x{needs.height} needed")
            continue
        clips.append(Clip(path, entry["caption"].strip(), count, height, width))

    if problems and not skip_bad:
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise InputError(f"{len(problems)} bad entr{'y' if len(problems) == 1 else 'ies'} in {root}: {shown}{more}",
                         "fix them, or pass --skip-bad to train on the rest")
    if not clips:
        raise InputError(f"{root} has no usable clips", "add clips and their captions to captions.jsonl")
    if problems:
        logger.warning("skipped %d bad entr%s of %s (--skip-bad)", len(problems), "y" if len(problems) == 1 else "ies", root)
    return ClipDataset(root, clips, skipped=len(problems))
