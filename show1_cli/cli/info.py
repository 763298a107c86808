"""`show1 info`: how a video was made (its show1 record) and the command that makes it again."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from show1_cli.cli.app import DebugOption, app, command
from show1_cli.errors import InputError
from show1_cli.progress import format_bytes

if TYPE_CHECKING:  # the video libraries load when the command runs, not at every start of show1
    from show1_cli.video import VideoFacts


@app.command("info")
@command
def info(
    path: Annotated[Path, typer.Argument(metavar="VIDEO", help="A video (or the NAME.json record show1 wrote beside it).",
                                         dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the file's facts, its record and the command as one JSON object.")] = False,
    debug: DebugOption = False,
) -> None:
    """Show how a video was made: prompt, seed, settings, weights, versions, times, and the command that makes it again.

    The record comes from NAME.json beside the video, else from the video's own tags. For a video show1
    did not write, prints what the file says (frames, size, frame rate, codec).

    Examples:

      show1 info videos/0001-a-cat.mp4

      show1 info panda.mp4 --json
    """
    from show1_cli.record import find_record, recipe
    from show1_cli.video import probe_video

    facts = None if path.suffix.lower() == ".json" else probe_video(path)
    record = find_record(path, facts)
    again = path.with_name(f"{path.stem}-again{path.suffix if facts is not None else '.mp4'}")
    command_line, why_not = None, None
    if record is not None:
        try:
            command_line = recipe(record, path).command(again)
        except InputError as error:
            why_not = str(error)
    if as_json:
        typer.echo(json.dumps({"file": str(path), "show1": record is not None, "record": record, "command": command_line,
                               "video": _facts_json(facts)}, ensure_ascii=False))
        return
    lines = _describe(path, facts, record)
    if record is not None:
        lines += ["make it again:", f"  {command_line}" if command_line else f"  not with generate: {why_not}"]
    typer.echo("\n".join(lines))


def _facts_json(facts: VideoFacts | None) -> dict[str, Any] | None:
    if facts is None:
        return None
    data = dataclasses.asdict(facts)
    data.pop("metadata")
    return {**data, "seconds": round(facts.seconds, 3)}


def _describe(path: Path, facts: VideoFacts | None, record: dict[str, Any] | None) -> list[str]:
    lines = []
    if record is None:
        lines.append(f"{path}: not made by show1 (no show1 record in the file or beside it); what the file says:")
    else:
        version = record.get("versions", {}).get("show1", "?")
        lines.append(f"{path}: made by show1 {version} on {record.get('created', '?')}")
    if facts is not None:
        lines.append(_row("video", f"{facts.frames} frames, {facts.width}x{facts.height}, {facts.fps:g} fps, {facts.codec}, "
                                   f"{facts.seconds:.2f} s"))
    if record is None:
        return lines
    rows: list[tuple[str, Any]] = [
        ("prompt", record.get("prompt")),
        ("seed", record.get("seed")),
        ("preset", record.get("preset")),
        ("stages", ", ".join(record.get("stages", []))),
    ]
    if "first_frame" in record:
        rows.append(("first frame", f"{record['first_frame']} (--first-frame {record.get('first_frame_option', 'auto')})"))
    if "motion" in record:
        motion = record["motion"]
        rows.append(("motion", f"{motion['adapter']} (sha256 {motion['sha256'][:12]}, scale {motion['scale']:g}, "
                               f"init {motion['init']}, noise prior {motion['noise_prior']:g})"))
    for stage, text in record.get("negative_prompt", {}).items():
        rows.append(("negative prompt", f"{stage}: {text or '(none)'}"))
    for section, values in record.get("preset_settings", {}).items():
        if isinstance(values, dict):
            shown = ", ".join(f"{key} {value}" for key, value in values.items() if key != "negative_prompt")
            rows.append(("settings", f"{section}: {shown}"))
    for name, pin in record.get("weights", {}).items():
        rows.append(("weights", f"{name}: {pin['repo_id']}@{pin['revision'] or 'unpinned'} (lock entry {pin['lock_sha256'][:12]})"))
    rows.append(("versions", ", ".join(f"{name} {version}" for name, version in record.get("versions", {}).items())))
    compiled = ", UNet blocks compiled" if record.get("compile") else ""
    rows.append(("device", f"{record.get('device')} {record.get('dtype')}, offload {record.get('offload')}{compiled}"))
    for stage, timing in record.get("timings", {}).items():
        rows.append(("time", f"{stage}: {timing['seconds']:.2f} s, peak memory {format_bytes(timing['peak_memory_bytes'])}"))
    if "batch_item" in record:
        rows.append(("batch", f"item {record['batch_item']} (line {record.get('batch_line')}), batch seed {record.get('batch_seed')}"))
    for key in ("resumed_from", "interpolated_from", "upscaled_from"):
        if key in record:
            rows.append((key.replace("_", " "), record[key]))
    return lines + [_row(name, value) for name, value in rows]


def _row(name: str, value: Any) -> str:
    return f"  {name:<16} {value}"
