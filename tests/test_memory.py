"""The memory planner (show1_cli/memory.py): its parameter counts against the real configs, and its decisions."""

from __future__ import annotations

import pytest
import torch

from show1_cli.errors import InputError
from show1_cli.memory import HEADROOM, PARAMETERS, GiB, parse_size, plan_stages, stage_use
from show1_cli.models import UNet3DConditionModel
from show1_cli.presets import load_preset
from show1_cli.training.scaffold import hub_config, t5_xxl_config

CHAIN = ("text", "keyframes", "interpolate", "sr1", "sr2")
SPEED = {"none": 0, "model": 1, "sequential": 2}  # fastest first
FP16 = 2


def counts(model: torch.nn.Module) -> tuple[int, int]:
    total = sum(parameter.numel() for parameter in model.parameters())
    layer = max(sum(parameter.numel() for parameter in module.parameters(recurse=False)) for module in model.modules())
    return total, layer


@pytest.mark.parametrize("component", ["show-1-base", "show-1-interpolation", "show-1-sr1", "show-1-sr2"])
def test_unet_parameter_counts_are_those_of_the_real_configs(component):
    with torch.device("meta"):
        model = UNet3DConditionModel.from_config(hub_config(f"unet-{component}.json"))
    assert PARAMETERS[f"{component}/unet"] == counts(model)


def test_text_encoder_parameter_count_is_that_of_t5_xxl():
    from transformers import T5EncoderModel

    with torch.device("meta"):
        assert PARAMETERS["show-1-base/text_encoder"] == counts(T5EncoderModel(t5_xxl_config()))


def plan(budget_gib: float | None, **kwargs):
    budget = None if budget_gib is None else int(budget_gib * GiB)
    return plan_stages(CHAIN, load_preset("default"), dtype_bytes=FP16, budget_bytes=budget, **kwargs)


def test_on_the_cpu_every_stage_runs_without_offload():
    result = plan(None)
    assert [stage.offload for stage in result.stages] == ["none"] * len(CHAIN)
    assert result.lines() == ["memory plan: on the CPU, nothing to offload (every stage: none)"]


def test_a_large_gpu_keeps_every_model_on_it_and_peaks_stay_under_10_gib():
    result = plan(80)
    assert {stage.offload for stage in result.stages} == {"none"} and all(stage.fits for stage in result.stages)
    assert max(stage.peak_bytes for stage in result.stages) < 10 * GiB


def test_8gb_offloads_only_the_text_encoder_whose_weights_alone_do_not_fit():
    result = plan(8)
    assert PARAMETERS["show-1-base/text_encoder"][0] * FP16 > 8 * GiB
    assert result.offload("text") == "sequential"  # 9.5 GB of weights: one model, so "model" cannot help
    assert [result.offload(stage) for stage in CHAIN[1:]] == ["none"] * 4
    assert all(stage.fits for stage in result.stages)


@pytest.mark.parametrize("budget", [1, 2, 3, 4, 6, 8, 12, 16, 24, 80])
def test_every_chosen_mode_fits_and_no_faster_mode_would(budget):
    preset = load_preset("default")
    for stage in plan(budget).stages:
        assert stage.peak_bytes * HEADROOM <= budget * GiB or (stage.offload == "sequential" and not stage.fits)
        shape = dict(frames=29 if stage.stage in ("sr1", "sr2") else 8, height=40, width=64)
        use = stage_use(preset, stage.stage, FP16, **shape)
        faster = [mode for mode, speed in SPEED.items() if speed < SPEED[stage.offload]]
        assert all(use.peak(mode, FP16) * HEADROOM > budget * GiB for mode in faster), stage


def test_less_memory_never_gives_a_faster_plan():
    plans = [plan(budget) for budget in (80, 16, 8, 4, 2, 1)]
    for larger, smaller in zip(plans, plans[1:], strict=False):
        for big, small in zip(larger.stages, smaller.stages, strict=True):
            assert SPEED[small.offload] >= SPEED[big.offload]


def test_a_fixed_mode_is_used_for_every_stage_and_says_when_it_may_not_fit():
    result = plan(4, offload="none")
    assert {stage.offload for stage in result.stages} == {"none"}
    assert not result.stages[0].fits and "may not fit" in result.lines()[1]


def test_sr2_decodes_in_tiles_only_when_short_of_memory():
    assert not plan(80).vae_tiling()
    tight = plan(1)
    assert tight.offload("sr2") == "sequential" and tight.vae_tiling()


def test_compile_applies_to_the_unet_stages_that_do_not_stream_weights():
    tight = plan(1, compile=True)
    assert {stage.offload for stage in tight.stages} == {"sequential"}
    assert not any(tight.compiled(stage) for stage in CHAIN) and "not compiled (sequential offload)" in tight.lines()[2]
    roomy = plan(80, compile=True)
    assert [roomy.compiled(stage) for stage in CHAIN] == [False, True, True, True, True]  # not the text encoder
    assert "UNet blocks compiled" in roomy.lines()[2] and "compiled" not in roomy.lines()[1]
    assert not any(plan(80).compiled(stage) for stage in CHAIN)


def test_the_first_frame_model_and_fewer_windows_per_call_change_the_predictions():
    base = plan(80)
    with_if = plan(80, first_frame=True)
    sr1 = CHAIN.index("sr1")
    assert with_if.stages[sr1].peak_bytes - base.stages[sr1].peak_bytes >= PARAMETERS["IF-II-L-v1.0/unet"][0] * FP16
    one_window = plan(80, windows_per_call=1)
    interpolate = CHAIN.index("interpolate")
    assert one_window.stages[interpolate].peak_bytes < base.stages[interpolate].peak_bytes


def test_an_input_video_sets_the_shapes_of_the_first_stage():
    preset = load_preset("default")
    small = plan_stages(("sr1",), preset, dtype_bytes=FP16, budget_bytes=80 * GiB, input_shape=(8, 40, 64))
    short = plan_stages(("sr1",), preset, dtype_bytes=FP16, budget_bytes=80 * GiB, input_shape=(2, 40, 64))
    assert short.stages[0].peak_bytes < small.stages[0].peak_bytes  # a 2-frame video fills a quarter of sr1's window


@pytest.mark.parametrize(("text", "size"), [("8GB", 8 * GiB), ("7.5GiB", int(7.5 * GiB)), ("512M", 512 * 1024**2), ("1024", 1024)])
def test_parse_size(text, size):
    assert parse_size(text) == size


def test_parse_size_refuses_what_is_not_a_size():
    with pytest.raises(InputError, match="8GB"):
        parse_size("lots")
