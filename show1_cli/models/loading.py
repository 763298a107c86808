"""Loading a Show-1 UNet from a model folder: the one path every stage uses.

The showlab repositories store `unet/config.json` and `unet/diffusion_pytorch_model.bin`, an fp16 pickle;
some mirrors add `diffusion_pytorch_model.safetensors`. The model is built on the meta device (no memory
for random weights that would be overwritten), the state dict read memory-mapped, checked name by name and
shape by shape against the model, cast and assigned in place. Pickles are read with
`torch.load(weights_only=True)`, which never executes code from the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import init_empty_weights
from safetensors.torch import load_file

from ..errors import WeightsError
from .unet_3d_condition import UNet3DConditionModel

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "diffusion_pytorch_model.safetensors"
SAFETENSORS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
PICKLE_NAME = "diffusion_pytorch_model.bin"

# How many offending keys a mismatch message names per kind.
_SHOWN_KEYS = 5

_REDOWNLOAD = "re-download the model folder (config and weights must come from the same repository and revision)"


def load_unet(
    folder_or_repo_dir: Path | str,
    *,
    subfolder: str | None = "unet",
    torch_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> UNet3DConditionModel:
    """Build the UNet described by `<folder>/<subfolder>/config.json` and load its weights.

    Loads `diffusion_pytorch_model.safetensors` (or its sharded index) when present, else
    `diffusion_pytorch_model.bin`. Weights are cast to `torch_dtype` (float32 when None) and placed on
    `device` (CPU when None). Returns the model in eval mode. Raises `WeightsError` when a file is missing
    or unreadable, or when the weights do not match the config (naming the first offending keys).
    """
    folder = Path(folder_or_repo_dir)
    if subfolder:
        folder = folder / subfolder
    dtype = torch_dtype or torch.float32
    config_path = folder / CONFIG_NAME
    config = _read_config(config_path)
    try:
        with init_empty_weights():
            model = UNet3DConditionModel.from_config(config)
    except (ValueError, TypeError, KeyError) as error:
        raise WeightsError(f"Cannot build the UNet from {config_path}: {error}", _REDOWNLOAD) from error

    weights_path, state_dict = _read_state_dict(folder)
    check_state_dict(model, state_dict, source=weights_path, config_path=config_path)

    state_dict = {
        name: tensor.to(device=device or "cpu", dtype=dtype if tensor.is_floating_point() else tensor.dtype)
        for name, tensor in state_dict.items()
    }
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def check_state_dict(
    model: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    source: Path | str,
    config_path: Path | str | None = None,
) -> None:
    """Raise `WeightsError` unless `state_dict` has exactly the model's names and shapes."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    found = {name: tuple(tensor.shape) for name, tensor in state_dict.items()}
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    mismatched = sorted(name for name in expected.keys() & found.keys() if expected[name] != found[name])
    if not (missing or unexpected or mismatched):
        return

    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
    if mismatched:
        shown = ", ".join(f"{name} (file {list(found[name])}, model {list(expected[name])})" for name in mismatched[:_SHOWN_KEYS])
        more = f" and {len(mismatched) - _SHOWN_KEYS} more" if len(mismatched) > _SHOWN_KEYS else ""
        problems.append(f"{len(mismatched)} shape mismatch(es): {shown}{more}")
    against = f"the UNet built from {config_path}" if config_path else "the UNet"
    raise WeightsError(f"Weights in {source} do not match {against}: " + "; ".join(problems), _REDOWNLOAD)


def _first(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN_KEYS} more" if len(names) > _SHOWN_KEYS else ""
    return ", ".join(names[:_SHOWN_KEYS]) + more


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise WeightsError(f"No UNet config at {path}", f"point to a Show-1 model folder containing unet/{CONFIG_NAME}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"Cannot read the UNet config {path}: {error}", _REDOWNLOAD) from error
    if not isinstance(config, dict):
        raise WeightsError(f"The UNet config {path} is not a JSON object", _REDOWNLOAD)
    class_name = config.get("_class_name", UNet3DConditionModel.__name__)
    if class_name != UNet3DConditionModel.__name__:
        raise WeightsError(
            f"{path} describes a {class_name}, not a Show-1 {UNet3DConditionModel.__name__}",
            "point to a Show-1 model folder (show-1-base, -interpolation, -sr1 or -sr2)",
        )
    return config


def _read_state_dict(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The weights of `folder`: safetensors (single or sharded) if present, else the pickle."""
    safetensors_path = folder / SAFETENSORS_NAME
    index_path = folder / SAFETENSORS_INDEX_NAME
    pickle_path = folder / PICKLE_NAME
    try:
        if safetensors_path.is_file():
            return safetensors_path, load_file(safetensors_path, device="cpu")
        if index_path.is_file():
            return index_path, _read_sharded_safetensors(index_path)
        if pickle_path.is_file():
            return pickle_path, _read_pickle(pickle_path)
    except WeightsError:
        raise
    except Exception as error:  # safetensors / torch raise many kinds on truncated or corrupt files
        raise WeightsError(f"Cannot read the UNet weights in {folder}: {error}", _REDOWNLOAD) from error
    raise WeightsError(
        f"No UNet weights in {folder} (looked for {SAFETENSORS_NAME} and {PICKLE_NAME})",
        "download the model again, weights included",
    )


def _read_sharded_safetensors(index_path: Path) -> dict[str, torch.Tensor]:
    weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    state_dict: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        state_dict.update(load_file(index_path.parent / shard, device="cpu"))
    return state_dict


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        # Files written with the legacy (non-zip) serialization cannot be memory-mapped.
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise WeightsError(
                f"{path} contains pickled objects other than tensors; refusing to load it",
                "use a safetensors copy of the weights (diffusion_pytorch_model.safetensors)",
            ) from error
        raise
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(value) for value in state_dict.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors", _REDOWNLOAD)
    return state_dict
