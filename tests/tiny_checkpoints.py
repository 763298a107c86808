"""Tiny random-weight checkpoints laid out exactly like the hub repositories Show-1 uses.

`write_tiny_weights(root)` writes `root/<component>/` for show-1-base, show-1-interpolation, show-1-sr1,
show-1-sr2 and IF-II-L-v1.0 (the names of `show1_cli.weights.COMPONENTS`) with the real file names and
formats: model_index.json and scheduler configs copied from the real repositories (show1_cli/hub_configs),
a sentencepiece T5 tokenizer trained on the fly, a tiny T5 encoder in two pytorch_model-*.bin shards with
their index, UNets in fp16 `diffusion_pytorch_model.bin` pickles, and so on. It also writes
`root/weights.lock`: the project's weights lock with the sizes and hashes that the real lock pins replaced
by those of the tiny files, so `show1` resolves and verifies them through its normal code path
(point SHOW1_WEIGHTS_LOCK at it and SHOW1_WEIGHTS_DIR / --weights-dir at `root`).

Everything is seeded: two calls write byte-identical files. Takes a few seconds and a few MB.

    python -m tests.tiny_checkpoints DIR      # or: make tiny-weights

Files whose real contents are not known (see REFERENCE.md section 2) are reconstructed and marked
INFERRED below: the sr1 scheduler (taken as the base one), the DDPM image-noising schedulers, and the
IF-II-L model index and schedulers (diffusers' IF-II conventions). IF-II-L is written with the files
the weights lock lists only (no text encoder, safety checker or watermarker): show1 loads its UNet and
schedulers directly and feeds it the show-1-base T5 embeddings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from show1_cli.training.scaffold import (
    HUB_CONFIGS,
    IMAGE_NOISING_SCHEDULER,
    read_json,
    save_pickle,
    train_sentencepiece,
    write_json,
    write_pixel_repository_parts,
    write_sr2_repository_parts,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = HUB_CONFIGS

BASE = "show-1-base"
INTERPOLATION = "show-1-interpolation"
SR1 = "show-1-sr1"
SR2 = "show-1-sr2"
IF_II_L = "IF-II-L-v1.0"
ALL: tuple[str, ...] = (BASE, INTERPOLATION, SR1, SR2, IF_II_L)

SEED = 1234
T5_DIM = 64  # d_model of the tiny T5 = encoder_hid_dim of the tiny pixel UNets
CLIP_DIM = 32  # hidden size of the tiny CLIP text model = cross_attention_dim of the tiny sr2 UNet

CORPUS = (
    "a cat walking on the grass in the garden",
    "a dog running in the park at sunset",
    "the ocean waves crash on the sandy beach",
    "a red car drives down a busy city street at night",
    "fireworks explode over the river, bright colors in the sky",
    "a panda eats bamboo in a green forest",
    "close-up of a flower blooming, time-lapse, high quality",
    "an astronaut riding a horse on the moon",
    "people dancing at a party with lights",
    "a bird flies over snowy mountains under a blue sky",
)

# ------------------------------------------------------------------------------------------------
# Configs of files whose real contents are not known here (INFERRED, see the module docstring).

# IF-II's sampling scheduler: DDPM, cosine betas, learned-range variance, dynamic thresholding.
IF_II_SCHEDULER = {
    "_class_name": "DDPMScheduler",
    "_diffusers_version": "0.16.0",
    "beta_end": 0.02,
    "beta_schedule": "squaredcos_cap_v2",
    "beta_start": 0.0001,
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "dynamic_thresholding_ratio": 0.95,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "thresholding": True,
    "trained_betas": None,
    "variance_type": "learned_range",
}
IF_II_MODEL_INDEX = {
    "_class_name": "IFSuperResolutionPipeline",
    "_diffusers_version": "0.16.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "image_noising_scheduler": ["diffusers", "DDPMScheduler"],
    "requires_safety_checker": True,
    "safety_checker": ["deepfloyd_if", "IFSafetyChecker"],
    "scheduler": ["diffusers", "DDPMScheduler"],
    "text_encoder": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "T5Tokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "watermarker": ["deepfloyd_if", "IFWatermarker"],
}

# Tiny UNet configs: the real config (same class, block types, embeddings) with small widths/depths.
_PIXEL_UNET_SHRINK = {
    "attention_head_dim": 16,
    "addition_embed_type_num_heads": 4,
    "cross_attention_dim": 64,
    "encoder_hid_dim": T5_DIM,
    "sample_size": 16,
}
TINY_UNET_OVERRIDES: dict[str, dict[str, Any]] = {
    BASE: {**_PIXEL_UNET_SHRINK, "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1},
    INTERPOLATION: {**_PIXEL_UNET_SHRINK, "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1},
    SR1: {
        **_PIXEL_UNET_SHRINK,
        "block_out_channels": [32, 32, 32, 64, 64],
        "layers_per_block": [1, 1, 1, 1, 1],
        "time_embedding_dim": 128,
        "sample_size": None,
    },
    SR2: {
        "block_out_channels": [32, 32, 64, 64],
        "layers_per_block": 1,
        "attention_head_dim": 4,  # ModelScope-style blocks: the number of heads
        "cross_attention_dim": CLIP_DIM,
        "sample_size": 8,
    },
}


def tiny_unet_config(component: str) -> dict[str, Any]:
    """The tiny UNet config of a Show-1 component: its real config with the overrides above."""
    config = read_json(CONFIGS / f"unet-{component}.json")
    for key, value in TINY_UNET_OVERRIDES[component].items():
        if key not in config:
            raise KeyError(f"tiny override {key!r} is not a key of the real {component} unet config")
        config[key] = value
    return config


def tiny_if_ii_unet_config() -> dict[str, Any]:
    """A tiny diffusers UNet2DConditionModel config in the IF-II layout (INFERRED from IF-II conventions)."""
    return {
        "act_fn": "gelu",
        "addition_embed_type": "text",
        "addition_embed_type_num_heads": 4,
        "attention_head_dim": 16,
        "block_out_channels": [32, 32, 32, 64, 64],
        "class_embed_type": "timestep",
        "cross_attention_dim": 64,
        "cross_attention_norm": "group_norm",
        "down_block_types": [
            "ResnetDownsampleBlock2D",
            "ResnetDownsampleBlock2D",
            "ResnetDownsampleBlock2D",
            "SimpleCrossAttnDownBlock2D",
            "SimpleCrossAttnDownBlock2D",
        ],
        "encoder_hid_dim": T5_DIM,
        "encoder_hid_dim_type": "text_proj",
        "in_channels": 6,
        "layers_per_block": 1,
        "mid_block_scale_factor": 1.4142271248762552,
        "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
        "norm_num_groups": 32,
        "out_channels": 6,
        "resnet_out_scale_factor": 1.4142271248762552,
        "resnet_skip_time_act": True,
        "resnet_time_scale_shift": "scale_shift",
        "sample_size": 64,
        "time_embedding_act_fn": "gelu",
        "time_embedding_dim": 128,
        "up_block_types": [
            "SimpleCrossAttnUpBlock2D",
            "SimpleCrossAttnUpBlock2D",
            "ResnetUpsampleBlock2D",
            "ResnetUpsampleBlock2D",
            "ResnetUpsampleBlock2D",
        ],
    }


# ------------------------------------------------------------------------------------------------
# Writers of the parts


def _seeded(offset: int) -> None:
    torch.manual_seed(SEED + offset)


def write_show1_unet(folder: Path, component: str) -> None:
    """unet/{config.json, diffusion_pytorch_model.bin}: the Show-1 class, fp16 pickle as on the hub."""
    from show1_cli.models import UNet3DConditionModel

    config = tiny_unet_config(component)
    _seeded(10 + ALL.index(component))
    init = {key: value for key, value in config.items() if not key.startswith("_")}
    model = UNet3DConditionModel(**init)
    _randomize_zero_inits(model)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", config)
    save_pickle(model.state_dict(), folder / "diffusion_pytorch_model.bin", torch.float16)


def _randomize_zero_inits(model: torch.nn.Module) -> None:
    """Give zero-initialised weights (output convs, temporal conv ends) small random values.

    A freshly built UNet outputs exactly zero from its zero-started layers; random small values make
    every layer matter, so tests that compare outputs can see a wrong code path.
    """
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim > 0 and not parameter.any():
                parameter.normal_(0.0, 0.02)


def write_if_ii_unet(folder: Path) -> None:
    """IF-II-L's unet/: a tiny diffusers UNet2DConditionModel saved as safetensors."""
    from diffusers import UNet2DConditionModel

    _seeded(20)
    model = UNet2DConditionModel(**tiny_if_ii_unet_config())
    _randomize_zero_inits(model)
    model.save_pretrained(folder, safe_serialization=True)


def write_vae(folder: Path) -> None:
    """vae/{config.json, diffusion_pytorch_model.bin}: a tiny AutoencoderKL (8x down, 4 latent channels)."""
    from diffusers import AutoencoderKL

    _seeded(40)
    model = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
        scaling_factor=0.18215,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    save_pickle(model.state_dict(), folder / "diffusion_pytorch_model.bin")


def _write_pixel_component(root: Path, component: str, spiece_model: bytes) -> None:
    folder = root / component
    write_pixel_repository_parts(folder, component, spiece_model, t5_dim=T5_DIM, seed=SEED + 1)
    write_show1_unet(folder / "unet", component)


def _write_sr2(root: Path) -> None:
    folder = root / SR2
    write_sr2_repository_parts(folder, CORPUS, clip_dim=CLIP_DIM, merges=60, seed=SEED + 30)
    write_show1_unet(folder / "unet", SR2)
    write_vae(folder / "vae")


def _write_if_ii_l(root: Path) -> None:
    folder = root / IF_II_L
    write_json(folder / "model_index.json", IF_II_MODEL_INDEX)
    write_json(folder / "scheduler" / "scheduler_config.json", IF_II_SCHEDULER)
    write_json(folder / "image_noising_scheduler" / "scheduler_config.json", IMAGE_NOISING_SCHEDULER)
    write_if_ii_unet(folder / "unet")


def write_tiny_lock(root: Path, lock_path: Path | None = None) -> Path:
    """root/weights.lock: the project lock, with the sizes and hashes it pins replaced by the tiny files'.

    Only values the real lock fills in are replaced (null stays null), so the tiny set exercises the same
    checks the real weights get.
    """
    lock = read_json(lock_path or REPO_ROOT / "weights.lock")
    lock = copy.deepcopy(lock)
    for name, component in lock["components"].items():
        for entry in component["files"]:
            candidates = [entry["path"], *(entry.get("alternatives") or [])]
            present = next((root / name / path for path in candidates if (root / name / path).is_file()), None)
            if present is None:
                continue
            if entry.get("size") is not None:
                entry["size"] = present.stat().st_size
            if entry.get("sha256") is not None:
                entry["sha256"] = hashlib.sha256(present.read_bytes()).hexdigest()
            if entry.get("git_sha1") is not None:
                data = present.read_bytes()
                entry["git_sha1"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    target = root / "weights.lock"
    target.write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")
    return target


WRITERS: dict[str, Callable[[Path, bytes], None]] = {
    BASE: lambda root, spiece: _write_pixel_component(root, BASE, spiece),
    INTERPOLATION: lambda root, spiece: _write_pixel_component(root, INTERPOLATION, spiece),
    SR1: lambda root, spiece: _write_pixel_component(root, SR1, spiece),
    SR2: lambda root, spiece: _write_sr2(root),
    IF_II_L: lambda root, spiece: _write_if_ii_l(root),
}


def write_tiny_weights(root: Path, components: Iterable[str] = ALL) -> Path:
    """Write the tiny checkpoints of `components` into `root/<component>/` and `root/weights.lock`; returns root."""
    root = Path(root)
    components = tuple(components)
    unknown = [name for name in components if name not in WRITERS]
    if unknown:
        raise ValueError(f"unknown components {unknown}; choose from {', '.join(ALL)}")
    root.mkdir(parents=True, exist_ok=True)
    spiece_model = train_sentencepiece(CORPUS, vocab_size=150)
    for name in components:
        WRITERS[name](root, spiece_model)
    write_tiny_lock(root)
    return root


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.tiny_checkpoints DIR", file=sys.stderr)
        return 2
    root = write_tiny_weights(Path(argv[0]))
    print(f"tiny Show-1 checkpoints written to {root} (use --weights-dir {root} with SHOW1_WEIGHTS_LOCK={root / 'weights.lock'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
