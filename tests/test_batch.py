"""Prompts-file batches over processes and shards, failing items, and resuming a killed batch, through the real CLI."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import show1_cli.stages.keyframes
from show1_cli.video import read_video
from tests.conftest import run_cli

BATCH = ["--stages", "keyframes", "--set", "keyframes.steps=1", "--set", "keyframes.frames=2",
         "--set", "keyframes.height=16", "--set", "keyframes.width=32", "--seed", "7", "--lossless"]
PROMPTS = ["a cat on the grass", "a dog running", "a red car at night", "fireworks over the river", "a panda eating"]

# Runs the CLI in this process, but SIGKILLs it while the third video is half written.
KILLED_WHILE_WRITING_THE_THIRD = """
import os, signal, sys
import show1_cli.video as video
real_encode, started = video._encode, []

def encode(target, *args):
    started.append(target)
    if len(started) == 3:
        target.write_bytes(b"half a video")
        os.kill(os.getpid(), signal.SIGKILL)
    return real_encode(target, *args)

video._encode = encode
from show1_cli.cli import app
app(args=sys.argv[1:], prog_name="show1")
"""


def environment() -> dict[str, str]:
    """This process's environment (weights, PYTHONPATH) for a child, single-threaded and offline."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def outputs(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs use one CPU thread like the child processes (environment()), so that their floats round
    alike and videos can be compared exactly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_process(tiny_weights: Path, prompts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The batch made by one process: the reference every other way of running it must match. A child process
    with the children's environment, because the number of CPU threads changes the floats' rounding."""
    folder = tmp_path_factory.mktemp("one-process")
    result = subprocess.run([sys.executable, "-m", "show1_cli", "generate", "--prompts", str(prompts), "--out-dir", str(folder), *BATCH],
                            capture_output=True, text=True, env=environment(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def assert_same_videos(folder: Path, reference: Path) -> None:
    assert outputs(folder) == outputs(reference)
    for video in reference.glob("*.mp4"):
        made, expected = read_video(folder / video.name), read_video(video)
        assert torch.equal(made.frames, expected.frames), video.name
        assert (made.metadata["prompt"], made.metadata["seed"]) == (expected.metadata["prompt"], expected.metadata["seed"])


def test_torchrun_two_processes_make_what_one_process_makes_each_once(one_process: Path, prompts: Path, tmp_path: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "show1_cli"]
    batch = [*torchrun, "generate", "--prompts", str(prompts), "--out-dir", str(tmp_path), *BATCH]
    run = subprocess.run([*batch, "--json"], capture_output=True, text=True, env=environment(), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_videos(tmp_path, one_process)
    assert len(list(tmp_path.glob("*.mp4"))) == len(PROMPTS) and len(list(tmp_path.glob("*.json"))) == len(PROMPTS)

    lines = json_lines(run.stdout)
    written = collections.Counter(line["output"] for line in lines if "seed" in line)
    assert sorted(Path(output).name for output in written) == sorted(path.name for path in tmp_path.glob("*.mp4"))
    assert set(written.values()) == {1}  # every item made by exactly one process
    shards = {line["shard"]: line["summary"] for line in lines if "summary" in line}
    assert {shard: summary["done"] for shard, summary in shards.items()} == {"0/2": 3, "1/2": 2}  # items 0, 2, 4 and 1, 3

    # Rerun: nothing left to do; one summary, from rank 0, for both processes.
    stamps = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    rerun = subprocess.run(batch, capture_output=True, text=True, env=environment(), timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summaries = [line for line in rerun.stderr.splitlines() if line.startswith("batch")]
    assert summaries == [summaries[0]] and "on 2 processes: 0 done, 5 skipped, 0 failed" in summaries[0]
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == stamps


def test_a_batch_killed_mid_write_is_completed_by_rerunning_it(one_process: Path, prompts: Path, tmp_path: Path) -> None:
    batch = ["generate", "--prompts", str(prompts), "--out-dir", str(tmp_path), *BATCH]
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING_THE_THIRD, *batch], capture_output=True, text=True,
                            env=environment(), timeout=600)
    assert killed.returncode == -9
    finished = sorted(path.name for path in tmp_path.glob("*.mp4"))
    assert len(finished) == 2 and len(list(tmp_path.glob("*.json"))) == 2
    assert [name for name in outputs(tmp_path) if ".partial-" in name]  # the killed write left its temporary file
    stamps = {name: (tmp_path / name).stat().st_mtime_ns for name in finished}

    rerun = run_cli(*batch, "--json")
    assert rerun.exit_code == 0, rerun.output
    assert json_lines(rerun.stdout)[-1]["summary"] | {"seconds": 0, "items_per_second": 0} == {
        "done": 3, "skipped": 2, "failed": 0, "seconds": 0, "items_per_second": 0, "failures": []}
    assert_same_videos(tmp_path, one_process)  # and no temporary file is left
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in finished} == stamps  # nothing written twice


def test_shards_split_the_batch_and_together_make_all_of_it(one_process: Path, prompts: Path, tmp_path: Path) -> None:
    first = run_cli("generate", "--prompts", prompts, "--out-dir", tmp_path, "--shard", "0/2", *BATCH)
    assert first.exit_code == 0, first.output
    assert [name[:4] for name in outputs(tmp_path) if name.endswith(".mp4")] == ["0001", "0003", "0005"]
    second = run_cli("generate", "--prompts", prompts, "--out-dir", tmp_path, "--shard", "1/2", *BATCH)
    assert second.exit_code == 0, second.output
    assert_same_videos(tmp_path, one_process)


@pytest.mark.parametrize("shard", ["2/2", "1", "-1/2", "a/b"])
def test_bad_shard_is_one_line(tiny_weights: Path, prompts: Path, tmp_path: Path, shard: str) -> None:
    result = run_cli("generate", "--prompts", prompts, "--out-dir", tmp_path, "--shard", shard, *BATCH)
    assert result.exit_code == 2 and "--shard" in result.output and "SLURM" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


def test_failing_items_are_recorded_and_the_batch_goes_on(tiny_weights: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = show1_cli.stages.keyframes.run

    def flaky_run(context, video):
        if context.prompt == "out of memory":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        frames = real_run(context, video)
        return frames * float("nan") if context.prompt == "nan" else frames

    monkeypatch.setattr(show1_cli.stages.keyframes, "run", flaky_run)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('a cat\n{"prompt": 3}\nout of memory\nnan\n{"prompt": "x", "set": {"sr1.stride": 0}}\na dog\n',
                       encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("generate", "--prompts", prompts, "--out-dir", out, *BATCH, "--json")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: 4 of 6 items failed")
    lines = json_lines(result.stdout)
    errors = {Path(line["output"]).name[:4]: line["error"] for line in lines if line.get("failed")}
    assert set(errors) == {"0002", "0003", "0004", "0005"}
    assert 'missing "prompt"' in errors["0002"] and "out of accelerator memory in stage keyframes" in errors["0003"]
    assert "NaN" in errors["0004"] and "sr1.stride" in errors["0005"]
    assert lines[-1]["summary"]["done"] == 2 and lines[-1]["summary"]["failed"] == 4
    assert outputs(out) == ["0001-a-cat.json", "0001-a-cat.mp4", "0006-a-dog.json", "0006-a-dog.mp4"]  # nothing of the failed
