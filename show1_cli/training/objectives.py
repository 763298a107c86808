"""What each stage learns: how a training example is cut from a clip, and the loss on a batch of them.

Every objective builds its examples exactly as its stage's inference path consumes video:
- keyframes: F frames at the keyframe rate (every 4th frame of the output rate) at the keyframe size;
- interpolate: 5-frame windows at the output rate whose end frames are keyframe-spaced, with the
  [noisy, condition, mask] input built by the interpolation stage's own `window_conditions`;
- sr1: windows of frames at the output rate and the sr1 size; the low-resolution input is the same frames
  area-downsampled to the keyframe size and upscaled by the stage's own `upscale_condition`, noised with
  the image-noising scheduler to a level drawn per sample (also the class label); with some probability
  its first frame is the clean high-resolution frame, as the window anchoring gives at inference;
- sr2: frames at the sr2 size, encoded by the frozen VAE, timesteps drawn from the expert's range only;
- vae: single frames (or crops) at the sr2 size, optionally recoloured (hues turned, channels permuted or
  colours jittered).

An example's randomness (which clip, where, timestep, noise) comes from the generator the loop hands
it, one per example, so a batch is the same whichever process computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from show1_cli.stages.interpolate import WINDOW, window_conditions
from show1_cli.stages.sr1 import upscale_condition
from show1_cli.training.data import ClipDataset
from show1_cli.training.losses import DiffusionTerms, LossSpec, epsilon_mse, hybrid_loss, min_snr_weights, vae_loss

KEYFRAME_STRIDE = 4  # interpolation puts 3 frames between 2 keyframes


def keyframe_span(keyframes: int) -> int:
    """Frames at the output rate that `keyframes` keyframes span (8 -> 29)."""
    return (keyframes - 1) * KEYFRAME_STRIDE + 1


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """An integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _random_span(dataset: ClipDataset, span: int, height: int, width: int, generator: torch.Generator) -> tuple[int, int, torch.Tensor]:
    """(clip index, start frame, `span` frames from there at height x width) of a randomly drawn clip."""
    index = _randint(0, len(dataset) - 1, generator)
    clip = dataset.frames(index, height, width)
    start = _randint(0, clip.shape[0] - span, generator)
    return index, start, clip[start : start + span]


def _crop_box(height: int, width: int, crop: tuple[int, int] | None, generator: torch.Generator) -> tuple[int, int, int, int]:
    if crop is None:
        return 0, 0, height, width
    crop_h, crop_w = crop
    return _randint(0, height - crop_h, generator), _randint(0, width - crop_w, generator), crop_h, crop_w


@dataclass
class TextTable:
    """Frozen text-encoder states of every caption (and of the empty text, for unconditional examples)."""

    states: dict[str, torch.Tensor]
    uncond_probability: float

    def pick(self, caption: str, generator: torch.Generator) -> torch.Tensor:
        if float(torch.rand((), generator=generator)) < self.uncond_probability:
            return self.states[""]
        return self.states[caption]


class Objective:
    """One stage's training task: `example` cuts one training example from its data, `loss` scores a batch."""

    def example(self, generator: torch.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class PixelObjective(Objective):
    """Shared by the pixel stages: cosine-schedule noising, the hybrid loss, text from T5."""

    def __init__(self, dataset: ClipDataset, noise_scheduler, text: TextTable, vlb_weight: float, snr_gamma: float | None = None,
                 late_timesteps: tuple[float, int] | None = None):
        self.dataset = dataset
        # (share, first timestep): that share of the examples draws its timestep from [first, T) only.
        self.late_timesteps = late_timesteps
        self.noise_scheduler = noise_scheduler
        self.terms = DiffusionTerms.from_scheduler(noise_scheduler)
        self.text = text
        self.vlb_weight = vlb_weight
        self.snr_gamma = snr_gamma
        self.prediction_type = noise_scheduler.config.prediction_type

    def _noised(self, clean: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        low = 0
        if self.late_timesteps is not None and float(torch.rand((), generator=generator)) < self.late_timesteps[0]:
            low = self.late_timesteps[1]
        timestep = torch.randint(low, self.terms.num_timesteps, (1,), generator=generator)
        noise = randn_tensor(clean.shape, generator=generator)
        return {"clean": clean, "noise": noise, "timestep": timestep[0]}

    def _hybrid(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], extra_input: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        clean, noise, t = batch["clean"], batch["noise"], batch["timestep"]
        noisy = self.noise_scheduler.add_noise(clean, noise, t)
        model_input = noisy if extra_input is None else torch.cat([noisy, extra_input], dim=1)
        output = model(model_input, t, encoder_hidden_states=batch["text"], **kwargs).sample
        return hybrid_loss(self.terms, output, noise, clean, noisy, t, self.vlb_weight, self.snr_gamma, self.prediction_type)


class KeyframesObjective(PixelObjective):
    def __init__(self, dataset: ClipDataset, noise_scheduler, text: TextTable, vlb_weight: float, *, frames: int, height: int,
                 width: int, snr_gamma: float | None = None, late_timesteps: tuple[float, int] | None = None):
        super().__init__(dataset, noise_scheduler, text, vlb_weight, snr_gamma, late_timesteps)
        self.frames, self.height, self.width = frames, height, width

    def example(self, generator: torch.Generator) -> dict[str, Any]:
        index, _, span = _random_span(self.dataset, keyframe_span(self.frames), self.height, self.width, generator)
        frames = span[::KEYFRAME_STRIDE]  # (F, 3, H, W)
        text = self.text.pick(self.dataset.clips[index].caption, generator)
        return {**self._noised(frames.transpose(0, 1), generator), "text": text}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._hybrid(model, batch)


class InterpolateObjective(PixelObjective):
    def __init__(self, dataset: ClipDataset, noise_scheduler, text: TextTable, vlb_weight: float, *, height: int, width: int,
                 snr_gamma: float | None = None, late_timesteps: tuple[float, int] | None = None):
        super().__init__(dataset, noise_scheduler, text, vlb_weight, snr_gamma, late_timesteps)
        self.height, self.width = height, width

    def example(self, generator: torch.Generator) -> dict[str, Any]:
        index, _, window = _random_span(self.dataset, WINDOW, self.height, self.width, generator)  # frames 0 and 4 keyframe-spaced
        condition = window_conditions(window[:: WINDOW - 1])[0]  # (4, 5, H, W)
        text = self.text.pick(self.dataset.clips[index].caption, generator)
        return {**self._noised(window.transpose(0, 1), generator), "condition": condition, "text": text}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._hybrid(model, batch, extra_input=batch["condition"])


class SR1Objective(PixelObjective):
    def __init__(
        self,
        dataset: ClipDataset,
        noise_scheduler,
        image_noising_scheduler,
        text: TextTable,
        vlb_weight: float,
        *,
        frames: int,
        height: int,
        width: int,
        low_height: int,
        low_width: int,
        crop: tuple[int, int] | None,
        noise_levels: tuple[int, int],
        anchor_probability: float,
        snr_gamma: float | None = None,
        late_timesteps: tuple[float, int] | None = None,
    ):
        super().__init__(dataset, noise_scheduler, text, vlb_weight, snr_gamma, late_timesteps)
        self.image_noising_scheduler = image_noising_scheduler
        self.frames, self.height, self.width = frames, height, width
        self.low_height, self.low_width = low_height, low_width
        self.crop = crop
        self.noise_levels = noise_levels
        self.anchor_probability = anchor_probability

    def example(self, generator: torch.Generator) -> dict[str, Any]:
        index, start, high = _random_span(self.dataset, self.frames, self.height, self.width, generator)
        low = self.dataset.frames(index, self.low_height, self.low_width)[start : start + self.frames]
        upscaled = upscale_condition(low, self.height, self.width)
        top, left, crop_h, crop_w = _crop_box(self.height, self.width, self.crop, generator)
        high = high[..., top : top + crop_h, left : left + crop_w].transpose(0, 1)  # (3, F, h, w)
        upscaled = upscaled[..., top : top + crop_h, left : left + crop_w].transpose(0, 1)
        level = torch.tensor(_randint(*self.noise_levels, generator))
        condition = self.image_noising_scheduler.add_noise(upscaled, randn_tensor(upscaled.shape, generator=generator), level)
        if float(torch.rand((), generator=generator)) < self.anchor_probability:
            condition[:, 0] = high[:, 0]
        text = self.text.pick(self.dataset.clips[index].caption, generator)
        return {**self._noised(high, generator), "condition": condition, "noise_level": level, "text": text}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._hybrid(model, batch, extra_input=batch["condition"], class_labels=batch["noise_level"])


class SR2Objective(Objective):
    """The latent expert: epsilon MSE on VAE latents, timesteps only from `timestep_range` (0-900 in Show-1)."""

    def __init__(self, dataset: ClipDataset, noise_scheduler, vae, text: TextTable, *, frames: int, height: int, width: int,
                 crop: tuple[int, int] | None, timestep_range: tuple[int, int], snr_gamma: float | None = None):
        self.dataset = dataset
        self.noise_scheduler = noise_scheduler
        self.terms = DiffusionTerms.from_scheduler(noise_scheduler)
        self.snr_gamma = snr_gamma
        self.vae = vae
        self.text = text
        self.frames, self.height, self.width = frames, height, width
        self.crop = crop
        self.timestep_range = timestep_range

    def example(self, generator: torch.Generator) -> dict[str, Any]:
        index, _, frames = _random_span(self.dataset, self.frames, self.height, self.width, generator)
        top, left, crop_h, crop_w = _crop_box(self.height, self.width, self.crop, generator)
        frames = frames[..., top : top + crop_h, left : left + crop_w]
        with torch.no_grad():
            posterior = self.vae.encode(frames.to(self.vae.dtype)).latent_dist
            latents = posterior.sample(generator=generator).float() * self.vae.config.scaling_factor
        low, high = self.timestep_range
        return {
            "clean": latents.transpose(0, 1),  # (C, F, h, w)
            "noise": randn_tensor(latents.transpose(0, 1).shape, generator=generator),
            "timestep": torch.tensor(_randint(low, high - 1, generator)),
            "text": self.text.pick(self.dataset.clips[index].caption, generator),
        }

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        noisy = self.noise_scheduler.add_noise(batch["clean"], batch["noise"], batch["timestep"])
        output = model(noisy, batch["timestep"], encoder_hidden_states=batch["text"]).sample
        t = batch["timestep"]
        prediction_type = self.noise_scheduler.config.prediction_type
        weights = min_snr_weights(self.noise_scheduler.alphas_cumprod, t, self.snr_gamma, prediction_type) if self.snr_gamma else None
        return epsilon_mse(output, self.terms.target(batch["clean"], batch["noise"], t, prediction_type), weights)


def rotate_hues(frames: torch.Tensor, angle: float) -> torch.Tensor:
    """`frames` (3, ...) in [-1, 1] with every colour turned by `angle` radians about the gray axis (Rodrigues'
    rotation about (1, 1, 1)): grays keep their value, saturation and brightness are nearly kept, and what
    leaves the RGB cube is clipped."""
    cos, sin = math.cos(angle), math.sin(angle)
    third = (1 - cos) / 3
    root = sin / math.sqrt(3)
    matrix = torch.tensor([[cos + third, third - root, third + root],
                           [third + root, cos + third, third - root],
                           [third - root, third + root, cos + third]], dtype=frames.dtype)
    return torch.einsum("ij,j...->i...", matrix, frames).clamp(-1, 1)


def jitter_colours(frames: torch.Tensor, angle: float, saturation: float, lightness: float) -> torch.Tensor:
    """`frames` (3, ...) in [-1, 1] with every colour's hue turned by `angle` radians, its distance from the
    gray axis (chroma) scaled by `saturation`, and `lightness` added in proportion to its chroma (full for
    chroma of 1 and more): grays keep their value, so the toy world's backgrounds stay as they are."""
    turned = rotate_hues(frames, angle)
    gray = turned.mean(0, keepdim=True)
    chroma = turned - gray
    weight = chroma.norm(dim=0, keepdim=True).clamp(max=1)
    return (gray + saturation * chroma + lightness * weight).clamp(-1, 1)


# "jitter": the drift of the colours the pixel stages draw around the world's palette (measured on the micro
# cascade's sr1 output: blue (50, 90, 230) comes as (126, 136, 254), purple (150, 60, 200) as (179, 37, 182)).
JITTER_ANGLE = math.radians(40)
JITTER_SATURATION = (0.6, 1.3)
JITTER_LIGHTNESS = 0.3
COLOUR_AUGMENTS = ("hues", "channels", "jitter")


class VAEObjective(Objective):
    """The sr2 autoencoder: L1 (or MSE) reconstruction plus a small KL term, on single frames or crops. With a
    `colour_augment`, each frame's colours are turned by a random angle about the gray axis ("hues") or its RGB
    channels permuted ("channels"), so the autoencoder meets object colours on backgrounds the data never
    pairs them with, or moved a little in hue, saturation and lightness ("jitter"), so that it passes on the
    colours the stages before it draw near the palette instead of snapping them to another palette colour;
    grays, and so the toy world's backgrounds, stay as they are."""

    def __init__(self, dataset: ClipDataset, *, height: int, width: int, crop: tuple[int, int] | None, kl_weight: float,
                 reconstruction_loss: str, colour_augment: str | None = None):
        self.dataset = dataset
        self.height, self.width = height, width
        self.crop = crop
        self.kl_weight = kl_weight
        self.reconstruction_loss = reconstruction_loss
        self.colour_augment = colour_augment

    def example(self, generator: torch.Generator) -> dict[str, Any]:
        _, _, (frame,) = _random_span(self.dataset, 1, self.height, self.width, generator)
        top, left, crop_h, crop_w = _crop_box(self.height, self.width, self.crop, generator)
        seed = torch.randint(0, 2**62, (1,), generator=generator)
        image = frame[:, top : top + crop_h, left : left + crop_w]
        if self.colour_augment == "hues":
            image = rotate_hues(image, float(torch.rand((), generator=generator)) * 2 * math.pi)
        elif self.colour_augment == "channels":
            image = image[torch.randperm(3, generator=generator)]
        elif self.colour_augment == "jitter":
            angle, saturation, lightness = torch.rand(3, generator=generator).tolist()
            low, high = JITTER_SATURATION
            image = jitter_colours(image, (2 * angle - 1) * JITTER_ANGLE, low + saturation * (high - low),
                                   (2 * lightness - 1) * JITTER_LIGHTNESS)
        return {"image": image, "seed": seed[0]}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        reconstruction, posterior = model(batch["image"], batch["seed"])
        return vae_loss(reconstruction, batch["image"], posterior, self.kl_weight, self.reconstruction_loss)


class AutoencoderPass(torch.nn.Module):
    """Encode, sample and decode in one forward call, so that data-parallel wrappers (which hook `forward`)
    see the whole autoencoder pass. The latent sample's noise comes from each example's own seed."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor, seeds: torch.Tensor):
        posterior = self.vae.encode(images).latent_dist
        noise = torch.stack([torch.randn(posterior.mean.shape[1:], generator=torch.Generator().manual_seed(int(seed)))
                             for seed in seeds]).to(posterior.mean)
        return self.vae.decode(posterior.mean + posterior.std * noise).sample, posterior


class MotionObjective(Objective):
    """Motion customization (finetune-motion): one reference clip and its prompt, the chosen motion loss on
    the keyframe UNet's noise channels (VMC's recipe: uniform timesteps, the base cosine schedule)."""

    def __init__(self, frames: torch.Tensor, text_states: torch.Tensor, noise_scheduler, loss: LossSpec):
        self.clean = frames.transpose(0, 1).float()  # (3, F, H, W)
        self.text_states = text_states.reshape(text_states.shape[-2:]).float()
        self.noise_scheduler = noise_scheduler
        self.terms = DiffusionTerms.from_scheduler(noise_scheduler)
        self.loss_spec = loss

    def example(self, generator: torch.Generator) -> dict[str, Any]:
        timestep = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (1,), generator=generator)
        noise = torch.randn(self.clean.shape, generator=generator)
        seed = torch.randint(0, 2**62, (1,), generator=generator)
        return {"clean": self.clean, "noise": noise, "timestep": timestep[0], "text": self.text_states, "seed": seed[0]}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        noisy = self.noise_scheduler.add_noise(batch["clean"], batch["noise"], batch["timestep"])
        output = model(noisy, batch["timestep"], encoder_hidden_states=batch["text"]).sample[:, :3].float()
        # The motion losses compare noises; a velocity-predicting base's output is turned into the noise it implies.
        prediction = self.terms.epsilon(output, noisy.float(), batch["timestep"], self.noise_scheduler.config.prediction_type)
        # The debiased loss draws its anchor frames from the example's own seed.
        return self.loss_spec(prediction, batch["noise"], torch.Generator().manual_seed(int(batch["seed"][0])))
