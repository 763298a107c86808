"""Presets: the sizes, frame counts, steps and guidance of every stage, read from YAML and validated.

A preset is a shipped name (`presets/NAME.yaml`) or a path to a YAML file. A file may start from
another preset with `base: NAME` and override only what differs. Single fields can be overridden on
the command line with `--set section.key=value`. The result is an immutable, fully checked `Preset`.
A section's `scheduler` is optional (default: the checkpoint's own).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from show1_cli.choices import SCHEDULERS
from show1_cli.errors import InputError
from show1_cli.resources import data_path

STAGES = ("keyframes", "interpolate", "sr1", "sr2")

# H and W must survive every halving of the model that runs at that size (2**(levels-1)); the latent
# expert also works on 8x smaller VAE latents. These are the real checkpoints' factors.
SIZE_MULTIPLE = {"keyframes": 8, "sr1": 16, "sr2": 64}
SR2_MAX_STRENGTH = 0.9  # show-1-sr2 was fine-tuned on timesteps 0-900 only
MIN_FPS, MAX_FPS = 0.1, 240.0  # what a player and the container's time base handle sensibly


@dataclass(frozen=True)
class KeyframesSettings:
    frames: int
    height: int
    width: int
    steps: int
    guidance_scale: float
    negative_prompt: str
    scheduler: str = "default"


@dataclass(frozen=True)
class InterpolateSettings:
    steps: int
    guidance_scale: float
    negative_prompt: str
    scheduler: str = "default"


@dataclass(frozen=True)
class FirstFrameSettings:
    steps: int
    guidance_scale: float
    noise_level: int
    scheduler: str = "default"


@dataclass(frozen=True)
class SR1Settings:
    height: int
    width: int
    steps: int
    guidance_scale: float
    noise_level: int
    window: int
    stride: int
    negative_prompt: str
    scheduler: str = "default"


@dataclass(frozen=True)
class SR2Settings:
    height: int
    width: int
    steps: int
    guidance_scale: float
    strength: float
    negative_prompt: str
    scheduler: str = "default"


SECTIONS: dict[str, type] = {
    "keyframes": KeyframesSettings,
    "interpolate": InterpolateSettings,
    "first_frame": FirstFrameSettings,
    "sr1": SR1Settings,
    "sr2": SR2Settings,
}
# Which weights a preset runs on: the showlab checkpoints ("hub"), or the micro cascade shipped with show1.
WEIGHT_SETS = ("hub", "micro")
TOP_LEVEL_KEYS = ("fps", "stages", *SECTIONS)
OPTIONAL_KEYS = {"weights": "hub"}


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    fps: float
    stages: tuple[str, ...]
    keyframes: KeyframesSettings
    interpolate: InterpolateSettings
    first_frame: FirstFrameSettings
    sr1: SR1Settings
    sr2: SR2Settings
    weights: str = "hub"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"fps": self.fps, "stages": list(self.stages), "weights": self.weights}
        for section in SECTIONS:
            data[section] = dataclasses.asdict(getattr(self, section))
        return data

    def output_shape(self) -> tuple[int, int, int]:
        """(frames, height, width) of the video the preset's stages produce."""
        frames, height, width = self.keyframes.frames, self.keyframes.height, self.keyframes.width
        for stage in self.stages:
            if stage == "interpolate":
                frames = 4 * frames - 3
            elif stage in ("sr1", "sr2"):
                settings = getattr(self, stage)
                height, width = settings.height, settings.width
        return frames, height, width


def available_presets() -> list[str]:
    return sorted(path.stem for path in data_path("presets").glob("*.yaml"))


def load_preset(name_or_path: str, overrides: Iterable[str] = (), stages: Iterable[str] | None = None) -> Preset:
    """Load a shipped preset by name or a YAML file by path, apply `section.key=value` overrides and, with
    `stages`, run those stages instead of the preset's; validate it all, every problem in one error."""
    data, source = _read_with_bases(name_or_path, seen=())
    overrides = list(overrides)
    for override in overrides:
        _apply_override(data, override)
    if overrides:
        source = f"{source} with --set {' '.join(overrides)}"
    if stages is not None:
        data["stages"] = list(stages)
        source = f"{source} with stages {','.join(data['stages'])}"
    name = Path(name_or_path).stem if _looks_like_path(name_or_path) else name_or_path
    return _build(name, source, data)


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path or "\\" in name_or_path


def _locate(name_or_path: str) -> Path:
    if _looks_like_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError(f"preset file {path} does not exist", "check the path, or use a shipped preset (show1 presets list)")
        return path
    path = data_path("presets") / f"{name_or_path}.yaml"
    if not path.is_file():
        raise InputError(
            f"unknown preset {name_or_path!r}",
            f"use one of {', '.join(available_presets())}, or a path to a YAML file",
        )
    return path


def _read_with_bases(name_or_path: str, seen: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    path = _locate(name_or_path)
    source = str(path)
    if source in seen:
        raise InputError(f"{source}: 'base' presets form a cycle ({' -> '.join(seen + (source,))})", "remove one 'base' key")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"{source}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start})",
                         "save the preset as UTF-8") from None
    except OSError as error:
        raise InputError(f"cannot read preset {source}: {error.strerror}", "check the file's permissions") from None
    except yaml.YAMLError as error:
        raise InputError(f"{source}: not valid YAML ({error})".replace("\n", " "), "fix the file's syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{source}: a preset must be a mapping of sections, got {type(raw).__name__}", "see `show1 presets show default`")
    base = raw.pop("base", None)
    if base is None:
        return raw, source
    if not isinstance(base, str):
        raise InputError(f"{source}: key 'base' must name a preset, got {base!r}", "write for example `base: default`")
    merged, _ = _read_with_bases(base, seen + (source,))
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged, source


_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, separator, text = override.partition("=")
    if not separator or not key.strip():
        raise InputError(f"--set {override!r} is not of the form key=value", "write for example --set sr1.steps=50")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        value = float(value)  # 1e6: a number on a command line, though YAML 1.1 reads it as text
    path = key.strip().split(".")
    if len(path) == 1:
        data[path[0]] = value
    elif len(path) == 2:
        section = data.setdefault(path[0], {})
        if not isinstance(section, dict):
            raise InputError(f"--set {override!r}: {path[0]!r} is not a section", f"sections are {', '.join(SECTIONS)}")
        section[path[1]] = value
    else:
        raise InputError(f"--set {override!r}: keys have at most two parts", "write for example --set sr1.steps=50")


class _Problems:
    """Every problem of one preset, collected so that one message names them all (key, what is wrong, fix)."""

    def __init__(self, source: str):
        self.source = source
        self.found: list[tuple[str, str, str]] = []

    def add(self, key: str, reason: str, fix: str) -> None:
        self.found.append((key, reason, fix))

    def raise_if_any(self) -> None:
        if len(self.found) == 1:
            key, reason, fix = self.found[0]
            raise InputError(f"{self.source}: {key} {reason}", fix)
        if self.found:
            listed = "; ".join(f"{key} {reason}" for key, reason, _ in self.found)
            fixes = "; ".join(dict.fromkeys(fix for _, _, fix in self.found))
            raise InputError(f"{self.source}: {len(self.found)} problems: {listed}", fixes)


def _build(name: str, source: str, data: Mapping[str, Any]) -> Preset:
    problems = _Problems(source)
    for key in data:
        if key not in TOP_LEVEL_KEYS and key not in OPTIONAL_KEYS:
            problems.add(repr(key), "is an unknown key", f"top-level keys are {', '.join((*TOP_LEVEL_KEYS, *OPTIONAL_KEYS))}")
    weights = data.get("weights", OPTIONAL_KEYS["weights"])
    if weights not in WEIGHT_SETS:
        problems.add("weights", f"must be one of {', '.join(WEIGHT_SETS)}, got {weights!r}",
                     "use weights: hub (the showlab checkpoints) or weights: micro")
    for key in TOP_LEVEL_KEYS:
        if key not in data:
            problems.add(repr(key), "is missing", "add it, or start from a shipped preset with `base: default`")
    fps = _typed(problems, "fps", data["fps"], float) if "fps" in data else None
    if fps is not None and not MIN_FPS <= fps <= MAX_FPS:
        problems.add("fps", f"must be between {MIN_FPS} and {MAX_FPS}, got {fps}", "use for example fps: 8")
    stages = data.get("stages", [])
    if isinstance(stages, str):
        stages = [part.strip() for part in stages.split(",") if part.strip()]
    if not isinstance(stages, list) or not all(isinstance(stage, str) for stage in stages):
        problems.add("stages", f"must be a list of stage names, got {stages!r}", f"choose from {', '.join(STAGES)}")
        stages = []
    elif "stages" in data:
        _check_stages(problems, tuple(stages))
    sections = {section: _build_section(problems, section, data[section]) for section in SECTIONS if section in data}
    problems.raise_if_any()
    preset = Preset(name=name, source=source, fps=fps, stages=tuple(stages), **sections, weights=weights)
    _check_combinations(problems, preset)
    problems.raise_if_any()
    return preset


def _typed(problems: _Problems, key: str, value: Any, kind: type) -> Any:
    """`value` as `kind`, or None with the problem noted."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        problems.add(key, f"must be a finite number, got {value!r}", f"set {key} to a number")
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = {int: "an integer", float: "a number", str: "a string"}[kind]
        problems.add(key, f"must be {expected}, got {value!r}", f"set {key} to {expected}")
        return None
    return value


def _build_section(problems: _Problems, section: str, values: Any) -> Any:
    settings_type = SECTIONS[section]
    if not isinstance(values, dict):
        problems.add(f"section {section!r}", f"must be a mapping, got {values!r}", "see `show1 presets show default`")
        return None
    known = {field.name: field for field in fields(settings_type)}
    for key in values:
        if key not in known:
            problems.add(f"{section}.{key}", "is an unknown key", f"keys of {section} are {', '.join(known)}")
    kwargs = {}
    missing = False
    for key, field in known.items():
        if key in values:
            kind = {"int": int, "float": float, "str": str}[field.type]
            kwargs[key] = _typed(problems, f"{section}.{key}", values[key], kind)
        elif field.default is dataclasses.MISSING:
            problems.add(f"{section}.{key}", "is missing", "add it, or start from a shipped preset with `base: default`")
            missing = True
    if missing or None in kwargs.values():
        return None
    settings = settings_type(**kwargs)
    _check_section(problems, section, settings)
    return settings


def _check_section(problems: _Problems, section: str, settings: Any) -> None:
    def fail(key: str, reason: str, fix: str) -> None:
        problems.add(f"{section}.{key}", reason, fix)

    if settings.steps < 1:
        fail("steps", f"must be at least 1, got {settings.steps}", "use for example 50")
    if settings.guidance_scale < 0:
        fail("guidance_scale", f"must not be negative, got {settings.guidance_scale}", "use 1 for no guidance, more for stronger")
    if settings.scheduler not in SCHEDULERS:
        fail("scheduler", f"must be one of {', '.join(SCHEDULERS)}, got {settings.scheduler!r}", SCHEDULER_FIX)
    if section in SIZE_MULTIPLE:
        multiple = SIZE_MULTIPLE[section]
        for key in ("height", "width"):
            value = getattr(settings, key)
            if value < multiple or value % multiple:
                fail(key, f"must be a positive multiple of {multiple} for this model, got {value}",
                     f"use {max(multiple, round(value / multiple) * multiple)}")
    if section == "keyframes" and settings.frames < 1:
        fail("frames", f"must be at least 1, got {settings.frames}", "use for example 8")
    if hasattr(settings, "noise_level") and not 0 <= settings.noise_level < 1000:
        fail("noise_level", f"must be a timestep in 0..999, got {settings.noise_level}", "the paper uses 250 (sr1) and 150 (first frame)")
    if section == "sr1":
        if settings.window < 2:
            fail("window", f"must be at least 2 frames, got {settings.window}", "use 8")
        if not 1 <= settings.stride < settings.window:
            fail("stride", f"must be between 1 and window-1 ({settings.window - 1}) so windows overlap, got {settings.stride}",
                 f"use {settings.window - 1}")
    if section == "sr2":
        if not 0 < settings.strength <= SR2_MAX_STRENGTH:
            fail("strength", f"must be in (0, {SR2_MAX_STRENGTH}], got {settings.strength}",
                 "show-1-sr2 was trained on timesteps 0-900 only; the paper uses 0.8")
        elif int(settings.steps * settings.strength) < 1:
            fail("steps", f"x strength runs no denoising step ({settings.steps} x {settings.strength} < 1)",
                 f"raise sr2.steps to at least {math.ceil(1 / settings.strength)}")


def _check_stages(problems: _Problems, stages: tuple[str, ...]) -> None:
    for stage in stages:
        if stage not in STAGES:
            problems.add("stages", f"name an unknown stage {stage!r}", f"choose from {', '.join(STAGES)}")
    if not stages:
        problems.add("stages", "is empty", f"list at least one of {', '.join(STAGES)}")
    elif set(stages) <= set(STAGES) and (len(set(stages)) != len(stages) or list(stages) != sorted(stages, key=STAGES.index)):
        problems.add("stages", f"{', '.join(stages)} are repeated or out of order", f"list them in cascade order: {', '.join(STAGES)}")


def _check_combinations(problems: _Problems, preset: Preset) -> None:
    """What depends on more than one setting, for the stages that run."""
    if "interpolate" in preset.stages and preset.keyframes.frames < 2:
        problems.add("keyframes.frames", f"is {preset.keyframes.frames}, but interpolation needs at least 2 keyframes",
                     "raise keyframes.frames or drop 'interpolate' from stages")
    too_small = preset.sr1.height < preset.keyframes.height or preset.sr1.width < preset.keyframes.width
    if {"keyframes", "sr1"} <= set(preset.stages) and too_small:
        problems.add("sr1 size", f"{preset.sr1.width}x{preset.sr1.height} is smaller than the keyframes",
                     "super-resolution only enlarges: raise sr1.height and sr1.width")


# ------------------------------------------------------------------------------------------------
# The direct flags of `show1 generate`, as preset overrides

PIXEL_STAGES = ("keyframes", "interpolate", "sr1")
SIZED_STAGES = ("keyframes", "sr1", "sr2")
SCHEDULER_FIX = "use default (the checkpoint's own), dpm (DPM-Solver++ 2M) or unipc (UniPC)"


def direct_overrides(
    preset: Preset,
    *,
    negative_prompt: str | None = None,
    steps: Iterable[str] = (),
    guidance_scale: Iterable[str] = (),
    scheduler: Iterable[str] = (),
    frames: int | None = None,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
) -> list[str]:
    """The `section.key=value` overrides that --negative-prompt, --steps, ... stand for, given the preset they change.

    `steps` and `guidance_scale` hold "VALUE" (every pixel stage) or "STAGE=VALUE" items, `scheduler` likewise
    (`scheduler_overrides`). `frames`, `width`, `height` and `fps` are the final video's: the keyframe count is
    derived through interpolation (N -> 4N-3), and every stage's size is scaled by the factor that gives the last
    stage the size asked for.
    """
    # Quoted: --set values are read as YAML, where a bare "yes" or "a: b" is no string.
    overrides = [f"{stage}.negative_prompt={json.dumps(negative_prompt)}" for stage in STAGES if negative_prompt is not None]
    overrides += _per_stage("--steps", "steps", steps)
    overrides += _per_stage("--guidance-scale", "guidance_scale", guidance_scale)
    overrides += scheduler_overrides(scheduler)
    if frames is not None:
        overrides.append(f"keyframes.frames={_keyframe_count(preset, frames)}")
    if width is not None or height is not None:
        overrides += _sizes(preset, width, height)
    if fps is not None:  # the preset's fps is the interpolated video's; keyframes alone play at a quarter of it
        overrides.append(f"fps={fps if 'interpolate' in preset.stages else 4 * fps}")
    return overrides


def scheduler_overrides(items: Iterable[str]) -> list[str]:
    """The overrides of --scheduler NAME (every section, the first frame too) and --scheduler STAGE=NAME items."""
    items = list(items)
    for item in items:
        name = item.rpartition("=")[2].strip()
        if name not in SCHEDULERS:
            raise InputError(f"--scheduler {item}: {name!r} is not a scheduler", SCHEDULER_FIX)
    return _per_stage("--scheduler", "scheduler", items, every=tuple(SECTIONS))


def _per_stage(flag: str, key: str, items: Iterable[str], every: tuple[str, ...] = PIXEL_STAGES) -> list[str]:
    with_key = [name for name, settings in SECTIONS.items() if key in {item.name for item in fields(settings)}]
    overrides = []
    for item in items:
        stage, separator, value = item.rpartition("=")
        stage = stage.strip()
        if separator and stage not in with_key:
            raise InputError(f"{flag} {item}: {stage!r} is not a stage with {key}",
                             f"write {flag} VALUE for {', '.join(every)}, or {flag} STAGE=VALUE with STAGE one of {', '.join(with_key)}")
        overrides += [f"{name}.{key}={value.strip()}" for name in ((stage,) if separator else every)]
    return overrides


def _keyframe_count(preset: Preset, frames: int) -> int:
    if "interpolate" not in preset.stages:
        return frames
    keyframes, remainder = divmod(frames + 3, 4)
    if remainder or keyframes < 2:
        lower = max(5, (frames + 3) // 4 * 4 - 3)
        raise InputError(f"--frames {frames}: interpolation makes 4N-3 frames from N keyframes (5, 9, ..., 29, 33, ...)",
                         f"use --frames {lower} or {lower + 4}")
    return keyframes


def _sizes(preset: Preset, width: int | None, height: int | None) -> list[str]:
    last = [stage for stage in preset.stages if stage in SIZED_STAGES][-1]
    current = getattr(preset, last)
    multiple = SIZE_MULTIPLE[last]
    for flag, value in (("--width", width), ("--height", height)):
        if value is not None and (value < multiple or value % multiple):
            nearest = max(multiple, round(value / multiple) * multiple)
            raise InputError(f"{flag} {value} is not a multiple of {multiple}, which {last} (the last stage) needs",
                             f"use {flag} {nearest}")
    scale_w = width / current.width if width is not None else height / current.height
    scale_h = height / current.height if height is not None else scale_w
    overrides = []
    for stage in SIZED_STAGES:
        settings, multiple = getattr(preset, stage), SIZE_MULTIPLE[stage]
        for key, scale in (("width", scale_w), ("height", scale_h)):
            overrides.append(f"{stage}.{key}={max(multiple, round(getattr(settings, key) * scale / multiple) * multiple)}")
    return overrides
