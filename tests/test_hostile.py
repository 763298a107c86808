"""The hostile-input corpus: inputs a user (or a script run thousands of times) can hand show1 that it must refuse.

Every case goes through the real CLI and must end before any model loads with exit 2, one line naming the
problem and the fix, no traceback, no file created and no file changed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli

OUT = "out.mp4"


def clip(folder: Path, name: str = "keys.mp4", metadata: dict | None = None) -> Path:
    """A small valid video, as `show1 generate --stages keyframes` would leave it."""
    import torch

    from show1_cli.video import write_video

    frames = torch.linspace(-1, 1, 32).expand(2, 3, 16, 32).clone()
    return write_video(folder / name, frames, 2.0, metadata or {"prompt": "a cat", "seed": 3, "stages": ["keyframes"]})


def intermediate(folder: Path, **metadata: str) -> Path:
    """A --save-intermediates folder whose keyframes tensor carries `metadata` (as text, as show1 stores it)."""
    import torch
    from safetensors.torch import save_file

    run = folder / "run"
    run.mkdir()
    save_file({"frames": torch.zeros(2, 3, 16, 32)}, run / "keyframes.safetensors", metadata=metadata)
    return run


def write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def hard_link(path: Path) -> Path:
    """Another name for the file at `path`."""
    link = path.with_name(f"link-to-{path.name}")
    os.link(path, link)
    return link


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Path], list[str | Path]]  # the command line, given the test's folder (which it may fill)
    expected: str  # a piece of the one error line


CASES = [
    Case("prompt with bytes that are not UTF-8", lambda d: ["generate", "a \udcff\udcfe cat", "-o", d / OUT],
         "prompt holds bytes that are not UTF-8 text (at character 2)"),
    Case("preset file that is not UTF-8",
         lambda d: ["generate", "a cat", "-o", d / OUT, "--preset", write(d, "bad.yaml", b"base: default\nfps: \xff\xfe\n")],
         "not UTF-8"),
    Case("preset file with a typo in a key",
         lambda d: ["generate", "a cat", "-o", d / OUT, "--preset", write(d, "typo.yaml", "base: default\nkeyframes:\n  stpes: 10\n")],
         "stpes"),
    Case("fps too small", lambda d: ["generate", "a cat", "-o", d / OUT, "--set", "fps=0.0001"], "fps must be between"),
    Case("fps too large", lambda d: ["generate", "a cat", "-o", d / OUT, "--set", "fps=1e6"], "fps must be between"),
    Case("fps not a number", lambda d: ["generate", "a cat", "-o", d / OUT, "--set", "fps=.nan"], "fps must be a finite number"),
    Case("guidance not a number", lambda d: ["generate", "a cat", "-o", d / OUT, "--set", "keyframes.guidance_scale=.nan"],
         "must be a finite number"),
    Case("seed over 64 bits", lambda d: ["generate", "a cat", "-o", d / OUT, "--seed", "99999999999999999999"], "out of range"),
    Case("negative seed", lambda d: ["generate", "a cat", "-o", d / OUT, "--seed", "-3"], "--seed -3 is out of range"),
    Case("stage sr2 alone", lambda d: ["generate", "a cat", "-o", d / OUT, "--stages", "sr2"], "needs an input video"),
    Case("stage interpolate alone", lambda d: ["generate", "a cat", "-o", d / OUT, "--stages", "interpolate"], "needs an input video"),
    Case("interpolate over its input", lambda d: ["interpolate", clip(d), "-o", d / "keys.mp4", "--overwrite"], "is the input video"),
    Case("upscale over its input through another name",
         lambda d: ["upscale", clip(d), "-o", hard_link(d / "keys.mp4"), "--overwrite"], "is the input video"),
    Case("resume: seed not a number",
         lambda d: ["generate", "-o", d / OUT, "--resume", intermediate(d, prompt="a cat", seed="abc", fps="2.0")],
         "seed 'abc', not a whole number"),
    Case("resume: fps not a number",
         lambda d: ["generate", "-o", d / OUT, "--resume", intermediate(d, prompt="a cat", seed="3", fps="x")],
         "fps 'x', not a positive number"),
    Case("resume: no prompt",
         lambda d: ["generate", "-o", d / OUT, "--resume", intermediate(d, seed="3", fps="2.0")],
         "metadata has no prompt"),
    Case("resume: seed out of range",
         lambda d: ["generate", "-o", d / OUT, "--resume", intermediate(d, prompt="a cat", seed="-1", fps="2.0")], "seed"),
    Case("missing input video", lambda d: ["upscale", d / "missing.mp4", "-o", d / OUT], "does not exist"),
    Case("text file as input video",
         lambda d: ["interpolate", write(d, "notes.mp4", "not a video\n"), "-o", d / OUT, "--prompt", "a cat"], "as a video"),
    Case("folder as output", lambda d: ["generate", "a cat", "-o", (d / "out.mp4").mkdir() or d / "out.mp4"], "is a folder"),
    Case("output with an unsupported suffix", lambda d: ["generate", "a cat", "-o", d / "out.avi"], "unsupported file type"),
    Case("shard out of range",
         lambda d: ["generate", "--prompts", write(d, "prompts.txt", "a cat\n"), "--out-dir", d / "videos", "--shard", "3/2"],
         "--shard '3/2'"),
    Case("prompts file that is not UTF-8",
         lambda d: ["generate", "--prompts", write(d, "prompts.txt", b"a cat\n\xff\xfe dog\n"), "--out-dir", d / "videos"],
         "UTF-8"),
    Case("motion adapter that is not one",
         lambda d: ["generate", "a cat", "-o", d / OUT, "--motion", write(d, "adapter.safetensors", "not an adapter\n")],
         "adapter.safetensors"),
]


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder` with a hash of its content (folders as 'dir')."""
    return {str(path.relative_to(folder)): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*"))}


@pytest.fixture(autouse=True)
def no_model_loads(tiny_weights, monkeypatch):
    """The weights are there, but every case must be refused before a model is built."""
    from show1_cli.runtime import ModelStore

    def refuse(self, key, load, **options):
        raise AssertionError(f"model {key} loaded for an input that should have been refused")

    monkeypatch.setattr(ModelStore, "get", refuse)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input_is_refused_in_one_line_before_any_model_loads(case, tmp_path):
    args = case.args(tmp_path)
    before = snapshot(tmp_path)
    result = run_cli(*args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith(")"), result.output
    assert case.expected in lines[0]
    assert snapshot(tmp_path) == before  # nothing created, nothing changed
