"""Set up one stage's training: the model to train, its frozen helpers, its objective and its validation.

`setup(stage, ...)` reads everything from the `--init` folder (a hub-layout repository, or a component
name resolved like the real weights), builds the trained model from it or, with `--config`, from scratch,
encodes every caption once with the frozen text encoder the stage uses at inference (T5 of show-1-base
for the pixel stages, sr2's own CLIP for sr2), and returns a `StageSetup` the training loop runs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from show1_cli.errors import InputError
from show1_cli.files import read_json
from show1_cli.presets import Preset
from show1_cli.stages.sampling import load_scheduler
from show1_cli.training.data import ClipDataset, Needs
from show1_cli.training.objectives import (
    AutoencoderPass,
    InterpolateObjective,
    KeyframesObjective,
    Objective,
    SR1Objective,
    SR2Objective,
    TextTable,
    VAEObjective,
    keyframe_span,
)

STAGES = ("keyframes", "interpolate", "sr1", "sr2", "vae")
COMPONENT_OF = {
    "keyframes": "show-1-base",
    "interpolate": "show-1-interpolation",
    "sr1": "show-1-sr1",
    "sr2": "show-1-sr2",
    "vae": "show-1-sr2",
}


@dataclass(frozen=True)
class StageOptions:
    """Stage-specific training choices (the CLI's options, with their defaults)."""

    vlb_weight: float = 1e-3
    uncond_probability: float = 0.1
    crop: tuple[int, int] | None = None
    frames: int = 8  # sr1 window / sr2 clip length
    noise_levels: tuple[int, int] = (0, 500)
    anchor_probability: float = 0.5
    timestep_range: tuple[int, int] = (0, 900)
    kl_weight: float = 1e-6
    reconstruction_loss: str = "l1"  # vae: "l1" or "mse"
    colour_augment: str | None = None  # vae: None, "hues" (a random turn about the gray axis) or "channels" (permuted)
    snr_gamma: float | None = None  # min-SNR weighting of the epsilon MSE; None: off (as Show-1)
    late_timesteps: tuple[float, int] | None = None  # pixel stages: (share, from): extra draws of t in [from, T)
    prediction_type: str | None = None  # UNet stages: "epsilon" or "v_prediction"; None: as the init's scheduler says


@dataclass
class StageSetup:
    stage: str
    model: torch.nn.Module
    parameters: list[torch.nn.Parameter]
    objective: Objective
    subfolder: str  # "unet" or "vae"
    config: dict[str, Any]  # the trained model's config.json
    init_dir: Path
    validate: Callable[[torch.nn.Module, str, torch.Generator], torch.Tensor]  # -> video (F, 3, H, W)
    # What the loop runs (the model itself, or a module whose forward drives it); trained in place either way.
    training_module: torch.nn.Module | None = None
    # Values the output's scheduler/scheduler_config.json takes instead of the init's (--prediction-type).
    scheduler_updates: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.training_module is None:
            self.training_module = self.model


def needs(stage: str, preset: Preset, options: StageOptions) -> Needs:
    """What every clip must have for `stage`: frames and size as the stage's inference consumes them."""
    kf, s1, s2 = preset.keyframes, preset.sr1, preset.sr2
    if stage == "keyframes":
        return Needs(keyframe_span(kf.frames), kf.height, kf.width)
    if stage == "interpolate":
        return Needs(keyframe_span(2), kf.height, kf.width)
    if stage == "sr1":
        return Needs(options.frames, s1.height, s1.width)
    if stage == "sr2":
        return Needs(options.frames, s2.height, s2.width)
    return Needs(1, s2.height, s2.width)


def resolve_source(source: str, weights_dir: Path | None) -> Path:
    """A folder as given, or a Show-1 component name resolved like the real weights."""
    from show1_cli.weights import COMPONENTS, resolve_component

    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if source in COMPONENTS:
        return resolve_component(source, weights_dir)
    raise InputError(f"{source} is neither a folder nor a component", f"pass a hub-layout folder or one of {', '.join(COMPONENTS)}")


def _read_config(path: Path) -> dict[str, Any]:
    config = read_json(path, "config", "pass a UNet or VAE config.json")
    if not isinstance(config, dict):
        raise InputError(f"config {path} is not a JSON object", "pass a UNet or VAE config.json")
    return config


def _build_model(model_class, load: Callable[[Path], torch.nn.Module], init_dir: Path, subfolder: str,
                 config_file: Path | None, seed: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model to train and its config: `init_dir/subfolder` loaded with `load`, or with `config_file`,
    a fresh `model_class` built from that config with initial weights drawn under `seed`."""
    if config_file is None:
        return load(init_dir).float(), _read_config(init_dir / subfolder / "config.json")
    config = _read_config(config_file)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return model_class.from_config(config), config
    except (TypeError, ValueError, KeyError) as error:
        name = model_class.__name__
        raise InputError(f"cannot build a {name} from {config_file}: {error}", f"pass a {name} config") from None


def _t5_table(text_dir: Path, captions: list[str], uncond_probability: float) -> TextTable:
    from show1_cli.runtime import ModelStore, resolve_runtime
    from show1_cli.text import encode_texts

    embeddings = encode_texts(["", *captions], ModelStore(resolve_runtime("cpu", "fp32")), text_dir)
    return TextTable({text: states[0] for text, states in embeddings.items()}, uncond_probability)


def _clip_table(init_dir: Path, captions: list[str], uncond_probability: float) -> TextTable:
    from transformers import CLIPTextModel, CLIPTokenizer

    from show1_cli.stages.sr2 import encode_prompt

    tokenizer = CLIPTokenizer.from_pretrained(init_dir, subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(init_dir, subfolder="text_encoder").eval()
    texts = list(dict.fromkeys(["", *captions]))
    states = torch.cat([encode_prompt(tokenizer, encoder, texts[i : i + 64], "cpu") for i in range(0, len(texts), 64)])
    return TextTable(dict(zip(texts, states, strict=True)), uncond_probability)


def _scheduler(folder: Path, subfolder: str, **overrides):
    from diffusers import DDPMScheduler

    # Training noises with the betas of the checkpoint's own scheduler config, whatever sampler it names.
    return DDPMScheduler.from_pretrained(folder, subfolder=subfolder, **overrides)


def setup(
    stage: str,
    dataset: ClipDataset,
    preset: Preset,
    init_dir: Path,
    *,
    config_file: Path | None,
    text_dir: Path | None,
    options: StageOptions,
    seed: int = 0,
) -> StageSetup:
    """Everything `stage` trains with. `text_dir`: the show-1-base folder whose T5 the pixel stages read;
    `seed`: the initial weights of a model built from `config_file`."""
    from show1_cli.stages import interpolate as interpolate_stage
    from show1_cli.stages import keyframes as keyframes_stage
    from show1_cli.stages import sr1 as sr1_stage
    from show1_cli.stages import sr2 as sr2_stage

    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}", f"train one of {', '.join(STAGES)}")
    captions = list(dict.fromkeys(dataset.captions))

    def validation_clip(height: int, width: int) -> torch.Tensor:
        # Stages after keyframes are validated on the data set's first clip, at the size they take as input.
        return dataset.frames(0, height, width)

    kf, s1, s2 = preset.keyframes, preset.sr1, preset.sr2
    o = options

    if stage == "vae":
        from diffusers import AutoencoderKL

        model, config = _build_model(AutoencoderKL, sr2_stage.load_vae, init_dir, "vae", config_file, seed)
        objective = VAEObjective(dataset, height=s2.height, width=s2.width, crop=o.crop, kl_weight=o.kl_weight,
                                 reconstruction_loss=o.reconstruction_loss, colour_augment=o.colour_augment)

        def validate_vae(vae_pass, prompt, generator):
            frames = validation_clip(s2.height, s2.width)
            return sr2_stage.decode_latents(vae_pass.vae, sr2_stage.encode_frames(vae_pass.vae, frames, generator))

        return StageSetup(stage, model, list(model.parameters()), objective, "vae", config, init_dir, validate_vae,
                          training_module=AutoencoderPass(model))

    from show1_cli.models import UNet3DConditionModel, load_unet

    model, config = _build_model(UNet3DConditionModel, load_unet, init_dir, "unet", config_file, seed)
    updates = {} if o.prediction_type is None else {"prediction_type": o.prediction_type}
    sampling = load_scheduler(init_dir, **updates)
    noise_scheduler = _scheduler(init_dir, "scheduler", **updates)
    if stage == "sr2":
        vae = sr2_stage.load_vae(init_dir).eval().requires_grad_(False)
        text = _clip_table(init_dir, captions + [s2.negative_prompt], o.uncond_probability)
        objective = SR2Objective(dataset, noise_scheduler, vae, text, frames=o.frames, height=s2.height, width=s2.width,
                                 crop=o.crop, timestep_range=o.timestep_range, snr_gamma=o.snr_gamma)

        @functools.cache
        def clip_states(prompt: str) -> dict[str, torch.Tensor]:
            return _clip_table(init_dir, [prompt, s2.negative_prompt], 0.0).states

        def validate_sr2(unet, prompt, generator):
            video = validation_clip(s1.height, s1.width)
            states = clip_states(prompt)
            return sr2_stage.translate(unet, vae, sampling, video, height=s2.height, width=s2.width, prompt_embeds=states[prompt][None],
                                       negative_embeds=states[s2.negative_prompt][None], steps=s2.steps,
                                       guidance_scale=s2.guidance_scale, strength=s2.strength, generator=generator)

        return StageSetup(stage, model, list(model.parameters()), objective, "unet", config, init_dir, validate_sr2,
                          scheduler_updates=updates)

    if text_dir is None:
        text_dir = init_dir
    negatives = [getattr(preset, name).negative_prompt for name in ("keyframes", "interpolate", "sr1")]
    text = _t5_table(text_dir, captions + negatives, o.uncond_probability)

    @functools.cache  # the validation prompt is encoded once, not at every validation
    def t5(prompt: str, negative: str) -> dict[str, torch.Tensor]:
        table = _t5_table(text_dir, [prompt, negative], 0.0).states
        return {"prompt_embeds": table[prompt][None], "negative_embeds": table[negative][None]}

    if stage == "keyframes":
        objective = KeyframesObjective(dataset, noise_scheduler, text, o.vlb_weight, frames=kf.frames, height=kf.height, width=kf.width,
                                       snr_gamma=o.snr_gamma, late_timesteps=o.late_timesteps)

        def validate_keyframes(unet, prompt, generator):
            return keyframes_stage.generate_keyframes(unet, sampling, **t5(prompt, kf.negative_prompt), frames=kf.frames,
                                                      height=kf.height, width=kf.width, steps=kf.steps,
                                                      guidance_scale=kf.guidance_scale, generator=generator)

        validate = validate_keyframes
    elif stage == "interpolate":
        objective = InterpolateObjective(dataset, noise_scheduler, text, o.vlb_weight, height=kf.height, width=kf.width,
                                         snr_gamma=o.snr_gamma, late_timesteps=o.late_timesteps)

        def validate_interpolate(unet, prompt, generator):
            keys = validation_clip(kf.height, kf.width)[:: interpolate_stage.WINDOW - 1]
            return interpolate_stage.interpolate_video(unet, sampling, keys, **t5(prompt, preset.interpolate.negative_prompt),
                                                       steps=preset.interpolate.steps,
                                                       guidance_scale=preset.interpolate.guidance_scale, generator=generator)

        validate = validate_interpolate
    else:
        noising = _scheduler(init_dir, "image_noising_scheduler")
        objective = SR1Objective(dataset, noise_scheduler, noising, text, o.vlb_weight, frames=o.frames, height=s1.height, width=s1.width,
                                 low_height=kf.height, low_width=kf.width, crop=o.crop, noise_levels=o.noise_levels,
                                 anchor_probability=o.anchor_probability, snr_gamma=o.snr_gamma,
                                 late_timesteps=o.late_timesteps)

        def validate_sr1(unet, prompt, generator):
            video = validation_clip(kf.height, kf.width)
            return sr1_stage.super_resolve(unet, sampling, noising, video,
                                           height=s1.height, width=s1.width, **t5(prompt, s1.negative_prompt), steps=s1.steps,
                                           guidance_scale=s1.guidance_scale, noise_level=s1.noise_level, window=s1.window,
                                           stride=s1.stride, generator=generator)

        validate = validate_sr1
    return StageSetup(stage, model, list(model.parameters()), objective, "unet", config, init_dir, validate, scheduler_updates=updates)
