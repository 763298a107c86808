"""Stage 2 (interpolation): conditioning, batched windows, assembly, and `show1 interpolate`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from show1_cli import text
from show1_cli.models import load_unet
from show1_cli.runtime import ModelStore, resolve_runtime
from show1_cli.stages.interpolate import denoise_windows, interpolate_video, output_frames, window_conditions
from show1_cli.stages.sampling import load_scheduler
from show1_cli.video import read_video, write_video
from tests.conftest import run_cli

PROMPT = "a bird flies over snowy mountains"


@pytest.fixture(scope="module")
def component(tiny_weights: Path) -> Path:
    return tiny_weights / "show-1-interpolation"


@pytest.fixture(scope="module")
def embeddings(tiny_weights: Path) -> dict[str, torch.Tensor]:
    store = ModelStore(resolve_runtime("cpu", "fp32", "none"))
    return text.encode_texts([PROMPT, ""], store, tiny_weights / "show-1-base")


@pytest.fixture(scope="module")
def keyframes_file(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-frame 32x16 video written losslessly by `show1 generate --stages keyframes`."""
    path = tmp_path_factory.mktemp("interp") / "keys.mp4"
    result = run_cli("generate", PROMPT, "-o", path, "--stages", "keyframes", "--seed", 11, "--lossless",
                     "--set", "keyframes.steps=1", "--set", "keyframes.height=16", "--set", "keyframes.width=32")
    assert result.exit_code == 0, result.output
    return path


def random_video(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(frames, 3, 16, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def interpolate(component: Path, embeddings, video: torch.Tensor, **kwargs) -> torch.Tensor:
    kwargs.setdefault("steps", 2)
    kwargs.setdefault("guidance_scale", 4.0)
    return interpolate_video(load_unet(component), load_scheduler(component), video, prompt_embeds=embeddings[PROMPT],
                             negative_embeds=embeddings[""], generator=torch.Generator().manual_seed(3), **kwargs)


def test_window_condition_is_linear_in_time_with_endpoint_mask() -> None:
    video = random_video(3)
    conditions = window_conditions(video)
    assert conditions.shape == (2, 4, 5, 16, 32)
    for pair in range(2):
        a, b = video[pair], video[pair + 1]
        for k in range(5):
            torch.testing.assert_close(conditions[pair, :3, k], a + (b - a) * k / 4)
    assert conditions[:, 3, [0, 4]].eq(1).all() and conditions[:, 3, 1:4].eq(0).all()


def test_batched_windows_equal_one_window_at_a_time(component: Path, embeddings) -> None:
    """All windows in one UNet batch give the result of the original's loop (same noise per window,
    later windows overwrite the shared endpoint), to float tolerance."""
    video = random_video(4)
    unet, scheduler = load_unet(component), load_scheduler(component)
    calls: list[int] = []
    unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    batched = interpolate_video(unet, scheduler, video, prompt_embeds=embeddings[PROMPT], negative_embeds=embeddings[""],
                                steps=2, guidance_scale=4.0, generator=torch.Generator().manual_seed(3))
    assert calls == [2 * 3] * 2  # 3 windows x (negative, positive), one call per step

    # The reference: one window after the other, as the original runs them.
    noise = torch.randn(1, 3, 5, 16, 32, generator=torch.Generator().manual_seed(3))
    reference = torch.empty(output_frames(4), 3, 16, 32)
    for pair, condition in enumerate(window_conditions(video)):
        window = denoise_windows(unet, scheduler, condition[None], noise, prompt_embeds=embeddings[PROMPT],
                                 negative_embeds=embeddings[""], steps=2, guidance_scale=4.0)
        reference[4 * pair : 4 * pair + 5] = window[0].transpose(0, 1)
    torch.testing.assert_close(batched, reference.clamp(-1, 1), atol=5e-3, rtol=0)
    assert not torch.equal(batched[4], video[1])  # shared endpoints are regenerated, as in the original

    one_by_one = interpolate_video(unet, scheduler, video, prompt_embeds=embeddings[PROMPT], negative_embeds=embeddings[""],
                                   steps=2, guidance_scale=4.0, generator=torch.Generator().manual_seed(3), windows_per_call=1)
    torch.testing.assert_close(batched, one_by_one, atol=5e-3, rtol=0)


def test_keep_input_frames_pastes_every_input_frame_back(component: Path, embeddings) -> None:
    video = random_video(3)
    out = interpolate(component, embeddings, video, keep_input_frames=True, steps=1)
    assert out.shape == (9, 3, 16, 32)
    assert torch.equal(out[::4], video)


def test_interpolate_command_makes_4n_minus_3_frames(keyframes_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "smooth.mp4"
    result = run_cli("interpolate", keyframes_file, "-o", output, "--set", "interpolate.steps=1")
    assert result.exit_code == 0, result.output
    source, video = read_video(keyframes_file), read_video(output)
    assert video.frames.shape == (29, 3, 16, 32)
    assert video.fps == pytest.approx(source.fps * 4)
    assert video.metadata["prompt"] == PROMPT  # taken from the input's metadata
    assert video.metadata["stages"] == ["keyframes", "interpolate"]


def test_interpolate_keep_input_frames_keeps_frames_0_4_8(keyframes_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "kept.mp4"
    result = run_cli("interpolate", keyframes_file, "-o", output, "--keep-input-frames", "--lossless", "--set", "interpolate.steps=1")
    assert result.exit_code == 0, result.output
    source, video = read_video(keyframes_file).frames, read_video(output).frames
    assert video.shape[0] == 29
    assert torch.equal(video[::4], source)
    assert not torch.equal(video[1], source[0])


def test_interpolate_needs_a_prompt_for_foreign_files(tiny_weights: Path, tmp_path: Path) -> None:
    foreign = write_video(tmp_path / "foreign.mp4", random_video(2), 2.0)
    result = run_cli("interpolate", foreign, "-o", tmp_path / "out.mp4")
    assert result.exit_code == 2
    assert "--prompt" in result.output
    assert not (tmp_path / "out.mp4").exists()


def test_interpolate_rejects_a_single_frame(tiny_weights: Path, tmp_path: Path) -> None:
    single = write_video(tmp_path / "one.mp4", random_video(1), 2.0)
    result = run_cli("interpolate", single, "-o", tmp_path / "out.mp4", "--prompt", "x")
    assert result.exit_code == 2
    assert "at least 2 frames" in result.output
