"""Where and how models run: device, dtype, offloading, and peak-memory measurement."""

from __future__ import annotations

import inspect
import resource
import sys
from dataclasses import dataclass

import torch

from show1_cli import choices
from show1_cli.errors import InputError

DTYPES = dict(zip(choices.DTYPES, (torch.float16, torch.bfloat16, torch.float32), strict=True))
OFFLOAD_MODES = choices.OFFLOAD_MODES
OFFLOAD_CHOICES = choices.OFFLOAD_CHOICES


def dtype_name(dtype: torch.dtype) -> str:
    """The --dtype name of a torch dtype (fp16, bf16, fp32)."""
    return next(name for name, value in DTYPES.items() if value == dtype)


@dataclass(frozen=True)
class Runtime:
    """The device and dtype models run in, and how they are offloaded between uses.

    `offload`: "none" keeps the running stage's models on the accelerator; "model" keeps each model on
    the CPU until its forward pass (accelerate hooks, as the original ran); "sequential" moves weights
    layer by layer (least memory, slowest); "auto" lets the memory planner choose per stage
    (show1_cli/memory.py). Offloading only means something on an accelerator: on the CPU it is "none".
    `compile`: compile the UNets' blocks (`compile_blocks`) in the stages the plan allows (not under "sequential").
    """

    device: torch.device
    dtype: torch.dtype
    offload: str
    compile: bool = False

    @property
    def on_accelerator(self) -> bool:
        return self.device.type != "cpu"

    def memory_budget(self, max_memory: int | None = None) -> int | None:
        """The accelerator memory a run may use: what is free now, at most `max_memory` (None on the CPU)."""
        if self.device.type != "cuda":
            return None
        free, _ = torch.cuda.mem_get_info(self.device)
        return free if max_memory is None else min(free, max_memory)

    def reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _reset_peak_resident_memory()

    def peak_memory_bytes(self) -> int:
        """Peak memory since the last reset: allocated on the accelerator, resident in the process on the CPU."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return _peak_resident_memory()


# Linux keeps the process's peak resident size as VmHWM in /proc/self/status and resets it to the current size
# when "5" is written to /proc/self/clear_refs. Elsewhere the only figure is the lifetime peak (ru_maxrss).
_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def _reset_peak_resident_memory() -> None:
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _peak_resident_memory() -> int:
    try:
        with open(_STATUS) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def resolve_runtime(device: str = "auto", dtype: str = "auto", offload: str = "auto", compile: bool = False) -> Runtime:
    """Turn the CLI's --device/--dtype/--offload/--compile into a Runtime, checking that the machine can do it."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is available", "use --device cpu (slow) or --device auto")
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}", "use --device auto, cuda, cuda:N or cpu") from None

    if dtype == "auto":
        # The checkpoints are fp16 and the original ran in fp16; CPU kernels are fastest and exact in fp32.
        dtype = "fp16" if torch_device.type == "cuda" else "fp32"
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}", f"use --dtype auto, {', '.join(DTYPES)}")
    if torch_device.type == "cpu" and dtype == "fp16":
        raise InputError("--dtype fp16 is not supported on the CPU", "use --dtype fp32 or bf16 on the CPU")

    if offload not in OFFLOAD_CHOICES:
        raise InputError(f"unknown offload mode {offload!r}", f"use --offload {'|'.join(OFFLOAD_CHOICES)}")
    if compile and offload == "sequential":
        raise InputError("--compile cannot speed up --offload sequential: its per-layer weight moves break every compiled graph",
                         "use --offload auto, model or none with --compile, or drop --compile")
    if compile and "isolate_recompiles" not in inspect.signature(torch.compile).parameters:
        raise InputError(f"--compile needs torch.compile(isolate_recompiles=...), which torch {torch.__version__} lacks",
                         "install torch 2.13 or newer, or drop --compile")
    if torch_device.type == "cpu":
        offload = "none"
    return Runtime(device=torch_device, dtype=DTYPES[dtype], offload=offload, compile=compile)


def unet_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """A UNet's down, mid and up blocks: what `--compile` compiles."""
    return [block for block in (*model.down_blocks, model.mid_block, *model.up_blocks) if block is not None]


def compile_blocks(blocks: list[torch.nn.Module]) -> None:
    """Compile each of a UNet's `blocks` in place (regional compilation; names and weights unchanged).

    Blocks rather than the whole model: the Python around them (timesteps given as numbers or tensors, the
    skips, upsample sizes) stays eager and cannot cause recompiles, and accelerate's model-offload hook on the
    model's forward stays outside every graph. A block compiles at its first call; later calls with the same
    shapes reuse it. Static shapes: a stage calls its UNet with one shape, or two (sr1's shorter last window,
    interpolation's smaller last batch), each compiled once into the fastest kernels for it.
    """
    for block in blocks:
        # Every block of a kind shares one forward, and Dynamo counts its recompile limit (8) per function unless
        # told otherwise: the chain's 4 UNets have 17 down blocks, so without this the later stages would run eager.
        block.compile(dynamic=False, isolate_recompiles=True)


class ModelStore:
    """Loads each model once per process and keeps only the running stage's models on the accelerator.

    Models are loaded (by the caller's `load` function) onto the CPU in the runtime's dtype, then
    placed according to the offload mode: "none" moves them to the device; "model" installs
    accelerate's offload hooks chained like diffusers' `enable_model_cpu_offload` (a model goes to the
    device for its forward pass and back when the next one runs); "sequential" streams weights layer
    by layer. `offload` is the runtime's mode, or under "auto" the running stage's planned mode, which
    the chain sets before each stage (a model belongs to one stage, so it keeps the placement it got when
    loaded). Likewise `compile`: whether a UNet loaded now gets its blocks compiled (`compile_blocks`), the
    runtime's choice, or the running stage's in the plan. `end_stage()` sends everything back to the CPU so
    the next stage starts with an empty accelerator; a batch of prompts reuses the loaded models.
    """

    def __init__(self, runtime: Runtime):
        import diffusers
        import transformers

        # The libraries' per-file loading bars would interleave with show1's own progress display.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        self.runtime = runtime
        self.offload = "model" if runtime.offload == "auto" else runtime.offload
        self.compile = runtime.compile and self.offload != "sequential"
        self._models: dict[str, torch.nn.Module] = {}
        self._hooks: dict[str, object] = {}
        self._last_hook: object | None = None

    def get(self, key: str, load, unet: bool = False) -> torch.nn.Module:
        """The model `key` (loaded by `load()` the first time); a `unet`'s blocks are compiled when `compile` says so."""
        if key not in self._models:
            model = load()
            model.requires_grad_(False)
            model.eval()
            if unet and self.compile:
                compile_blocks(unet_blocks(model))
            self._models[key] = model
        model = self._models[key]
        self._place(key, model)
        return model

    def _place(self, key: str, model: torch.nn.Module) -> None:
        runtime = self.runtime
        if self.offload == "none" and key not in self._hooks:
            model.to(runtime.device)
        elif self.offload == "model" and key not in self._hooks:
            from accelerate import cpu_offload_with_hook

            _, hook = cpu_offload_with_hook(model, runtime.device, prev_module_hook=self._last_hook)
            self._hooks[key] = self._last_hook = hook
        elif self.offload == "sequential" and key not in self._hooks:
            from accelerate import cpu_offload

            cpu_offload(model, runtime.device)
            self._hooks[key] = "sequential"

    def drop(self, key: str) -> None:
        """Forget a model for good (for example the text encoder once its embeddings are computed)."""
        model = self._models.pop(key, None)
        hook = self._hooks.pop(key, None)
        if hook is not None and hook is self._last_hook:
            self._last_hook = None
        if model is not None and hook is None:
            model.to("cpu")
        self._empty_cache()

    def end_stage(self) -> None:
        """Move every model off the accelerator (they stay loaded on the CPU for the next batch item)."""
        for key, model in self._models.items():
            hook = self._hooks.get(key)
            if hook is None:
                model.to("cpu")
            elif hasattr(hook, "offload"):
                hook.offload()
        self._empty_cache()

    def _empty_cache(self) -> None:
        if self.runtime.device.type == "cuda":
            torch.cuda.empty_cache()
