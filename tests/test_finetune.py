"""Motion customization on the tiny test checkpoints: trainer, checkpoints, adapter, inversion, CLI errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from show1_cli import __version__
from show1_cli.errors import InputError
from show1_cli.finetune.adapter import adapter_metadata, apply_motion_adapter, read_motion_adapter, save_motion_adapter
from show1_cli.finetune.inversion import ddim_invert, file_sha256, mix_with_noise
from show1_cli.finetune.train import TrainSettings, noise_scheduler_from_config, sample_frames, train_motion
from show1_cli.models import load_unet, temporal_attention_parameters
from show1_cli.training.losses import parse_loss
from show1_cli.video import read_video, write_video
from show1_cli.weights import get_component
from tests.conftest import run_cli
from tests.motion_clips import moving_square_clip

BASE = "show-1-base"
# Small enough for a CPU test, large enough for the tiny base UNet (sizes divisible by 8).
FRAMES, HEIGHT, WIDTH = 4, 16, 16
SIZE_OVERRIDES = ("--set", f"keyframes.height={HEIGHT}", "--set", f"keyframes.width={WIDTH}", "--set", "keyframes.steps=2")


@pytest.fixture
def unet(tiny_weights_dir: Path):
    return load_unet(tiny_weights_dir / BASE)


@pytest.fixture
def schedule(tiny_weights_dir: Path):
    config = json.loads((tiny_weights_dir / BASE / "scheduler" / "scheduler_config.json").read_text())
    return noise_scheduler_from_config(config)


def text_states(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(seed))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


# ------------------------------------------------------------------------------------------- trainer


@pytest.mark.parametrize("parameter_set", ["qkv", "temporal"])
def test_only_the_chosen_parameters_change(unet, schedule, parameter_set):
    chosen = set(temporal_attention_parameters(unet, parameter_set))
    before = snapshot(unet)
    clip = moving_square_clip(FRAMES, HEIGHT, WIDTH)
    result = train_motion(unet, schedule, clip, text_states(), TrainSettings(steps=2, lr=1e-3, parameter_set=parameter_set))
    after = unet.state_dict()
    assert set(result.parameters) == chosen
    for name, tensor in before.items():
        if name in chosen:
            assert torch.equal(result.parameters[name], after[name].float())
        else:
            assert torch.equal(tensor, after[name]), f"{name} changed but is not in {parameter_set}"
    weights = [name for name in chosen if name.endswith("weight")]
    assert all(not torch.equal(before[name], after[name]) for name in weights)


def held_out_loss(unet, schedule, clip, text, loss) -> float:
    """The loss on fixed (timestep, noise) draws, in eval mode: comparable before and after training."""
    generator = torch.Generator().manual_seed(99)
    clean = clip.permute(1, 0, 2, 3).unsqueeze(0)
    values = []
    unet.eval()
    with torch.no_grad():
        for t in (100, 300, 500, 700):
            noise = torch.randn(clean.shape, generator=generator)
            noisy = schedule.add_noise(clean, noise, torch.tensor([t]))
            prediction = unet(noisy, t, text).sample[:, :3]
            values.append(loss(prediction, noise, torch.Generator().manual_seed(0)).item())
    return sum(values) / len(values)


def test_the_motion_loss_goes_down_on_a_moving_square(unet, schedule):
    clip = moving_square_clip(8, HEIGHT, WIDTH)
    text = text_states()
    loss = parse_loss("motion")
    before = held_out_loss(unet, schedule, clip, text, loss)
    result = train_motion(unet, schedule, clip, text, TrainSettings(steps=24, lr=1e-2, loss=loss, seed=0))
    after = held_out_loss(unet, schedule, clip, text, loss)
    assert after < before - 0.02, (before, after)
    assert len(result.losses) == 24


def test_resume_from_a_checkpoint_reaches_the_weights_of_an_uninterrupted_run(tiny_weights_dir, schedule, tmp_path):
    clip = moving_square_clip(FRAMES, HEIGHT, WIDTH)
    settings = TrainSettings(steps=4, lr=1e-3, loss=parse_loss("debiased+motion"), seed=3, checkpoint_every=2)
    whole = train_motion(load_unet(tiny_weights_dir / BASE), schedule, clip, text_states(), settings)
    checkpoint = tmp_path / "motion.checkpoint.pt"
    half = dataclasses.replace(settings, steps=2)
    train_motion(load_unet(tiny_weights_dir / BASE), schedule, clip, text_states(), half, checkpoint_path=checkpoint)
    assert torch.load(checkpoint, weights_only=True)["step"] == 2
    resumed = train_motion(load_unet(tiny_weights_dir / BASE), schedule, clip, text_states(), settings, resume=checkpoint)
    assert resumed.losses == whole.losses
    for name, tensor in whole.parameters.items():
        assert torch.equal(tensor, resumed.parameters[name]), name

    changed = TrainSettings(steps=4, lr=1e-3, loss=parse_loss("motion"), seed=3)
    with pytest.raises(InputError, match="loss"):
        train_motion(load_unet(tiny_weights_dir / BASE), schedule, clip, text_states(), changed, resume=checkpoint)


def test_sample_frames_spreads_crops_and_resizes():
    clip = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1).expand(10, 3, 30, 90) / 10
    picked = sample_frames(clip, 4, 8, 16)
    assert picked.shape == (4, 3, 8, 16)
    assert torch.allclose(picked[:, 0, 0, 0], torch.tensor([0.0, 0.3, 0.6, 0.9]))  # frames 0, 3, 6, 9
    with pytest.raises(InputError, match="fewer than the 12"):
        sample_frames(clip, 12, 8, 16)


# ------------------------------------------------------------------------------------------- adapter


def trained_adapter(tiny_weights_dir: Path, unet, schedule, path: Path, reference: Path | None = None) -> Path:
    """Train 2 steps on the moving square and save the adapter (metadata as `finetune-motion` writes it)."""
    clip = moving_square_clip(FRAMES, HEIGHT, WIDTH)
    result = train_motion(unet, schedule, clip, text_states(), TrainSettings(steps=2, lr=1e-2))
    reference = reference or path.with_suffix(".mp4")
    metadata = adapter_metadata(
        get_component(BASE), parameter_set="qkv", loss="motion", steps=2, lr=1e-2, seed=0, prompt="p", frames=FRAMES,
        height=HEIGHT, width=WIDTH, reference=reference,
        reference_sha256=file_sha256(reference) if reference.is_file() else "0" * 64,
    )
    return save_motion_adapter(path, result.parameters, metadata)


def generate(output: Path, *extra: str | Path) -> torch.Tensor:
    """`show1 generate --stages keyframes` on the tiny weights (lossless), returning the decoded frames."""
    result = run_cli("generate", "a square moves", "-o", output, "--stages", "keyframes", "--seed", 3, "--lossless",
                     "--set", f"keyframes.frames={FRAMES}", *SIZE_OVERRIDES, *extra)
    assert result.exit_code == 0, result.output
    return read_video(output).frames


def test_motion_scale_0_reproduces_the_base_output_and_1_differs(tiny_weights, unet, schedule, tmp_path):
    adapter = trained_adapter(tiny_weights, unet, schedule, tmp_path / "motion.safetensors")
    base_video = generate(tmp_path / "base.mp4")
    assert torch.equal(generate(tmp_path / "zero.mp4", "--motion", adapter, "--motion-scale", 0), base_video)
    tuned_video = generate(tmp_path / "one.mp4", "--motion", adapter)
    assert not torch.equal(tuned_video, base_video)
    recorded = read_video(tmp_path / "one.mp4").metadata["motion"]
    assert recorded == {"adapter": str(adapter), "sha256": file_sha256(adapter), "scale": 1.0, "init": "noise", "noise_prior": 1.0}
    assert torch.equal(generate(tmp_path / "again.mp4", "--from", tmp_path / "one.mp4"), tuned_video)  # the adapter comes along

    halfway = load_unet(tiny_weights / BASE)
    apply_motion_adapter(halfway, adapter, 0.5, get_component(BASE))
    name, tuned = next(iter(read_motion_adapter(adapter).parameters.items()))
    original = dict(load_unet(tiny_weights / BASE).named_parameters())[name]
    assert torch.allclose(dict(halfway.named_parameters())[name], (original + tuned) / 2, atol=1e-6)
    assert torch.equal(dict(unet.named_parameters())[name], tuned)


def test_generation_can_start_from_the_inverted_reference(tiny_weights, unet, schedule, square_video, tmp_path):
    adapter = trained_adapter(tiny_weights, unet, schedule, tmp_path / "motion.safetensors", reference=square_video)
    plain = generate(tmp_path / "plain.mp4", "--motion", adapter)
    # noise prior 0: only fresh noise, drawn as the stage draws it: the plain run exactly
    fresh_only = generate(tmp_path / "fresh.mp4", "--motion", adapter, "--motion-init", "inversion", "--noise-prior", 0)
    assert torch.equal(fresh_only, plain)
    inverted = generate(tmp_path / "inverted.mp4", "--motion", adapter, "--motion-init", "inversion")
    assert not torch.equal(inverted, plain)

    square_video.write_bytes(square_video.read_bytes() + b"\0")
    result = run_cli("generate", "x", "-o", tmp_path / "x.mp4", "--stages", "keyframes", "--motion", adapter,
                     "--motion-init", "inversion", *SIZE_OVERRIDES)
    assert result.exit_code == 2 and "changed since" in result.output


def test_a_mismatched_adapter_is_refused(tiny_weights, unet, schedule, tmp_path):
    adapter = read_motion_adapter(trained_adapter(tiny_weights, unet, schedule, tmp_path / "motion.safetensors"))
    base = get_component(BASE)

    other_metadata = {**adapter.metadata, "base_revision": "f" * 40}  # trained on another revision
    other_revision = save_motion_adapter(tmp_path / "other.safetensors", adapter.parameters, other_metadata)
    with pytest.raises(InputError, match=r"trained on showlab/show-1-base@ffffffffffff, this run uses showlab/show-1-base@"):
        apply_motion_adapter(load_unet(tiny_weights / BASE), other_revision, 1.0, base)

    name = next(iter(adapter.parameters))
    reshaped = {**adapter.parameters, name: torch.zeros(3, 5)}
    other_shape = save_motion_adapter(tmp_path / "shape.safetensors", reshaped, adapter.metadata)
    with pytest.raises(InputError, match=r"has shape \(3, 5\)"):
        apply_motion_adapter(load_unet(tiny_weights / BASE), other_shape, 1.0, base)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="cannot read motion adapter"):
        apply_motion_adapter(load_unet(tiny_weights / BASE), garbage, 1.0, base)
    with pytest.raises(InputError, match="motion-scale"):
        apply_motion_adapter(load_unet(tiny_weights / BASE), adapter.path, -1.0, base)

    result = run_cli("generate", "x", "-o", tmp_path / "x.mp4", "--stages", "keyframes", "--motion", other_revision, *SIZE_OVERRIDES)
    assert result.exit_code == 2 and "was trained on showlab/show-1-base@ffffffffffff" in result.output
    result = run_cli("generate", "x", "-o", tmp_path / "x.mp4", "--motion", garbage)
    assert result.exit_code == 2 and "cannot read motion adapter" in result.output


# ----------------------------------------------------------------------------------------- inversion


def test_ddim_inversion_is_undone_by_ddim_sampling_from_t_max(tiny_weights_dir, unet):
    """With a noise prediction that does not depend on the input (conv_out weights zeroed, its bias kept),
    DDIM is exactly invertible: sampling from the inverted noise with the keyframe sampler's first
    timestep (T - 1) must give the clip back. Catches misaligned timesteps, frame layout or channels."""
    from diffusers import DDIMScheduler

    config = json.loads((tiny_weights_dir / BASE / "scheduler" / "scheduler_config.json").read_text())
    with torch.no_grad():
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.copy_(torch.tensor([0.3, -0.2, 0.5, 9.0, 9.0, 9.0]))  # variance channels must be ignored
    clip = moving_square_clip(FRAMES, HEIGHT, WIDTH) * 0.9
    text = text_states()
    steps = 10
    noise = ddim_invert(unet, config, clip, text, steps)
    assert noise.shape == (1, 3, FRAMES, HEIGHT, WIDTH)
    sampler = DDIMScheduler.from_config(config, timestep_spacing="trailing")
    sampler.set_timesteps(steps)
    assert sampler.timesteps[0] == 999
    sample = noise.double()
    with torch.no_grad():
        for t in sampler.timesteps:
            sample = sampler.step(unet(sample.float(), t, text).sample[:, :3].double(), t, sample).prev_sample
    assert torch.allclose(sample[0].transpose(0, 1).float(), clip, atol=2e-2)

    fresh = torch.randn(noise.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mix_with_noise(noise, fresh, 1.0), noise)
    assert torch.equal(mix_with_noise(noise, fresh, 0.0), fresh)
    assert torch.allclose(mix_with_noise(noise, fresh, 0.25), 0.5 * noise + 0.75**0.5 * fresh)


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def square_video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "square.mp4", moving_square_clip(12, 40, 64), 8, lossless=True)


def finetune(reference: Path, output: Path, *extra: str):
    return run_cli(
        "finetune-motion", reference, "--prompt", "a square moves right", "-o", output, "--frames", FRAMES, "--seed", 5,
        *SIZE_OVERRIDES, *extra,
    )


def test_finetune_motion_writes_exactly_the_trained_keys_with_metadata_and_resumes(tiny_weights, square_video, tmp_path):
    output = tmp_path / "motion.safetensors"
    result = finetune(square_video, output, "--steps", 4, "--checkpoint-every", 2, "--validate", "a square", "--validate-every", 2)
    assert result.exit_code == 0, result.output
    with safe_open(str(output), framework="pt") as handle:
        keys = set(handle.keys())
        metadata = handle.metadata()
    assert keys == set(temporal_attention_parameters(load_unet(tiny_weights / BASE), "qkv"))
    base = get_component(BASE)
    assert metadata["base_component"] == BASE and metadata["base_revision"] == base.revision
    assert metadata["parameter_set"] == "qkv" and metadata["loss"] == "debiased" and metadata["steps"] == "4"
    assert metadata["prompt"] == "a square moves right" and metadata["frames"] == str(FRAMES)
    assert (metadata["height"], metadata["width"]) == (str(HEIGHT), str(WIDTH))
    import hashlib

    assert metadata["reference_sha256"] == hashlib.sha256(square_video.read_bytes()).hexdigest()
    assert metadata["show1_version"] == __version__ and float(metadata["lr"]) == 1e-4
    assert (tmp_path / "motion.validate-00002.mp4").is_file() and (tmp_path / "motion.validate-00004.mp4").is_file()

    # Interrupted after 2 steps, then resumed: the same adapter as the uninterrupted run above.
    part = tmp_path / "part.safetensors"
    assert finetune(square_video, part, "--steps", 2, "--checkpoint-every", 2).exit_code == 0
    resumed = tmp_path / "resumed.safetensors"
    result = finetune(square_video, resumed, "--steps", 4, "--resume", tmp_path / "part.checkpoint.pt")
    assert result.exit_code == 0, result.output
    first, second = read_motion_adapter(output).parameters, read_motion_adapter(resumed).parameters
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_finetune_motion_errors_are_clear(tiny_weights, tmp_path):
    short = write_video(tmp_path / "short.mp4", moving_square_clip(3, 16, 16), 8, lossless=True)
    result = finetune(short, tmp_path / "a.safetensors", "--steps", 1)
    assert result.exit_code == 2
    assert "has 3 frames, fewer than the 4 to train on" in result.output

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    result = finetune(broken, tmp_path / "a.safetensors", "--steps", 1)
    assert result.exit_code == 2 and "cannot read" in result.output

    result = finetune(short, tmp_path / "a.safetensors", "--loss", "l2")
    assert result.exit_code == 2 and "cannot read loss 'l2'" in result.output

    result = finetune(short, tmp_path / "a.bin")
    assert result.exit_code == 2 and "must end in .safetensors" in result.output
