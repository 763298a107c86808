"""The motion adapter: a safetensors file holding only the parameters `finetune-motion` trained.

Its metadata (all strings, safetensors' header) records what it was trained on and how: the base
component and its revision (from the weights lock), the parameter set, loss, steps, learning rate,
prompt, frame count and size, the sha256 of the reference clip and where it was, and the show1 version.

`apply_motion_adapter` blends it into a loaded base UNet, parameter by parameter:
w = w_base + scale * (w_tuned - w_base), so scale 0 keeps the base model bit for bit, 1 gives the
fine-tuned model, values in between interpolate and values above 1 extrapolate the learned change. A
file trained on another base (other component, revision, or parameter names/shapes) is refused.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from show1_cli import __version__
from show1_cli.errors import InputError, OutputExistsError
from show1_cli.weights import Component

# The model motion adapters are trained on and applied to: the keyframe UNet.
BASE_COMPONENT = "show-1-base"
FORMAT = "show1-motion-adapter"
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
# Metadata keys every adapter carries (values are strings).
METADATA_KEYS = (
    "format",
    "format_version",
    "base_component",
    "base_repo_id",
    "base_revision",
    "parameter_set",
    "loss",
    "steps",
    "lr",
    "seed",
    "prompt",
    "frames",
    "height",
    "width",
    "reference_sha256",
    "reference_path",
    "show1_version",
)


@dataclass(frozen=True)
class MotionAdapter:
    """A read adapter: the tuned parameters by UNet name (fp32) and its metadata."""

    path: Path
    parameters: dict[str, torch.Tensor]
    metadata: dict[str, str]


def adapter_metadata(
    base: Component,
    *,
    parameter_set: str,
    loss: str,
    steps: int,
    lr: float,
    seed: int,
    prompt: str,
    frames: int,
    height: int,
    width: int,
    reference: Path,
    reference_sha256: str,
) -> dict[str, str]:
    """The metadata block of an adapter (see METADATA_KEYS)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "base_component": base.name,
        "base_repo_id": base.repo_id,
        "base_revision": base.revision or "",
        "parameter_set": parameter_set,
        "loss": loss,
        "steps": str(steps),
        "lr": repr(lr),
        "seed": str(seed),
        "prompt": prompt,
        "frames": str(frames),
        "height": str(height),
        "width": str(width),
        "reference_sha256": reference_sha256,
        "reference_path": str(Path(reference).resolve()),
        "show1_version": __version__,
    }


def ensure_adapter_writable(path: Path, overwrite: bool) -> None:
    """Check before training that `save_motion_adapter(path, ..., overwrite)` can succeed."""
    path = Path(path)
    if path.suffix.lower() != SUFFIX:
        raise InputError(f"cannot write the motion adapter to {path}: it must end in {SUFFIX}", f"choose an -o ending in {SUFFIX}")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist", f"create {path.parent} first or choose another -o")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: folder {path.parent} is not writable", "choose another -o")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder", f"choose a file name ending in {SUFFIX}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists", "pass --overwrite to replace it or choose another -o")


def save_motion_adapter(
    path: Path, parameters: dict[str, torch.Tensor], metadata: dict[str, str], *, overwrite: bool = False
) -> Path:
    """Write the adapter atomically (temporary file, then rename): fp32 tensors, string metadata."""
    path = Path(path)
    ensure_adapter_writable(path, overwrite)
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"adapter metadata lacks {missing}")
    tensors = {name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in parameters.items()}
    temp = path.with_name(f".{path.name}.partial-{secrets.token_hex(4)}")
    try:
        save_file(tensors, str(temp), metadata=metadata)
        os.chmod(temp, 0o666 & ~_umask())  # safetensors creates the file private; give it the usual mode
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_motion_adapter(path: Path) -> MotionAdapter:
    """Read and check an adapter file; `InputError` when it is missing, unreadable or not an adapter."""
    path = Path(path)
    fix = "pass a file written by `show1 finetune-motion`"
    if not path.is_file():
        raise InputError(f"motion adapter {path} does not exist", "check the path, or train one with `show1 finetune-motion`")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            parameters = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read motion adapter {path} ({error})", fix) from None
    if metadata.get("format") != FORMAT:
        raise InputError(f"{path} is not a show1 motion adapter (no {FORMAT!r} metadata)", fix)
    if metadata.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"motion adapter {path} has format version {metadata.get('format_version')!r}, this show1 reads {FORMAT_VERSION}",
            "retrain it with this version of show1",
        )
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing or not parameters:
        raise InputError(f"motion adapter {path} is incomplete (missing {', '.join(missing) or 'parameters'})", fix)
    return MotionAdapter(path, parameters, metadata)


def check_adapter_base(adapter: MotionAdapter, unet: torch.nn.Module, expected_base: Component) -> None:
    """Refuse an adapter trained on another base model: component, revision, parameter names and shapes."""
    meta = adapter.metadata
    trained_on = f"{meta['base_repo_id']}@{meta['base_revision'][:12] or 'unpinned'}"
    this_base = f"{expected_base.repo_id}@{(expected_base.revision or '')[:12] or 'unpinned'}"
    fix = f"use an adapter trained on {this_base}, or retrain it with `show1 finetune-motion`"
    trained = (meta["base_component"], meta["base_repo_id"], meta["base_revision"])
    if trained != (expected_base.name, expected_base.repo_id, expected_base.revision or ""):
        raise InputError(f"motion adapter {adapter.path} was trained on {trained_on}, this run uses {this_base}", fix)
    parameters = dict(unet.named_parameters())
    for name, tensor in adapter.parameters.items():
        if name not in parameters:
            raise InputError(f"motion adapter {adapter.path} has parameter {name}, which the {this_base} UNet lacks", fix)
        if tuple(tensor.shape) != tuple(parameters[name].shape):
            raise InputError(
                f"motion adapter {adapter.path}: {name} has shape {tuple(tensor.shape)}, the {this_base} UNet's is "
                f"{tuple(parameters[name].shape)}",
                fix,
            )


def check_scale(scale: float) -> float:
    if not math.isfinite(scale) or scale < 0:
        raise InputError(f"--motion-scale {scale} must be a number >= 0", "use 0 (base model) to 1 (fine-tuned motion)")
    return float(scale)


@torch.no_grad()
def blend_into(unet: torch.nn.Module, adapter: MotionAdapter, scale: float) -> None:
    """w <- w_base + scale * (w_tuned - w_base) for every adapter parameter, in the UNet's dtype."""
    parameters = dict(unet.named_parameters())
    for name, tuned in adapter.parameters.items():
        param = parameters[name]
        base = param.detach().float()
        param.copy_(torch.lerp(base, tuned.to(base.device, torch.float32), scale).to(param.dtype))


def apply_motion_adapter(unet: torch.nn.Module, path: Path, scale: float, expected_base: Component) -> MotionAdapter:
    """Read the adapter at `path`, check it fits `unet` (the base `expected_base`), blend it in with `scale`."""
    scale = check_scale(scale)
    adapter = read_motion_adapter(path)
    check_adapter_base(adapter, unet, expected_base)
    blend_into(unet, adapter, scale)
    return adapter


def apply_motion_options(unet: torch.nn.Module, options: dict, base: Component) -> torch.nn.Module:
    """The keyframe stage's hook on a freshly loaded base UNet (the component `base`): blend in `options["motion"]`
    (an adapter path, from `generate --motion`) at `options["motion_scale"]` (default 1); nothing without an adapter."""
    if options.get("motion"):
        apply_motion_adapter(unet, Path(options["motion"]), float(options.get("motion_scale", 1.0)), base)
    return unet
