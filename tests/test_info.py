"""The record of every video (sidecar and tags), `show1 info`, and `show1 generate --from`, through the real CLI."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import av
import pytest
import torch

from show1_cli import __version__
from show1_cli.video import read_video, write_video
from tests.conftest import run_cli

PROMPT = 'a "red" ball, bouncing'
SMALL = ["--stages", "keyframes", "--set", "keyframes.steps=2", "--set", "keyframes.frames=3",
         "--set", "keyframes.height=16", "--set", "keyframes.width=32", "--set", "keyframes.negative_prompt=blurry, dark"]


def container_tags(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {key.lower(): value for key, value in container.metadata.items()}


@pytest.fixture(scope="module")
def made(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("info") / "ball.mp4"
    result = run_cli("generate", PROMPT, "-o", output, "--seed", 5, "--lossless", *SMALL)
    assert result.exit_code == 0, result.output
    return output


def test_the_sidecar_and_the_tags_hold_one_typed_record(made: Path) -> None:
    record = json.loads(made.with_suffix(".json").read_text(encoding="utf-8"))
    assert record["prompt"] == PROMPT and record["seed"] == 5 and record["stages"] == ["keyframes"]
    assert record["negative_prompt"] == {"keyframes": "blurry, dark"}
    assert record["preset"] == "default" and record["preset_settings"]["keyframes"]["frames"] == 3
    assert record["versions"]["show1"] == __version__ and {"torch", "diffusers"} <= record["versions"].keys()
    assert (record["device"], record["dtype"]) == ("cpu", "fp32")
    assert list(record["timings"]) == ["text", "keyframes"] and record["timings"]["keyframes"]["peak_memory_bytes"] > 0
    pin = record["weights"]["show-1-base"]
    assert len(pin["revision"]) == 40 and len(pin["lock_sha256"]) == 64
    assert record["video"] == {"frames": 3, "width": 32, "height": 16, "fps": 2.0, "lossless": True}

    tags = container_tags(made)
    assert json.loads(tags["show1"]) == record  # the same record, typed: no JSON inside strings
    assert tags["title"] == PROMPT and tags["comment"] == record["summary"] and "seed 5" in tags["comment"]
    assert tags["creation_time"].startswith(record["created"].rstrip("Z"))


def test_info_prints_the_record_and_the_command_that_makes_the_video_again(made: Path, tmp_path: Path) -> None:
    shown = run_cli("info", made)
    assert shown.exit_code == 0, shown.output
    assert f"made by show1 {__version__}" in shown.stdout and "3 frames, 32x16" in shown.stdout
    assert PROMPT in shown.stdout and "keyframes: blurry, dark" in shown.stdout
    command = shown.stdout.strip().splitlines()[-1]
    args = shlex.split(command)
    assert args[:3] == ["show1", "generate", PROMPT] and "--seed" in args and "--lossless" in args

    again = tmp_path / "again.mp4"
    args[args.index("-o") + 1] = str(again)
    result = run_cli(*args[1:])
    assert result.exit_code == 0, result.output
    assert torch.equal(read_video(again).frames, read_video(made).frames)

    as_json = json.loads(run_cli("info", made, "--json").stdout)
    assert as_json["show1"] and as_json["record"] == json.loads(made.with_suffix(".json").read_text(encoding="utf-8"))
    assert as_json["video"] == {"frames": 3, "width": 32, "height": 16, "fps": 2.0, "codec": "h264", "seconds": 1.5}
    assert as_json["command"] == command.strip()


def test_info_reads_the_tags_when_the_sidecar_is_gone_and_reads_a_sidecar_alone(made: Path, tmp_path: Path) -> None:
    alone = shutil.copy(made, tmp_path / "copy.mp4")
    from_tags = json.loads(run_cli("info", alone, "--json").stdout)
    from_sidecar = json.loads(run_cli("info", made.with_suffix(".json"), "--json").stdout)
    assert from_tags["record"] == from_sidecar["record"] == json.loads(made.with_suffix(".json").read_text(encoding="utf-8"))
    assert from_sidecar["video"] is None


def test_info_on_a_video_show1_did_not_write(tmp_path: Path) -> None:
    foreign = tmp_path / "holiday.mp4"
    with av.open(str(foreign), "w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(6):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(torch.zeros(48, 64, 3, dtype=torch.uint8).numpy(), format="rgb24")))
        container.mux(stream.encode(None))
    shown = run_cli("info", foreign)
    assert shown.exit_code == 0, shown.output
    assert "not made by show1" in shown.stdout and "6 frames, 64x48, 12 fps, mpeg4" in shown.stdout
    assert json.loads(run_cli("info", foreign, "--json").stdout)["show1"] is False
    refused = run_cli("generate", "--from", foreign, "-o", tmp_path / "x.mp4")
    assert refused.exit_code == 2 and "no show1 record" in refused.output and not (tmp_path / "x.mp4").exists()


def test_generate_from_a_video_or_its_record_with_changes(made: Path, tmp_path: Path) -> None:
    same = tmp_path / "same.mp4"
    result = run_cli("generate", "--from", made, "-o", same)
    assert result.exit_code == 0, result.output
    assert torch.equal(read_video(same).frames, read_video(made).frames)

    changed = tmp_path / "changed.mp4"
    result = run_cli("generate", "--from", made.with_suffix(".json"), "-o", changed, "--set", "keyframes.frames=4", "--seed", 6)
    assert result.exit_code == 0, result.output
    record = read_video(changed).metadata
    assert record["seed"] == 6 and record["prompt"] == PROMPT and record["preset_settings"]["keyframes"]["frames"] == 4
    assert record["negative_prompt"] == {"keyframes": "blurry, dark"} and record["video"]["frames"] == 4


def test_no_metadata_writes_no_record(tiny_weights: Path, tmp_path: Path) -> None:
    output = tmp_path / "plain.mp4"
    result = run_cli("generate", PROMPT, "-o", output, "--seed", 5, "--no-metadata", *SMALL)
    assert result.exit_code == 0, result.output
    assert not output.with_suffix(".json").exists() and read_video(output).metadata == {}
    assert not {"show1", "title", "comment"} & container_tags(output).keys()
    assert "not made by show1" in run_cli("info", output).stdout


def test_an_existing_sidecar_is_not_overwritten(tiny_weights: Path, tmp_path: Path) -> None:
    output, sidecar = tmp_path / "clip.mp4", tmp_path / "clip.json"
    sidecar.write_text('{"mine": true}', encoding="utf-8")
    result = run_cli("generate", PROMPT, "-o", output, "--seed", 5, *SMALL)
    assert result.exit_code == 2 and "clip.json exists" in result.output and "--overwrite" in result.output
    assert not output.exists() and sidecar.read_text(encoding="utf-8") == '{"mine": true}'
    assert run_cli("generate", PROMPT, "-o", output, "--seed", 5, "--overwrite", *SMALL).exit_code == 0
    assert json.loads(sidecar.read_text(encoding="utf-8"))["seed"] == 5


def test_a_rerun_batch_restores_a_sidecar_the_killed_run_did_not_write(made: Path, tmp_path: Path) -> None:
    video = read_video(made)
    out_dir = tmp_path / "videos"
    out_dir.mkdir()
    write_video(out_dir / "0001-only.mp4", video.frames, video.fps, video.metadata, lossless=True)  # a video, no sidecar
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("only\n", encoding="utf-8")
    result = run_cli("generate", "--prompts", prompts, "--out-dir", out_dir, "--seed", 1, *SMALL)
    assert result.exit_code == 0, result.output
    assert json.loads((out_dir / "0001-only.json").read_text(encoding="utf-8")) == video.metadata
