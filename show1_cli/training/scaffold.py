"""Writers of the parts of a Show-1 hub repository that training does not change.

Small cascades (the micro cascade, the tests' tiny checkpoints) need everything around their UNets laid
out exactly like the hub repositories: model_index.json and scheduler configs as the real ones, a real
sentencepiece T5 tokenizer and a small T5 encoder (two .bin shards with their index, as on the hub), a CLIP
BPE tokenizer and a small CLIP text model, and a small AutoencoderKL. Text encoders stay frozen in Show-1,
so a seeded random encoder over a tokenizer trained on the captions is a faithful small stand-in.

Every writer is seeded: the same arguments write byte-identical files.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

HUB_CONFIGS = Path(__file__).resolve().parents[1] / "hub_configs"

EXTRA_IDS = 100  # T5's sentinel tokens <extra_id_0..99>, as in the real tokenizer

# DDPM with cosine betas: the image-noising scheduler of IF-II (and, by inheritance, of show-1-sr1).
# INFERRED: the file's real contents are not published (REFERENCE.md section 2).
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


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def hub_config(name: str) -> dict[str, Any]:
    """A config file of the real repositories, e.g. "model_index-show-1-base.json" (show1_cli/hub_configs)."""
    return read_json(HUB_CONFIGS / name)


def save_pickle(state_dict: dict[str, torch.Tensor], path: Path, dtype: torch.dtype | None = None) -> None:
    """torch.save of a plain state dict (contiguous clones, so no storage is shared), as the hub files are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: (value.to(dtype) if dtype is not None else value).contiguous().clone() for key, value in state_dict.items()}
    torch.save(tensors, path)


def train_sentencepiece(corpus: Sequence[str], vocab_size: int, model_type: str = "unigram") -> bytes:
    """A sentencepiece model (unigram, or "word": one piece per word) with T5's special ids (pad 0, eos 1,
    unk 2, no bos)."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus) * 8),
        model_writer=model,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type=model_type,
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
    write_json(folder / "special_tokens_map.json", special)
    write_json(
        folder / "tokenizer_config.json",
        {**special, "extra_ids": EXTRA_IDS, "model_max_length": 512, "sp_model_kwargs": {}, "tokenizer_class": "T5Tokenizer"},
    )


def t5_vocab_size(spiece_model: bytes) -> int:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=spiece_model)
    size = processor.get_piece_size() + EXTRA_IDS
    return (size + 63) // 64 * 64  # padded like T5's 32128


def t5_xxl_config():
    """The real T5 v1.1 XXL config (show1_cli/hub_configs) as a transformers T5Config."""
    from transformers import T5Config

    real = hub_config("text_encoder-t5-v1_1-xxl.json")
    return T5Config(**{key: value for key, value in real.items() if key not in ("architectures", "transformers_version", "torch_dtype")})


def write_t5_encoder(folder: Path, vocab_size: int, *, d_model: int, seed: int, d_ff: int | None = None, layers: int = 2) -> None:
    """text_encoder/{config.json, pytorch_model-0000{1,2}-of-00002.bin, pytorch_model.bin.index.json}.

    The real T5 v1.1 XXL config with small widths. transformers 5 no longer writes .bin checkpoints, so the
    two fp32 shards and their index are written here in the format transformers reads.
    """
    from transformers import T5EncoderModel

    config = t5_xxl_config()
    config.update({"d_model": d_model, "d_kv": 16, "d_ff": d_ff or 2 * d_model, "num_heads": max(1, d_model // 16),
                   "num_layers": layers, "num_decoder_layers": layers, "vocab_size": vocab_size, "dropout_rate": 0.0})
    torch.manual_seed(seed)
    model = T5EncoderModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    config.architectures = ["T5EncoderModel"]
    config.save_pretrained(folder)

    state = dict(model.state_dict())
    # The tied input embedding is stored once, as `shared.weight`, like the hub checkpoints.
    state.pop("encoder.embed_tokens.weight", None)
    keys = sorted(state)
    half = len(keys) // 2
    shards = {"pytorch_model-00001-of-00002.bin": keys[:half], "pytorch_model-00002-of-00002.bin": keys[half:]}
    weight_map: dict[str, str] = {}
    for name, shard_keys in shards.items():
        save_pickle({key: state[key] for key in shard_keys}, folder / name)
        weight_map.update({key: name for key in shard_keys})
    total = sum(state[key].numel() * state[key].element_size() for key in keys)
    write_json(folder / "pytorch_model.bin.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def write_clip_tokenizer(folder: Path, corpus: Iterable[str], merges: int) -> None:
    """tokenizer/{vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json} (CLIP BPE).

    The vocabulary has CLIP's structure: the 256 byte symbols, the same with the end-of-word mark `</w>`,
    the merges learned here from the corpus, then <|startoftext|> and <|endoftext|>.
    """
    symbols = _byte_symbols()
    vocab = symbols + [symbol + "</w>" for symbol in symbols]
    learned = _learn_bpe_merges(corpus, count=merges)
    vocab += ["".join(pair) for pair in learned]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    ids = {token: index for index, token in enumerate(vocab)}
    (folder / "vocab.json").write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in learned), encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    write_json(folder / "special_tokens_map.json", special)
    write_json(
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


def write_clip_text_encoder(folder: Path, vocab_size: int, *, hidden_size: int, seed: int, layers: int = 2) -> None:
    """text_encoder/{config.json, pytorch_model.bin}: a small CLIPTextModel (single fp32 pickle, as sr2's)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=hidden_size,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    torch.manual_seed(seed)
    model = CLIPTextModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    config.architectures = ["CLIPTextModel"]
    config.save_pretrained(folder)
    # The hub checkpoint names its tensors `text_model.*`, which transformers before 5 requires (5 reads both).
    save_pickle({f"text_model.{key}": value for key, value in model.state_dict().items()}, folder / "pytorch_model.bin")


def write_pixel_repository_parts(folder: Path, component: str, spiece_model: bytes, *, t5_dim: int, seed: int, text: bool = True) -> None:
    """Everything of a pixel component (show-1-base, -interpolation, -sr1) but its unet/; with `text`, its T5 too."""
    write_json(folder / "model_index.json", hub_config(f"model_index-{component}.json"))
    # show-1-interpolation's and (INFERRED) show-1-sr1's sampling scheduler are taken as the base one.
    write_json(folder / "scheduler" / "scheduler_config.json", hub_config("scheduler-show-1-base.json"))
    if component == "show-1-sr1":
        write_json(folder / "image_noising_scheduler" / "scheduler_config.json", IMAGE_NOISING_SCHEDULER)
    write_json(folder / "feature_extractor" / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    if text:
        write_t5_tokenizer(folder / "tokenizer", spiece_model)
        write_t5_encoder(folder / "text_encoder", t5_vocab_size(spiece_model), d_model=t5_dim, seed=seed)


def write_sr2_repository_parts(folder: Path, corpus: Sequence[str], *, clip_dim: int, merges: int, seed: int) -> None:
    """Everything of show-1-sr2 but its unet/ and vae/: model index, scheduler, CLIP tokenizer and text model."""
    write_json(folder / "model_index.json", hub_config("model_index-show-1-sr2.json"))
    write_json(folder / "scheduler" / "scheduler_config.json", hub_config("scheduler-show-1-sr2.json"))
    write_clip_tokenizer(folder / "tokenizer", corpus, merges)
    vocab_size = len(read_json(folder / "tokenizer" / "vocab.json"))
    write_clip_text_encoder(folder / "text_encoder", vocab_size, hidden_size=clip_dim, seed=seed)
