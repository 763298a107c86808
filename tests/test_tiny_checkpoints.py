"""The tiny-checkpoint factory writes the hub layouts that show1 resolves and loads like the real weights."""

from __future__ import annotations

import json
from pathlib import Path

from show1_cli.weights import COMPONENTS, load_lock, resolve_component
from tests.tiny_checkpoints import ALL, CONFIGS, tiny_unet_config


def test_every_locked_file_of_every_component_is_written(tiny_weights: Path) -> None:
    assert set(ALL) == set(COMPONENTS)
    lock = load_lock(tiny_weights / "weights.lock")
    for name in COMPONENTS:
        assert resolve_component(name, tiny_weights, lock=lock) == tiny_weights / name  # sizes and hashes checked
        for locked in lock[name].files:
            assert any((tiny_weights / name / path).is_file() for path in locked.candidates), (name, locked.path)


def test_model_indexes_and_schedulers_are_the_real_ones(tiny_weights: Path) -> None:
    for name in ("show-1-base", "show-1-interpolation", "show-1-sr1", "show-1-sr2"):
        written = json.loads((tiny_weights / name / "model_index.json").read_text())
        assert written == json.loads((CONFIGS / f"model_index-{name}.json").read_text())
    assert json.loads((tiny_weights / "show-1-sr2/scheduler/scheduler_config.json").read_text()) == json.loads(
        (CONFIGS / "scheduler-show-1-sr2.json").read_text()
    )


def test_tiny_unets_keep_the_real_block_structure(tiny_weights: Path) -> None:
    for name in ("show-1-base", "show-1-interpolation", "show-1-sr1", "show-1-sr2"):
        real = json.loads((CONFIGS / f"unet-{name}.json").read_text())
        tiny = json.loads((tiny_weights / name / "unet" / "config.json").read_text())
        assert tiny == tiny_unet_config(name)
        for key in ("_class_name", "down_block_types", "up_block_types", "mid_block_type", "in_channels", "out_channels",
                    "class_embed_type", "addition_embed_type", "transfromer_in_opt", "resnet_time_scale_shift"):
            assert tiny[key] == real[key], (name, key)


def test_text_encoder_is_sharded_like_the_hub(tiny_weights: Path) -> None:
    folder = tiny_weights / "show-1-base" / "text_encoder"
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    assert set(index["weight_map"].values()) == {"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"}
    assert (tiny_weights / "show-1-base" / "tokenizer" / "spiece.model").is_file()


def test_clip_text_encoder_names_its_tensors_like_the_hub(tiny_weights: Path) -> None:
    """sr2's CLIP pickle uses the hub's `text_model.*` names: transformers before 5 (the official script's 4.29)
    loads nothing else, and would silently start the encoder from random weights."""
    import torch
    from transformers import CLIPTextModel

    folder = tiny_weights / "show-1-sr2" / "text_encoder"
    stored = torch.load(folder / "pytorch_model.bin", weights_only=True)
    loaded = CLIPTextModel.from_pretrained(folder).state_dict()
    assert set(stored) == {f"text_model.{key}" for key in loaded}
    assert all(torch.equal(value, stored[f"text_model.{key}"]) for key, value in loaded.items())
