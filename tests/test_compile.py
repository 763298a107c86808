"""`--compile`: the UNets' blocks under torch.compile give the eager result, compile once per shape, work under
model offload, and the option reaches the stages from the command line.

Compiling every block of a tiny UNet takes minutes on one CPU thread (inductor builds C++ for each kernel), so
the runs compile one block, the path every block takes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from show1_cli import runtime as runtime_module
from show1_cli.errors import InputError
from show1_cli.models import load_unet
from show1_cli.runtime import ModelStore, Runtime, compile_blocks, resolve_runtime, unet_blocks
from show1_cli.stages.keyframes import generate_keyframes
from show1_cli.stages.sampling import load_scheduler
from show1_cli.video import read_video
from tests.conftest import run_cli
from tests.tiny_checkpoints import T5_DIM

KEY = "show-1-base/unet"


@pytest.fixture(scope="module")
def base(tiny_weights: Path) -> Path:
    return tiny_weights / "show-1-base"


def keyframes(unet: torch.nn.Module, base: Path) -> torch.Tensor:
    """Two guided steps of the keyframes stage: two UNet calls on (2, 3, 2, 16, 32)."""
    texts = torch.randn(2, 1, 77, T5_DIM, generator=torch.Generator().manual_seed(1))
    return generate_keyframes(unet, load_scheduler(base), prompt_embeds=texts[0], negative_embeds=texts[1], frames=2, height=16,
                              width=32, steps=2, guidance_scale=9.0, generator=torch.Generator().manual_seed(0))


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.fixture(scope="module")
def eager(base: Path) -> torch.Tensor:
    return keyframes(load_unet(base), base)


# The first of two DPM-Solver++ steps divides the guided noise prediction (x19 the UNet's rounding at guidance 9) by
# alpha(995) = 0.006: the UNet's 1e-6 float differences reach about 1e-3 in the frames.
FRAMES_TOLERANCE = 5e-3


def test_a_compiled_block_gives_the_eager_result_and_compiles_once(base: Path, eager: torch.Tensor) -> None:
    unet = load_unet(base)
    generator = torch.Generator().manual_seed(2)
    sample, states = torch.randn(2, 3, 2, 16, 32, generator=generator), torch.randn(2, 77, T5_DIM, generator=generator)
    with torch.no_grad():
        expected = unet(sample, 995, encoder_hidden_states=states).sample
        before = graphs()
        compile_blocks([unet.down_blocks[0]])
        torch.testing.assert_close(unet(sample, 995, encoder_hidden_states=states).sample, expected, rtol=1e-5, atol=1e-5)
    compiled = keyframes(unet, base)
    assert graphs() - before == 1  # both steps, same shapes, reused the graph of the first call
    torch.testing.assert_close(compiled, eager, rtol=0, atol=FRAMES_TOLERANCE)
    with torch.compiler.set_stance("fail_on_recompile"):  # a second run of the stage compiles nothing either
        torch.testing.assert_close(keyframes(unet, base), compiled, rtol=0, atol=0)


class Scale(torch.nn.Module):
    """A block in miniature: one forward shared by every instance, a weight of each instance's own size."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def test_more_blocks_of_one_kind_than_the_recompile_limit_all_compile() -> None:
    blocks = [Scale(channels) for channels in range(1, torch._dynamo.config.recompile_limit + 3)]  # the chain's UNets: 17 down blocks
    compile_blocks(blocks)
    before = graphs()
    with torch.no_grad():
        for block in blocks:
            block(torch.ones(len(block.weight)))
    assert graphs() - before == len(blocks)  # none fell back to eager


def test_a_compiled_block_works_under_the_model_offload_hook(base: Path, eager: torch.Tensor,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "unet_blocks", lambda model: [model.down_blocks[0]])
    store = ModelStore(Runtime(torch.device("cpu"), torch.float32, "model", compile=True))
    unet = store.get(KEY, lambda: load_unet(base), unet=True)
    assert KEY in store._hooks and unet.down_blocks[0]._compiled_call_impl is not None
    torch.testing.assert_close(keyframes(unet, base), eager, rtol=0, atol=FRAMES_TOLERANCE)


def test_the_store_compiles_every_block_of_a_unet_and_nothing_else(base: Path) -> None:
    store = ModelStore(resolve_runtime("cpu", "fp32", "none", compile=True))
    unet = store.get(KEY, lambda: load_unet(base), unet=True)
    other = store.get("show-1-interpolation/unet", lambda: load_unet(base))
    blocks = unet_blocks(unet)
    assert len(blocks) == len(unet.down_blocks) + 1 + len(unet.up_blocks)
    assert all(block._compiled_call_impl is not None for block in blocks)  # compiled lazily, at their first call
    assert all(block._compiled_call_impl is None for block in unet_blocks(other))
    assert unet.state_dict().keys() == other.state_dict().keys()  # the checkpoint's names are unchanged


def test_compile_with_sequential_offload_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--offload sequential"):
        resolve_runtime("cpu", "fp32", "sequential", compile=True)
    result = run_cli("generate", "a cat", "-o", tmp_path / "cat.mp4", "--compile", "--offload", "sequential", "--dry-run")
    assert result.exit_code == 2 and "--compile cannot" in result.output and "--offload auto, model or none" in result.output


def test_compile_on_a_torch_without_isolated_recompiles_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda model=None, *, dynamic=None: model)
    with pytest.raises(InputError, match="install torch 2.13 or newer"):
        resolve_runtime("cpu", "fp32", "none", compile=True)


def test_dry_run_says_which_stages_compile(tmp_path: Path) -> None:
    result = run_cli("generate", "a cat", "-o", tmp_path / "cat.mp4", "--device", "cpu", "--compile", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "compiled: the UNet blocks of keyframes, interpolate, sr1, sr2" in result.output
    plain = run_cli("generate", "a cat", "-o", tmp_path / "cat.mp4", "--device", "cpu", "--dry-run")
    assert "compiled" not in plain.output


@pytest.mark.parametrize("flag", [[], ["--compile"]], ids=["eager", "compile"])
def test_the_option_reaches_the_stage_and_the_record(flag: list[str], tiny_weights: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[torch.nn.Module] = []
    monkeypatch.setattr(runtime_module, "compile_blocks", compiled.extend)  # what would be compiled, without the minutes
    out = tmp_path / "keys.mp4"
    result = run_cli("generate", "a cat", "-o", out, "--stages", "keyframes", "--set", "keyframes.steps=1", "--frames", 2,
                     "--width", 32, "--height", 16, *flag)
    assert result.exit_code == 0, result.output
    assert read_video(out).metadata["compile"] is bool(flag)
    assert len(compiled) == (9 if flag else 0)  # the tiny base UNet's 4 down, 1 mid and 4 up blocks
    assert ("offload none, UNet blocks compiled" in run_cli("info", out).output) is bool(flag)
