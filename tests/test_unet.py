"""The Show-1 UNet: parameter layout of the original, its numbers, loading, training hooks."""

from __future__ import annotations

import inspect
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers.models.attention_processor import AttnAddedKVProcessor, AttnProcessor
from safetensors.torch import load_file

from show1_cli.errors import WeightsError
from show1_cli.models import (
    UNet3DConditionModel,
    check_state_dict,
    load_unet,
    temporal_attention_parameters,
)
from show1_cli.models.unet_3d_blocks import FramewiseConv3d

DATA = Path(__file__).parent / "data"
MANIFESTS = DATA / "unet" / "manifests"
F_SMALL = DATA / "unet" / "fixtures" / "f_small"
REAL_CONFIGS = Path(__file__).resolve().parents[1] / "show1_cli" / "hub_configs"
MANIFEST_NAMES = sorted(path.name for path in MANIFESTS.iterdir() if (path / "parameters.json").is_file())

# Parameter counts of the four showlab UNets (REFERENCE.md section 2; they match the published file sizes).
REAL_PARAMETER_COUNTS = {
    "base": 1_726_848_390,
    "interpolation": 1_726_859_910,  # base with 7 input channels: + 4 * 320 * 3 * 3
    "sr1": 796_343_046,
    "sr2": 1_411_233_860,
}


def manifest_config(name: str) -> dict:
    return json.loads((MANIFESTS / name / "config.json").read_text())


def build(config: dict, seed: int = 0) -> UNet3DConditionModel:
    torch.manual_seed(seed)
    return UNet3DConditionModel.from_config(config).eval()


def inputs_for(model: UNet3DConditionModel, *, batch=1, frames=2, height=16, width=16, tokens=5, seed=1) -> dict:
    """Small random inputs matching `model`'s config."""
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    text_dim = config.encoder_hid_dim or config.cross_attention_dim
    inputs = {
        "sample": torch.randn(batch, config.in_channels, frames, height, width, generator=generator),
        "timestep": torch.randint(0, 1000, (batch,), generator=generator),
        "encoder_hidden_states": torch.randn(batch, tokens, text_dim, generator=generator),
    }
    if config.class_embed_type == "timestep":
        inputs["class_labels"] = torch.full((batch,), 250)
    return inputs


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter non-trivial values (zero-initialized layers would hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


@pytest.fixture(scope="module")
def f_small() -> UNet3DConditionModel:
    return load_unet(F_SMALL)


@pytest.fixture(scope="module")
def f_small_io() -> dict[str, torch.Tensor]:
    return load_file(F_SMALL / "io.safetensors")


# --------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("name", MANIFEST_NAMES)
def test_parameters_match_the_original_manifest(name):
    expected = json.loads((MANIFESTS / name / "parameters.json").read_text())
    with init_empty_weights():
        model = UNet3DConditionModel.from_config(manifest_config(name))
    built = {key: list(tensor.shape) for key, tensor in model.state_dict().items()}

    assert sorted(expected.keys() - built.keys()) == [], "missing parameters"
    assert sorted(built.keys() - expected.keys()) == [], "unexpected parameters"
    assert {key: built[key] for key in expected} == expected


def test_manifests_cover_every_block_type():
    used = set()
    for name in MANIFEST_NAMES:
        config = manifest_config(name)
        used |= set(config["down_block_types"]) | set(config["up_block_types"]) | {config["mid_block_type"]}
    assert used == {
        "ResnetDownsampleBlock3D",
        "SimpleCrossAttnDownBlock3D",
        "CrossAttnDownBlock3D",
        "DownBlock3D",
        "UNetMidBlock3DSimpleCrossAttn",
        "UNetMidBlock3DCrossAttn",
        "SimpleCrossAttnUpBlock3D",
        "CrossAttnUpBlock3D",
        "UpBlock3D",
        "ResnetUpsampleBlock3D",
    }


@pytest.mark.parametrize("name", sorted(REAL_PARAMETER_COUNTS))
def test_real_configs_build_on_meta_with_the_published_size(name):
    config = json.loads((REAL_CONFIGS / f"unet-show-1-{name}.json").read_text())
    with init_empty_weights():
        model = UNet3DConditionModel.from_config(config)
    assert all(param.is_meta for param in model.parameters())
    assert sum(param.numel() for param in model.parameters()) == REAL_PARAMETER_COUNTS[name]
    # every key of the showlab config is a constructor argument, the misspelled one as it is spelled there
    accepted = set(inspect.signature(UNet3DConditionModel.__init__).parameters)
    assert sorted(set(config) - {"_class_name", "_diffusers_version"} - accepted) == []
    assert model.config.transfromer_in_opt == config["transfromer_in_opt"]
    assert (model.transformer_in is not None) == config["transfromer_in_opt"]


def test_unknown_block_type_is_reported():
    config = dict(manifest_config("f_small"), down_block_types=["ResnetDownsampleBlock3D", "AttnDownBlock3D"])
    with pytest.raises(ValueError, match="Unknown down block type 'AttnDownBlock3D'"):
        UNet3DConditionModel.from_config(config)


# --------------------------------------------------------------------------------- numbers


def test_f_small_reproduces_the_original_output(f_small, f_small_io):
    assert f_small_io["sample"].shape[0] == 2  # the fixture is a batch of two videos
    with torch.no_grad():
        output = f_small(f_small_io["sample"], f_small_io["timestep"], f_small_io["encoder_hidden_states"]).sample
    assert output.shape == f_small_io["output"].shape
    torch.testing.assert_close(output, f_small_io["output"], atol=1e-4, rtol=0)


def test_f_small_through_diffusers_from_pretrained(f_small_io):
    model = UNet3DConditionModel.from_pretrained(F_SMALL, subfolder="unet").eval()
    with torch.no_grad():
        output = model(f_small_io["sample"], f_small_io["timestep"], f_small_io["encoder_hidden_states"]).sample
    torch.testing.assert_close(output, f_small_io["output"], atol=1e-4, rtol=0)


def test_videos_of_a_batch_are_independent(f_small, f_small_io):
    with torch.no_grad():
        second = f_small(f_small_io["sample"][1:], f_small_io["timestep"][1:], f_small_io["encoder_hidden_states"][1:]).sample
    torch.testing.assert_close(second[0], f_small_io["output"][1], atol=1e-4, rtol=0)


def test_timestep_as_number_scalar_tensor_or_batch(f_small):
    inputs = inputs_for(f_small, batch=2, height=8, width=8)
    del inputs["timestep"]
    with torch.no_grad():
        as_int = f_small(**inputs, timestep=500).sample
        as_scalar = f_small(**inputs, timestep=torch.tensor(500)).sample
        as_batch = f_small(**inputs, timestep=torch.tensor([500, 500])).sample
    torch.testing.assert_close(as_int, as_scalar, atol=0, rtol=0)
    torch.testing.assert_close(as_int, as_batch, atol=0, rtol=0)


@pytest.mark.parametrize("name", MANIFEST_NAMES)
def test_forward_shape_for_each_small_config(name):
    model = build(manifest_config(name))
    inputs = inputs_for(model, batch=2, frames=2)
    with torch.no_grad():
        output = model(**inputs)
    assert isinstance(output.sample, torch.Tensor)
    assert output.sample.shape == (2, model.config.out_channels, 2, 16, 16)
    assert torch.isfinite(output.sample).all()
    with torch.no_grad():
        (as_tuple,) = model(**inputs, return_dict=False)
    torch.testing.assert_close(as_tuple, output.sample)


def test_a_single_frame_works(f_small):
    inputs = inputs_for(f_small, batch=2, frames=1, height=8, width=8)
    with torch.no_grad():
        output = f_small(**inputs).sample
    assert output.shape == (2, 6, 1, 8, 8)
    assert torch.isfinite(output).all()


def test_noise_level_is_required_and_used_by_the_sr_model():
    model = build(manifest_config("c_sr"))
    randomize_(model)
    inputs = inputs_for(model, height=8, width=8)
    noise_level = inputs.pop("class_labels")
    with pytest.raises(ValueError, match="class_labels"):
        model(**inputs)
    with torch.no_grad():
        at_250 = model(**inputs, class_labels=noise_level).sample
        at_250_int = model(**inputs, class_labels=250).sample
        at_0 = model(**inputs, class_labels=0).sample
    torch.testing.assert_close(at_250, at_250_int, atol=0, rtol=0)
    assert not torch.allclose(at_250, at_0)


def test_if_style_unet_rejects_sizes_its_resnet_upsamplers_cannot_produce(f_small):
    inputs = inputs_for(f_small, height=15, width=16)
    with pytest.raises(ValueError, match="multiples of 2"):
        f_small(**inputs)


def test_modelscope_style_unet_forwards_odd_sizes():
    model = build(manifest_config("e_crossattn"))
    inputs = inputs_for(model, height=18, width=14)
    with torch.no_grad():
        output = model(**inputs).sample
    assert output.shape == (1, 4, 2, 18, 14)


def test_attention_processors_can_be_swapped(f_small, f_small_io):
    processors = f_small.attn_processors
    assert any("AddedKV" in type(p).__name__ for p in processors.values())
    assert all("2_0" in type(p).__name__ for p in processors.values())  # PyTorch SDPA by default
    try:
        f_small.set_default_attn_processor()
        assert all(type(p) in (AttnAddedKVProcessor, AttnProcessor) for p in f_small.attn_processors.values())
        with torch.no_grad():
            output = f_small(f_small_io["sample"], f_small_io["timestep"], f_small_io["encoder_hidden_states"]).sample
        torch.testing.assert_close(output, f_small_io["output"], atol=1e-4, rtol=0)
    finally:
        f_small.set_attn_processor(dict(processors))  # (it consumes the dict it is given)
    assert f_small.attn_processors.keys() == processors.keys()


# --------------------------------------------------------------------------------- saving and loading


def _same_outputs(first, second, inputs):
    with torch.no_grad():
        torch.testing.assert_close(first(**inputs).sample, second(**inputs).sample, atol=0, rtol=0)


def test_safetensors_round_trip(tmp_path, f_small):
    f_small.save_pretrained(tmp_path / "model" / "unet")
    assert (tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    inputs = inputs_for(f_small, batch=2, height=8, width=8)

    _same_outputs(f_small, load_unet(tmp_path / "model"), inputs)
    reloaded = UNet3DConditionModel.from_pretrained(tmp_path / "model", subfolder="unet").eval()
    _same_outputs(f_small, reloaded, inputs)


def test_fp16_pickle_round_trip(tmp_path, f_small):
    """The showlab layout: config.json + an fp16 `diffusion_pytorch_model.bin`, no safetensors."""
    folder = tmp_path / "model" / "unet"
    folder.mkdir(parents=True)
    shutil.copy(F_SMALL / "unet" / "config.json", folder / "config.json")
    torch.save({k: v.half() for k, v in f_small.state_dict().items()}, folder / "diffusion_pytorch_model.bin")

    loaded = load_unet(tmp_path / "model", torch_dtype=torch.float32)
    assert all(param.dtype == torch.float32 for param in loaded.parameters())
    rounded = load_unet(F_SMALL)
    with torch.no_grad():
        for param in rounded.parameters():
            param.copy_(param.half().float())
    _same_outputs(rounded, loaded, inputs_for(f_small, batch=2, height=8, width=8))

    as_half = load_unet(tmp_path / "model", torch_dtype=torch.float16)
    assert all(param.dtype == torch.float16 for param in as_half.parameters())
    assert not as_half.training


def test_safetensors_preferred_over_the_pickle(tmp_path):
    folder = tmp_path / "unet"
    shutil.copytree(F_SMALL / "unet", folder)
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not a checkpoint")
    load_unet(tmp_path)  # reads the safetensors, never the broken pickle


def _folder_with_state_dict(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "unet"
    folder.mkdir()
    shutil.copy(F_SMALL / "unet" / "config.json", folder / "config.json")
    state_dict = load_file(F_SMALL / "unet" / "diffusion_pytorch_model.safetensors")
    edit(state_dict)
    torch.save(state_dict, folder / "diffusion_pytorch_model.bin")
    return folder


def test_missing_key_is_named(tmp_path):
    folder = _folder_with_state_dict(tmp_path, lambda sd: sd.pop("mid_block.temp_convs.1.conv4.3.weight"))
    with pytest.raises(WeightsError) as error:
        load_unet(tmp_path)
    message = str(error.value)
    assert "1 missing key(s): mid_block.temp_convs.1.conv4.3.weight" in message
    assert str(folder / "diffusion_pytorch_model.bin") in message
    assert error.value.fix


def test_unexpected_and_mismatched_keys_are_named(tmp_path):
    def edit(state_dict):
        state_dict["down_blocks.1.temp_attentions.0.pos_embed"] = torch.zeros(3)
        state_dict["conv_in.weight"] = torch.zeros(32, 4, 3, 3)

    _folder_with_state_dict(tmp_path, edit)
    with pytest.raises(WeightsError) as error:
        load_unet(tmp_path)
    message = str(error.value)
    assert "unexpected key(s): down_blocks.1.temp_attentions.0.pos_embed" in message
    assert "conv_in.weight (file [32, 4, 3, 3], model [32, 3, 3, 3])" in message


def test_config_that_does_not_match_the_weights(tmp_path):
    folder = tmp_path / "unet"
    shutil.copytree(F_SMALL / "unet", folder)
    config = json.loads((folder / "config.json").read_text())
    config["layers_per_block"] = 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"missing key\(s\): down_blocks\.0\.resnets\.1\."):
        load_unet(tmp_path)


def test_check_state_dict_lists_only_the_first_keys():
    with init_empty_weights():
        model = UNet3DConditionModel.from_config(manifest_config("f_small"))
    with pytest.raises(WeightsError, match=r"431 missing key\(s\): .* and 426 more"):
        check_state_dict(model, {}, source="empty.bin")


class _NotATensor:
    pass


def test_pickled_code_is_never_executed(tmp_path):
    folder = tmp_path / "unet"
    folder.mkdir()
    shutil.copy(F_SMALL / "unet" / "config.json", folder / "config.json")
    torch.save({"conv_in.weight": _NotATensor()}, folder / "diffusion_pytorch_model.bin")
    with pytest.raises(WeightsError, match="refusing"):
        load_unet(tmp_path)


def test_missing_files_and_foreign_configs(tmp_path):
    with pytest.raises(WeightsError, match="No UNet config"):
        load_unet(tmp_path)
    folder = tmp_path / "unet"
    folder.mkdir()
    shutil.copy(F_SMALL / "unet" / "config.json", folder / "config.json")
    with pytest.raises(WeightsError, match="No UNet weights"):
        load_unet(tmp_path)
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(WeightsError, match="UNet2DConditionModel"):
        load_unet(tmp_path)


# --------------------------------------------------------------------------------- training


def _gradients(model, inputs) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(**inputs).sample.square().mean().backward()
    return {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients():
    model = load_unet(F_SMALL)  # eval mode: no dropout, so both passes compute the same function
    inputs = inputs_for(model, frames=2, height=8, width=8, tokens=3)
    plain = _gradients(model, inputs)

    calls = []

    def counting_checkpoint(function, *args):
        calls.append(function)
        return torch.utils.checkpoint.checkpoint(function, *args, use_reentrant=False)

    model.enable_gradient_checkpointing(counting_checkpoint)
    assert model.is_gradient_checkpointing
    checkpointed = _gradients(model, inputs)
    assert len(calls) == 8  # one per block layer: 1 + 1 down, 2 mid, 2 + 2 up
    assert plain.keys() == checkpointed.keys() and len(plain) == len(list(model.parameters()))
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)

    model.disable_gradient_checkpointing()
    calls.clear()
    _gradients(model, inputs)
    assert calls == []


def test_trainable_parameter_sets():
    with init_empty_weights():
        model = UNet3DConditionModel.from_config(manifest_config("d_transformer_in"))
    names = {which: set(temporal_attention_parameters(model, which)) for which in ("qkv", "attention", "temporal")}

    temporal_attentions = len({re.match(r".*temp_attentions\.\d+", n).group() for n in names["attention"]})
    assert temporal_attentions == 4  # down 1 + mid 1 + up 2
    assert len(names["qkv"]) == temporal_attentions * 2 * 3  # attn1 and attn2, to_q/to_k/to_v weights
    assert all(n.rsplit(".", 2)[-2] in ("to_q", "to_k", "to_v") and ".temp_attentions." in n for n in names["qkv"])
    assert names["qkv"] < names["attention"] < names["temporal"]
    assert any(n.startswith("transformer_in.") for n in names["temporal"])
    assert any(".temp_convs." in n for n in names["temporal"])
    assert not any(n.startswith("transformer_in.") or ".temp_convs." in n for n in names["attention"])
    with pytest.raises(ValueError, match="qkv"):
        temporal_attention_parameters(model, "everything")




def test_framewise_conv_computes_what_conv3d_computes():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(6, 5, (3, 1, 1), padding=(1, 0, 0))
    framewise = FramewiseConv3d.taking_over(conv)
    assert framewise.weight is conv.weight and framewise.bias is conv.bias
    video = torch.randn(2, 6, 4, 3, 5, requires_grad=True)
    expected = conv(video)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), video)
    got = framewise(video)
    (got_grad,) = torch.autograd.grad(got.square().sum(), video)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got_grad, expected_grad, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="frames-only"):
        FramewiseConv3d.taking_over(torch.nn.Conv3d(6, 5, 3, padding=1))


def test_temporal_convs_run_framewise_and_keep_the_zero_initialised_last_conv(f_small):
    layer = f_small.down_blocks[0].temp_convs[0]
    assert all(isinstance(block[-1], FramewiseConv3d) for block in (layer.conv1, layer.conv2, layer.conv3, layer.conv4))
    fresh = UNet3DConditionModel.from_config(f_small.config).down_blocks[0].temp_convs[0]
    assert not fresh.conv4[-1].weight.any() and not fresh.conv4[-1].bias.any()
