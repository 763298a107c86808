"""Stage 1 (keyframes) and the T5 text conditioning, on the tiny checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler

from show1_cli import text
from show1_cli.errors import InputError
from show1_cli.models import load_unet
from show1_cli.runtime import ModelStore, resolve_runtime
from show1_cli.stages.keyframes import generate_keyframes
from show1_cli.stages.sampling import guided_noise, load_scheduler
from show1_cli.video import read_video
from tests.conftest import run_cli

SMALL = ["--set", "keyframes.steps=2", "--set", "keyframes.height=16", "--set", "keyframes.width=32"]


@pytest.fixture(scope="module")
def base(tiny_weights: Path) -> Path:
    return tiny_weights / "show-1-base"


@pytest.fixture(scope="module")
def embeddings(base: Path) -> dict[str, torch.Tensor]:
    store = ModelStore(resolve_runtime("cpu", "fp32", "none"))
    return text.encode_texts(["a panda eating bamboo", ""], store, base)


@pytest.fixture(scope="module")
def keyframe_videos(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`generate --stages keyframes` with seed 1 twice and seed 2 once."""
    folder = tmp_path_factory.mktemp("keyframes")
    outputs = {}
    for name, seed in (("first", 1), ("again", 1), ("other", 2)):
        outputs[name] = folder / f"{name}.mp4"
        result = run_cli("generate", "a panda eating bamboo", "-o", outputs[name], "--stages", "keyframes", "--seed", seed, *SMALL)
        assert result.exit_code == 0, result.output
    return outputs


# ---------------------------------------------------------------------------------------------- CLI


def test_generate_keyframes_writes_the_preset_frames(keyframe_videos: dict[str, Path]) -> None:
    video = read_video(keyframe_videos["first"])
    assert video.frames.shape == (8, 3, 16, 32)  # preset frames, --set height/width
    assert video.fps == pytest.approx(2.0)  # 8 keyframes span the 8 fps clip's 3.5 s
    assert video.metadata["prompt"] == "a panda eating bamboo"
    assert video.metadata["seed"] == 1
    assert video.metadata["stages"] == ["keyframes"]


def test_same_seed_same_video_other_seed_another(keyframe_videos: dict[str, Path]) -> None:
    first, again, other = (read_video(keyframe_videos[name]).frames for name in ("first", "again", "other"))
    assert torch.equal(first, again)
    assert (first - other).abs().mean() > 0.05


def test_default_preset_shape_and_steps_reach_the_scheduler(base: Path, embeddings: dict[str, torch.Tensor]) -> None:
    unet = load_unet(base)
    scheduler = load_scheduler(base)
    calls: list[tuple[int, ...]] = []
    unet.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape)))
    video = generate_keyframes(
        unet, scheduler, prompt_embeds=embeddings["a panda eating bamboo"], negative_embeds=embeddings[""],
        frames=8, height=40, width=64, steps=2, guidance_scale=9.0, generator=torch.Generator().manual_seed(0),
    )
    assert video.shape == (8, 3, 40, 64)
    assert video.min() >= -1 and video.max() <= 1
    # Guidance: negative and positive prompt in one UNet batch, one call per step.
    assert calls == [(2, 3, 8, 40, 64)] * 2


def test_same_generator_seed_gives_identical_frames(base: Path, embeddings: dict[str, torch.Tensor]) -> None:
    unet, scheduler = load_unet(base), load_scheduler(base)

    def sample(seed: int) -> torch.Tensor:
        return generate_keyframes(
            unet, scheduler, prompt_embeds=embeddings["a panda eating bamboo"], negative_embeds=embeddings[""],
            frames=2, height=16, width=32, steps=2, guidance_scale=9.0, generator=torch.Generator().manual_seed(seed),
        )

    assert torch.equal(sample(5), sample(5))
    assert not torch.equal(sample(5), sample(6))


def test_variance_channels_are_split_off_unless_the_scheduler_learns_them(base: Path, embeddings: dict[str, torch.Tensor]) -> None:
    unet = load_unet(base)
    states = torch.cat([embeddings[""], embeddings["a panda eating bamboo"]])
    sample = torch.randn(2, 3, 2, 16, 32, generator=torch.Generator().manual_seed(0))
    fixed = guided_noise(unet, load_scheduler(base), sample, torch.tensor(500), states, 9.0)
    assert fixed.shape == (1, 3, 2, 16, 32)
    learned = DDPMScheduler(variance_type="learned_range")
    kept = guided_noise(unet, learned, sample, torch.tensor(500), states, 9.0)
    assert kept.shape == (1, 6, 2, 16, 32)
    assert torch.equal(kept[:, :3], fixed)
    # Guidance is uncond + scale * (cond - uncond) on the epsilon channels.
    raw = unet(sample, torch.tensor(500), encoder_hidden_states=states).sample
    expected = raw[:1, :3] + 9.0 * (raw[1:, :3] - raw[:1, :3])
    torch.testing.assert_close(fixed, expected)
    torch.testing.assert_close(kept[:, 3:], raw[1:, 3:])


# --------------------------------------------------------------------------------------------- text


def test_encode_texts_gives_77_token_embeddings_and_drops_the_encoder(base: Path) -> None:
    store = ModelStore(resolve_runtime("cpu", "fp32", "none"))
    result = text.encode_texts(["a cat", "", "a cat"], store, base)
    assert sorted(result) == ["", "a cat"]
    assert result["a cat"].shape == (1, text.MAX_TOKENS, 64)
    assert not torch.equal(result["a cat"], result[""])
    assert text.ENCODER_KEY not in store._models  # released as soon as the texts are encoded


def test_long_prompt_is_cut_at_77_tokens_with_a_warning(base: Path, caplog: pytest.LogCaptureFixture) -> None:
    tokenizer = text.load_tokenizer(base)
    long_prompt = "a dog running in the park at sunset " * 20
    with caplog.at_level(logging.WARNING, logger="show1"):
        ids, mask = text.tokenize(tokenizer, long_prompt)
    assert ids.shape == mask.shape == (1, 77)
    assert mask.all() and ids[0, -1] == tokenizer.eos_token_id
    assert any("77" in record.getMessage() and "ignored" in record.getMessage() for record in caplog.records)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="show1"):
        ids, mask = text.tokenize(tokenizer, "a dog")
    assert not caplog.records
    assert mask.sum() < 77 and ids[0, -1] == tokenizer.pad_token_id


def test_prompt_cleaning_is_the_official_lower_and_strip_whatever_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert text.full_cleaning_available()  # the test extra installs the optional clean-up's packages
    assert text.clean_prompt("  A Panda <b>Selfie</b>  ") == "a panda <b>selfie</b>"
    monkeypatch.setattr(text, "full_cleaning_available", lambda: False)
    assert text.clean_prompt("  A Panda <b>Selfie</b>  ") == "a panda <b>selfie</b>"
    with pytest.raises(InputError, match="clean-prompt needs"):
        text.clean_prompt("a panda", full=True)


def test_full_prompt_cleaning_on_request() -> None:
    cleaned = text.clean_prompt("A <b>Panda</b> &amp; friends \u2014 see https://example.com/x @someone!!", full=True)
    assert cleaned == "a panda & friends - see !"
