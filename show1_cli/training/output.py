"""A trained model's output folder: the hub layout of its Show-1 repository, describing itself.

The folder holds everything of the `--init` folder (model index, schedulers, tokenizer, text encoder, VAE)
with the trained model's subfolder (unet/ or vae/) replaced by its config and a safetensors file whose
metadata records the provenance (stage, init, data set hash, steps, loss, seed, show1 version). It loads
through `--weights-dir` with the same code as the real weights. It is assembled next to the target and
renamed into place, so an interrupted run never leaves half a folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from show1_cli.errors import InputError, OutputExistsError

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PROVENANCE_KEY = "show1"
SAVE_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
# Files that belong to one copy of a folder, not to the model (verification stamps).
_LOCAL_FILES = (".show1-verified.json",)


def ensure_output_writable(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists", "pass --overwrite to replace it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file", "pass a folder path for the trained model")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # reported just below
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {out}: {parent} is not a writable folder", "choose another --out")


def save_model(folder: Path, config: dict[str, Any], model: torch.nn.Module, provenance: dict[str, Any], dtype: torch.dtype) -> None:
    """folder/config.json and folder/diffusion_pytorch_model.safetensors with the provenance in its metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tensors = {name: tensor.detach().to("cpu", dtype if tensor.is_floating_point() else tensor.dtype).contiguous()
               for name, tensor in model.state_dict().items()}
    save_file(tensors, folder / WEIGHTS_NAME, metadata={PROVENANCE_KEY: json.dumps(provenance, sort_keys=True)})


def read_provenance(weights_file: Path) -> dict[str, Any]:
    """The provenance `show1 train` stored in a safetensors file ({} for files it did not write)."""
    with safe_open(str(weights_file), framework="pt") as handle:
        text = (handle.metadata() or {}).get(PROVENANCE_KEY)
    return json.loads(text) if text else {}


def write_output(
    out: Path,
    init_dir: Path,
    subfolder: str,
    config: dict[str, Any],
    model: torch.nn.Module,
    provenance: dict[str, Any],
    *,
    dtype: torch.dtype,
    overwrite: bool,
    scheduler_updates: dict[str, Any] | None = None,
) -> None:
    """Assemble `out` from `init_dir` with `subfolder` holding the trained model, and `scheduler_updates`
    written into its scheduler config; atomic."""
    ensure_output_writable(out, overwrite)
    temp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        shutil.copytree(init_dir, temp, ignore=shutil.ignore_patterns(subfolder, *_LOCAL_FILES, ".*"))
        save_model(temp / subfolder, config, model, provenance, dtype)
        if scheduler_updates:
            scheduler_file = temp / "scheduler" / "scheduler_config.json"
            scheduler_config = {**json.loads(scheduler_file.read_text(encoding="utf-8")), **scheduler_updates}
            scheduler_file.write_text(json.dumps(scheduler_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        temp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
