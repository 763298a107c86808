"""The fuzz corpus of corrupted MP4s (tests/fuzz_video.py): none may reach an unexpected exception or hang."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch

from show1_cli import video as video_module
from show1_cli.errors import InputError
from show1_cli.video import read_video, write_video
from tests.fuzz_video import corpus

REPO = Path(__file__).resolve().parents[1]
SEED = 12


def valid_mp4(path: Path) -> Path:
    ramp = torch.linspace(-1, 1, 48).expand(8, 3, 32, 48).clone()
    ramp[:, 1] = torch.arange(8).float().view(8, 1, 1) / 4 - 1
    return write_video(path, ramp, 8.0, {"prompt": "a red circle", "seed": 3})


def test_the_corpus_is_seeded_and_large(tmp_path):
    data = valid_mp4(tmp_path / "valid.mp4").read_bytes()
    first = list(corpus(data, SEED))
    assert len(first) >= 150
    assert first == list(corpus(data, SEED))
    assert len({name for name, _ in first}) == len(first)
    kinds = collections.Counter(name.split("-")[0] for name, _ in first)
    assert set(kinds) == {"flip", "truncate", "zero", "oversize", "splice"}, kinds
    assert kinds["zero"] >= 10  # the valid file's boxes were found (ftyp, moov, trak, stbl, mdat, ...)


def test_every_corrupted_mp4_is_decoded_or_refused_in_one_line(tmp_path):
    valid = valid_mp4(tmp_path / "valid.mp4")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "tests.fuzz_video", str(tmp_path / "corpus"), str(valid), str(SEED)],
                         capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(results) >= 150
    defects = [result for result in results if result["outcome"] == "defect"]
    assert not defects, defects[:5]
    outcomes = collections.Counter(result["outcome"] for result in results)
    assert outcomes["refused"] > 0 and outcomes["decoded"] > 0, outcomes
    for result in results:
        if result["outcome"] == "refused":
            assert "\n" not in result["message"] and "(fix: " in result["message"], result
        else:
            assert result["frames"] >= 1 and result["shape"][0] == 3, result


def test_a_video_too_large_to_decode_is_refused_before_it_exhausts_memory(tmp_path, monkeypatch):
    valid = valid_mp4(tmp_path / "valid.mp4")
    # 8 frames of 32x48 RGB are 147 kB as float32: a limit of 100 kB refuses it (from the declared size).
    monkeypatch.setattr(video_module, "MAX_DECODED_BYTES", 100_000)
    with pytest.raises(InputError, match="more than the"):
        read_video(valid)


def test_a_truncated_video_decodes_what_it_has_and_says_so(tmp_path, caplog):
    valid = valid_mp4(tmp_path / "valid.mp4")
    with av.open(str(valid)) as container:
        last_packet = max(packet.pos for packet in container.demux(video=0) if packet.pos is not None and packet.size)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(valid.read_bytes()[:last_packet])  # faststart: the index comes first; the last frame's data is gone
    with caplog.at_level("WARNING", logger="show1.video"):
        frames = read_video(cut).frames.shape[0]
    assert 1 <= frames < 8
    assert f"decoded {frames} of the 8 frames" in caplog.text
