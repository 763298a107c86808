"""Tiny random-weight checkpoints laid out exactly like the hub repositories Show-1 uses.

`write_tiny_weights(root)` writes `root/<component>/` for show-1-base, show-1-interpolation, show-1-sr1,
show-1-sr2 and IF-II-L-v1.0 (the names of `show1_cli.weights.COMPONENTS`) with the real file names and
formats: model_index.json and scheduler configs copied from the real repositories (tests/data/configs),
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
import io
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "tests" / "data" / "configs"

BASE = "show-1-base"
INTERPOLATION = "show-1-interpolation"
SR1 = "show-1-sr1"
SR2 = "show-1-sr2"
IF_II_L = "IF-II-L-v1.0"
ALL: tuple[str, ...] = (BASE, INTERPOLATION, SR1, SR2, IF_II_L)

SEED = 1234
T5_DIM = 64  # d_model of the tiny T5 = encoder_hid_dim of the tiny pixel UNets
CLIP_DIM = 32  # hidden size of the tiny CLIP text model = cross_attention_dim of the tiny sr2 UNet
EXTRA_IDS = 100  # T5's sentinel tokens <extra_id_0..99>, as in the real tokenizer

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

# DDPM with cosine betas: the image-noising scheduler of IF-II (and, by inheritance, of show-1-sr1).
IMAGE_NOISING_SCHEDULER = {
    "_class_name": "DDPMScheduler",
    "_diffusers_version": "0.19.3",
    "beta_end": 0.02,
    "beta_schedule": "squaredcos_cap_v2",
    "beta_start": 0.0001,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "thresholding": False,
    "trained_betas": None,
    "variance_type": "fixed_small",
}
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
# The CLIP image processor config of the IF family (feature_extractor/preprocessor_config.json).
PREPROCESSOR_CONFIG = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
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
    config = _read_json(CONFIGS / f"unet-{component}.json")
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


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _save_pickle(state_dict: dict[str, torch.Tensor], path: Path, dtype: torch.dtype | None = None) -> None:
    """torch.save of a plain state dict (contiguous clones, so no storage is shared), as the hub files are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: (value.to(dtype) if dtype is not None else value).contiguous().clone() for key, value in state_dict.items()}
    torch.save(tensors, path)


def _seeded(offset: int) -> None:
    torch.manual_seed(SEED + offset)


def train_sentencepiece() -> bytes:
    """A small unigram sentencepiece model with T5's special ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 8),
        model_writer=model,
        vocab_size=150,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def write_t5_tokenizer(folder: Path, spiece_model: bytes) -> None:
    """tokenizer/{spiece.model, special_tokens_map.json, tokenizer_config.json} as in the IF/Show-1 repos."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(spiece_model)
    extra = [f"<extra_id_{index}>" for index in range(EXTRA_IDS)]
    special = {"additional_special_tokens": extra, "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    _write_json(folder / "special_tokens_map.json", special)
    _write_json(
        folder / "tokenizer_config.json",
        {**special, "extra_ids": EXTRA_IDS, "model_max_length": 512, "sp_model_kwargs": {}, "tokenizer_class": "T5Tokenizer"},
    )


def _t5_vocab_size(spiece_model: bytes) -> int:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=spiece_model)
    size = processor.get_piece_size() + EXTRA_IDS
    return (size + 63) // 64 * 64  # padded like T5's 32128


def write_t5_encoder(folder: Path, vocab_size: int) -> None:
    """text_encoder/{config.json, pytorch_model-0000{1,2}-of-00002.bin, pytorch_model.bin.index.json}.

    transformers 5 no longer writes .bin checkpoints, so the two fp32 shards and their index are written
    here in the format transformers reads (a plain state dict per shard, weight_map in the index).
    """
    from transformers import T5Config, T5EncoderModel

    real = _read_json(CONFIGS / "text_encoder-t5-v1_1-xxl.json")
    config = T5Config(
        **{key: value for key, value in real.items() if key not in ("architectures", "transformers_version", "torch_dtype")},
    )
    config.update({"d_model": T5_DIM, "d_kv": 16, "d_ff": 128, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2,
                   "vocab_size": vocab_size, "dropout_rate": 0.0})
    _seeded(1)
    model = T5EncoderModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    config.architectures = ["T5EncoderModel"]
    config.save_pretrained(folder)

    state = {key: value for key, value in model.state_dict().items()}
    # The tied input embedding is stored once, as `shared.weight`, like the hub checkpoints.
    state.pop("encoder.embed_tokens.weight", None)
    keys = sorted(state)
    half = len(keys) // 2
    shards = {"pytorch_model-00001-of-00002.bin": keys[:half], "pytorch_model-00002-of-00002.bin": keys[half:]}
    weight_map: dict[str, str] = {}
    for name, shard_keys in shards.items():
        _save_pickle({key: state[key] for key in shard_keys}, folder / name)
        weight_map.update({key: name for key in shard_keys})
    total = sum(state[key].numel() * state[key].element_size() for key in keys)
    _write_json(folder / "pytorch_model.bin.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def write_show1_unet(folder: Path, component: str) -> None:
    """unet/{config.json, diffusion_pytorch_model.bin}: the Show-1 class, fp16 pickle as on the hub."""
    from show1_cli.models import UNet3DConditionModel

    config = tiny_unet_config(component)
    _seeded(10 + ALL.index(component))
    init = {key: value for key, value in config.items() if not key.startswith("_")}
    model = UNet3DConditionModel(**init)
    _randomize_zero_inits(model)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", config)
    _save_pickle(model.state_dict(), folder / "diffusion_pytorch_model.bin", torch.float16)


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


def write_clip_tokenizer(folder: Path) -> None:
    """tokenizer/{vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json} (CLIP BPE).

    The vocabulary has CLIP's structure: the 256 byte symbols, the same with the end-of-word mark `</w>`,
    the merges learned here from the corpus, then <|startoftext|> and <|endoftext|>.
    """
    symbols = _byte_symbols()
    vocab = symbols + [symbol + "</w>" for symbol in symbols]
    merges = _learn_bpe_merges(CORPUS, count=60)
    vocab += ["".join(pair) for pair in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    ids = {token: index for index, token in enumerate(vocab)}
    (folder / "vocab.json").write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    _write_json(folder / "special_tokens_map.json", special)
    _write_json(
        folder / "tokenizer_config.json",
        {**special, "add_prefix_space": False, "do_lower_case": True, "errors": "replace", "model_max_length": 77,
         "tokenizer_class": "CLIPTokenizer"},
    )


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE: printable Latin-1 bytes map to themselves, the
    other bytes to code points from 256 upwards, in byte order."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("\u00a1"), ord("\u00ac") + 1)) | set(range(ord("\u00ae"), 256))
    symbols = []
    shifted = 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def _learn_bpe_merges(corpus: Iterable[str], count: int) -> list[tuple[str, str]]:
    """Plain BPE over the corpus words (each word ends with `</w>` on its last symbol), most frequent first."""
    words: dict[tuple[str, ...], int] = {}
    for line in corpus:
        for word in line.lower().replace(",", " ").split():
            symbols = tuple(word[:-1]) + (word[-1] + "</w>",)
            words[symbols] = words.get(symbols, 0) + 1
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: dict[tuple[str, str], int] = {}
        for symbols, frequency in words.items():
            for pair in zip(symbols[:-1], symbols[1:], strict=True):
                pairs[pair] = pairs.get(pair, 0) + frequency
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda pair: pairs[pair])
        merges.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for symbols, frequency in words.items():
            out: list[str] = []
            index = 0
            while index < len(symbols):
                if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == best:
                    out.append(symbols[index] + symbols[index + 1])
                    index += 2
                else:
                    out.append(symbols[index])
                    index += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + frequency
        words = merged
    return merges


def write_clip_text_encoder(folder: Path, vocab_size: int) -> None:
    """text_encoder/{config.json, pytorch_model.bin}: a tiny CLIPTextModel (single fp32 pickle, as sr2's)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=CLIP_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=CLIP_DIM,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    _seeded(30)
    model = CLIPTextModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    config.architectures = ["CLIPTextModel"]
    config.save_pretrained(folder)
    _save_pickle(model.state_dict(), folder / "pytorch_model.bin")


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
    _save_pickle(model.state_dict(), folder / "diffusion_pytorch_model.bin")


def _copy_config(name: str, target: Path) -> None:
    _write_json(target, _read_json(CONFIGS / name))


# ------------------------------------------------------------------------------------------------
# Components


def _write_pixel_component(root: Path, component: str, spiece_model: bytes) -> None:
    folder = root / component
    _copy_config(f"model_index-{component}.json", folder / "model_index.json")
    # show-1-interpolation's and (INFERRED) show-1-sr1's scheduler are taken as the base one.
    _copy_config("scheduler-show-1-base.json", folder / "scheduler" / "scheduler_config.json")
    if component == SR1:
        _write_json(folder / "image_noising_scheduler" / "scheduler_config.json", IMAGE_NOISING_SCHEDULER)
    _write_json(folder / "feature_extractor" / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    write_t5_tokenizer(folder / "tokenizer", spiece_model)
    write_t5_encoder(folder / "text_encoder", _t5_vocab_size(spiece_model))
    write_show1_unet(folder / "unet", component)


def _write_sr2(root: Path) -> None:
    folder = root / SR2
    _copy_config("model_index-show-1-sr2.json", folder / "model_index.json")
    _copy_config("scheduler-show-1-sr2.json", folder / "scheduler" / "scheduler_config.json")
    write_clip_tokenizer(folder / "tokenizer")
    vocab_size = len(_read_json(folder / "tokenizer" / "vocab.json"))
    write_clip_text_encoder(folder / "text_encoder", vocab_size)
    write_show1_unet(folder / "unet", SR2)
    write_vae(folder / "vae")


def _write_if_ii_l(root: Path) -> None:
    folder = root / IF_II_L
    _write_json(folder / "model_index.json", IF_II_MODEL_INDEX)
    _write_json(folder / "scheduler" / "scheduler_config.json", IF_II_SCHEDULER)
    _write_json(folder / "image_noising_scheduler" / "scheduler_config.json", IMAGE_NOISING_SCHEDULER)
    write_if_ii_unet(folder / "unet")


def write_tiny_lock(root: Path, lock_path: Path | None = None) -> Path:
    """root/weights.lock: the project lock, with the sizes and hashes it pins replaced by the tiny files'.

    Only values the real lock fills in are replaced (null stays null), so the tiny set exercises the same
    checks the real weights get.
    """
    lock = _read_json(lock_path or REPO_ROOT / "weights.lock")
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
    spiece_model = train_sentencepiece()
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
