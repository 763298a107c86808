"""The memory planner behind `--offload auto`: per stage, the fastest offload mode whose predicted peak fits.

A stage's predicted peak accelerator memory is its models' weights in the run's dtype plus an activation
allowance for its largest UNet call:
- weights: the parameter counts below, counted from the real configs (show1_cli/hub_configs; tests/test_memory.py
  rebuilds the models on the meta device and checks every figure);
- activations: in inference a UNet keeps every down-block output for the up path (the skips) and works on
  a few maps at a time; the allowance is the skips plus `WORKING_MAPS` maps of an up block's input at full
  resolution (its own and the skip's channels), for the stage's real batch (guidance doubles it, the
  interpolation windows share a call), frames and size. These are estimates: benchmarks/full_size.py prints
  the measured peak beside them on CUDA.

Modes, fastest first: "none" keeps the stage's models on the accelerator (peak: all weights plus the
activations); "model" moves each model there for its forward pass (peak: the largest model with its
activations); "sequential" streams weights layer by layer (peak: the largest layer with the activations).
sr2 decodes its VAE frame by frame (slicing) always, and in tiles too when even one frame does not fit.
With `--compile`, a stage's UNet blocks are compiled unless it runs "sequential": accelerate's per-layer
weight moves would break every compiled graph into pieces, slower than not compiling.

This module imports neither torch nor the models, so that `--dry-run` prints a plan at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from show1_cli.choices import OFFLOAD_MODES
from show1_cli.errors import InputError
from show1_cli.presets import Preset

AUTO = "auto"
GiB = 1024**3

# (parameters, parameters of the largest single layer) of every model a stage puts on the accelerator, keyed
# as show1_cli.runtime.ModelStore keys them. Counted from show1_cli/hub_configs, except: IF-II-L (its config
# is not published with Show-1; 1.2B is DeepFloyd's stated size, its largest layer taken as sr1's), sr2's CLIP
# text encoder (OpenCLIP ViT-H text tower, the Stable Diffusion 2 layout zeroscope uses) and VAE (the layout
# in benchmarks/sr2_vae_decoding.py).
PARAMETERS: dict[str, tuple[int, int]] = {
    "show-1-base/text_encoder": (4_762_310_656, 131_596_288),
    "show-1-base/unet": (1_726_848_390, 29_492_480),
    "show-1-interpolation/unet": (1_726_859_910, 29_492_480),
    "show-1-sr1/unet": (796_343_046, 16_781_312),
    "IF-II-L-v1.0/unet": (1_200_000_000, 16_781_312),
    "show-1-sr2/text_encoder": (340_387_840, 50_593_792),
    "show-1-sr2/unet": (1_411_233_860, 29_492_480),
    "show-1-sr2/vae": (83_653_863, 2_359_808),
}
HUB_CONFIGS = Path(__file__).resolve().parent / "hub_configs"
UNET_CONFIGS = {"keyframes": "show-1-base", "interpolate": "show-1-interpolation", "sr1": "show-1-sr1", "sr2": "show-1-sr2"}

WORKING_MAPS = 4  # full-resolution maps of an up block's input alive at once: input, norm, conv output, residual
TEXT_ACTIVATIONS = 256 * 1024**2  # one 77-token text through an encoder: a few (77, d_ff) maps, well below this
VAE_MAPS = 8  # maps of 256 channels at full resolution alive while the VAE decodes one frame (upsampler input, convs)
VAE_TILE = 512  # diffusers' AutoencoderKL tile size (pixels) for this VAE when tiling
LATENT_FACTOR = 8
HEADROOM = 1.2  # the allocator's fragmentation and what the estimates leave out: a plan keeps 1/6 of its budget free
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes of a size such as "8GB", "7.5GiB", "512M" (GB and GiB both count 1024^3, as nvidia-smi does)."""
    match = _SIZE.match(text)
    if not match:
        raise InputError(f"cannot read the memory size {text!r}", "write it like 8GB, 7.5GB or 512MB")
    unit = (match.group(2) or "B").upper()[0]
    return int(float(match.group(1)) * 1024 ** "BKMGT".index(unit))


def weight_bytes(key: str, dtype_bytes: int) -> int:
    return PARAMETERS[key][0] * dtype_bytes


def _layer_bytes(key: str, dtype_bytes: int) -> int:
    return PARAMETERS[key][1] * dtype_bytes


def _unet_config(component: str) -> dict:
    return json.loads((HUB_CONFIGS / f"unet-{component}.json").read_text(encoding="utf-8"))


def unet_activation_bytes(component: str, *, batch: int, frames: int, height: int, width: int, dtype_bytes: int) -> int:
    """The activation allowance of one call of a Show-1 UNet on (batch, C, frames, height, width) (module docstring)."""
    config = _unet_config(component)
    channels = config["block_out_channels"]
    layers = config["layers_per_block"]
    layers = layers if isinstance(layers, list) else [layers] * len(channels)
    pixels = height * width
    skips = sum((count + 1) * width_ * pixels // 4**level for level, (count, width_) in enumerate(zip(layers, channels, strict=True)))
    working = WORKING_MAPS * 2 * channels[0] * pixels
    return (skips + working) * batch * frames * dtype_bytes


def _vae_decode_bytes(height: int, width: int, dtype_bytes: int, tiling: bool) -> int:
    pixels = min(height, VAE_TILE) * min(width, VAE_TILE) if tiling else height * width
    return VAE_MAPS * 256 * pixels * dtype_bytes


@dataclass(frozen=True)
class StageUse:
    """What a stage puts on the accelerator: its models (in the order it runs them) and each one's activations."""

    models: tuple[tuple[str, int], ...]  # (ModelStore key, activation bytes while it runs)

    def peak(self, offload: str, dtype_bytes: int) -> int:
        if offload == "none":
            return sum(weight_bytes(key, dtype_bytes) for key, _ in self.models) + max(act for _, act in self.models)
        resident = weight_bytes if offload == "model" else _layer_bytes
        return max(resident(key, dtype_bytes) + act for key, act in self.models)


def stage_use(preset: Preset, stage: str, dtype_bytes: int, *, frames: int, height: int, width: int, first_frame: bool = False,
              windows_per_call: int | None = None, vae_tiling: bool = False) -> StageUse:
    """The models and activations of `stage` on an input video of `frames` frames of height x width (none for text)."""
    settings = getattr(preset, stage, None)
    guided = 2 if settings is not None and getattr(settings, "guidance_scale", 1.0) > 1.0 else 1

    def unet(shape_batch: int, shape_frames: int, shape_height: int, shape_width: int) -> tuple[str, int]:
        component = UNET_CONFIGS[stage]
        return f"{component}/unet", unet_activation_bytes(component, batch=shape_batch, frames=shape_frames, height=shape_height,
                                                          width=shape_width, dtype_bytes=dtype_bytes)

    if stage == "text":
        return StageUse((("show-1-base/text_encoder", TEXT_ACTIVATIONS),))
    if stage == "keyframes":
        return StageUse((unet(guided, settings.frames, settings.height, settings.width),))
    if stage == "interpolate":
        pairs = max(1, frames - 1)
        per_call = pairs if windows_per_call is None else max(1, min(windows_per_call, pairs))
        return StageUse((unet(guided * per_call, 5, height, width),))
    if stage == "sr1":
        window = unet(guided, min(settings.window, frames), settings.height, settings.width)
        if not first_frame:
            return StageUse((window,))
        # IF-II-L's config is not published with Show-1: its one-frame call is taken as sr1's on one frame.
        image = unet(guided, 1, settings.height, settings.width)[1]
        return StageUse((("IF-II-L-v1.0/unet", image), window))
    if stage == "sr2":
        latent_height, latent_width = settings.height // LATENT_FACTOR, settings.width // LATENT_FACTOR
        vae = _vae_decode_bytes(settings.height, settings.width, dtype_bytes, vae_tiling)
        return StageUse((("show-1-sr2/text_encoder", TEXT_ACTIVATIONS), unet(guided, frames, latent_height, latent_width),
                         ("show-1-sr2/vae", vae)))
    raise ValueError(f"unknown stage {stage!r}")


@dataclass(frozen=True)
class StagePlan:
    stage: str
    offload: str
    peak_bytes: int  # predicted, under `offload`
    fits: bool
    vae_tiling: bool = False
    compiled: bool = False  # its UNets' blocks are compiled (--compile)


@dataclass(frozen=True)
class MemoryPlan:
    """How each stage runs: its offload mode, predicted peak, (sr2) whether the VAE decodes in tiles, and
    whether its UNets are compiled."""

    budget_bytes: int | None  # None: no accelerator, nothing to plan
    stages: tuple[StagePlan, ...]
    compile: bool = False  # --compile was asked for

    def offload(self, stage: str) -> str:
        return next((plan.offload for plan in self.stages if plan.stage == stage), "none")

    def compiled(self, stage: str) -> bool:
        return any(plan.compiled for plan in self.stages if plan.stage == stage)

    def vae_tiling(self) -> bool:
        return any(plan.vae_tiling for plan in self.stages)

    def lines(self) -> list[str]:
        """The plan in words, one line per stage, as `--dry-run` prints it."""
        if self.budget_bytes is None:
            compiled = [plan.stage for plan in self.stages if plan.compiled]
            return ["memory plan: on the CPU, nothing to offload (every stage: none)",
                    *([f"compiled: the UNet blocks of {', '.join(compiled)}"] if compiled else [])]
        out = [f"memory plan for {_gib(self.budget_bytes)} of accelerator memory (predicted peaks, x{HEADROOM} must fit):"]
        for plan in self.stages:
            extras = ", VAE decoded in tiles" if plan.vae_tiling else ""
            if self.compile and plan.stage in UNET_CONFIGS:
                extras += ", UNet blocks compiled" if plan.compiled else ", not compiled (sequential offload)"
            warning = "" if plan.fits else "  (may not fit: use fewer frames or a smaller size)"
            out.append(f"  {plan.stage:<11} offload {plan.offload:<10} peak {_gib(plan.peak_bytes)}{extras}{warning}")
        return out


def _gib(count: int) -> str:
    return f"{count / GiB:.1f} GiB"


def plan_stages(stages: tuple[str, ...], preset: Preset, *, dtype_bytes: int, budget_bytes: int | None, offload: str = AUTO,
                first_frame: bool = False, windows_per_call: int | None = None,
                input_shape: tuple[int, int, int] | None = None, compile: bool = False) -> MemoryPlan:
    """The plan for running `stages` ("text" first when the T5 embeddings are computed) with `preset`.

    `budget_bytes`: the accelerator memory the run may use (None on the CPU: every stage "none"). `offload`:
    "auto" picks, per stage, the fastest mode whose predicted peak times HEADROOM fits, else "sequential";
    a fixed mode is used for every stage. `input_shape`: (frames, height, width) of the video entering the
    first video stage (default: what the preset's earlier stages make). `compile`: compile the UNet blocks of
    the stages that do not run "sequential".
    """
    if budget_bytes is None:
        return MemoryPlan(None, tuple(StagePlan(stage, "none", 0, True, compiled=_compiles(compile, stage, "none")) for stage in stages),
                          compile)
    if offload != AUTO and offload not in OFFLOAD_MODES:
        raise InputError(f"unknown offload mode {offload!r}", f"use --offload {'|'.join((AUTO, *OFFLOAD_MODES))}")
    plans = []
    for stage, (frames, height, width) in stage_inputs(stages, preset, input_shape):
        shape = dict(frames=frames, height=height, width=width, first_frame=first_frame, windows_per_call=windows_per_call)
        use = stage_use(preset, stage, dtype_bytes, **shape)
        modes = OFFLOAD_MODES if offload == AUTO else (offload,)
        mode = next((mode for mode in modes if use.peak(mode, dtype_bytes) * HEADROOM <= budget_bytes), modes[-1])
        tiling = stage == "sr2" and use.peak(mode, dtype_bytes) * HEADROOM > budget_bytes
        if tiling:
            use = stage_use(preset, stage, dtype_bytes, **shape, vae_tiling=True)
        peak = use.peak(mode, dtype_bytes)
        plans.append(StagePlan(stage, mode, peak, peak * HEADROOM <= budget_bytes, tiling, _compiles(compile, stage, mode)))
    return MemoryPlan(budget_bytes, tuple(plans), compile)


def _compiles(compile: bool, stage: str, offload: str) -> bool:
    """Whether --compile compiles `stage`'s UNet blocks under `offload` (see the module docstring)."""
    return compile and stage in UNET_CONFIGS and offload != "sequential"


def stage_inputs(stages: tuple[str, ...], preset: Preset,
                 input_shape: tuple[int, int, int] | None = None) -> list[tuple[str, tuple[int, int, int]]]:
    """Each stage with the (frames, height, width) of the video it receives (see `plan_stages`)."""
    shape = input_shape or (preset.keyframes.frames, preset.keyframes.height, preset.keyframes.width)
    inputs = []
    for stage in stages:
        inputs.append((stage, shape))
        frames = shape[0]
        if stage == "keyframes":
            shape = (preset.keyframes.frames, preset.keyframes.height, preset.keyframes.width)
        elif stage == "interpolate":
            shape = ((frames - 1) * 4 + 1, *shape[1:])
        elif stage in ("sr1", "sr2"):
            settings = getattr(preset, stage)
            shape = (frames, settings.height, settings.width)
    return inputs
