"""Speed and memory of the default chain's real workloads, with random weights at the real model sizes.

Builds the four Show-1 UNets from their real configs (show1_cli/hub_configs), the T5 v1.1 XXL text encoder
from its real config and the sr2 VAE from the zeroscope layout, all with random weights (speed and memory
do not depend on the values, and nothing is downloaded), and runs each stage through the stage's own
sampling function with the default preset's shapes: batch sizes with guidance batching, interpolation
windows, sr1 windows, sr2 strength and step counts (or `--steps-scale` of them). Per stage it prints and
writes to benchmarks/results/full_size[-TAG].json:
- the time, the number of UNet calls and the time per call (the stage's time over its calls, so the
  scheduler steps and, for sr2, the VAE are included);
- the peak memory: allocated accelerator memory on CUDA; on the CPU the stage's own peak resident memory
  (how show1's progress display measures it, show1_cli/runtime.py);
- the weights' size in the run's dtype beside the planner's predicted peak (show1_cli/memory.py), so that a
  CUDA run checks the planner's activation allowances;
- the FLOPs of one UNet call (torch.utils.flop_counter on the stage's first call, rerun once after the
  timing) times the calls, and with `--peak-tflops` the achieved fraction of that peak rate;
- with `--compile`, `--channels-last` or `--sdpa BACKEND`, each of these fast paths beside eager in the same
  run, on the same input and seed: the stage's warm time with it (the fastest of `--repeats` runs after the
  first, so that a compiled stage runs compiled graphs only) against eager's warm time as a ratio (eager /
  fast path: above 1 is faster), the largest difference of the stage's first UNet call from eager's,
  relative to eager's largest value (the stage's output is no measure here: from random weights the
  samplers' thresholding turns float rounding into any difference), and for `--compile` the compile time
  (first run minus warm time), the graphs compiled and those compiled again in the warm runs (0: no
  recompiles). The comparisons' times are wall seconds on CUDA and the process's CPU seconds on the CPU (one
  thread: the wall time of an idle machine; a shared machine's other processes do not enter them), the
  compile time is wall seconds (the C++ compiler runs in its own processes). `--repeats 3` or more keeps
  the remaining noise out of the ratios. `--compile` compiles the
  UNet's blocks as `show1 --compile` does; `--channels-last` puts its 2D convolutions in channels-last;
  `--sdpa` runs with only that attention backend. The text encoder runs eager only.

Not covered: sr1's first frame (IF-II-L, gated; the default `--first-frame auto` runs without it when it is
absent, and its real config is not in show1_cli/hub_configs), sr2's CLIP text encoder (one call, 340M
parameters) and the VAE's FLOPs.

On the CPU it runs `--scale 0.25` by default (widths and frame sizes a quarter, frame counts, windows and
batches as the real run) with a few steps per stage, a smoke check of the code path; its figures say
nothing about the real sizes. On CUDA it runs at full size:

    python benchmarks/full_size.py --device cuda --dtype bf16 --peak-tflops 989 --tag h200-bf16
    python benchmarks/full_size.py            # CPU smoke
    python benchmarks/full_size.py --device cuda --compile --channels-last --sdpa flash --sdpa cudnn --tag h200-fast-paths
    # CPU smoke of the fast paths (an empty TORCHINDUCTOR_CACHE_DIR, then again with it filled: tag compile-cpu-warm-cache)
    python benchmarks/full_size.py --scale 0.0625 --steps-scale 0.03 --compile --channels-last --sdpa math --sdpa flash \
        --repeats 3 --tag compile-cpu
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path

import diffusers
import torch
from torch._dynamo.utils import counters
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.sr2_vae_decoding import VAE_CONFIG  # noqa: E402
from show1_cli import memory  # noqa: E402
from show1_cli.models import UNet3DConditionModel  # noqa: E402
from show1_cli.presets import SIZE_MULTIPLE, Preset, load_preset  # noqa: E402
from show1_cli.progress import format_bytes  # noqa: E402
from show1_cli.runtime import DTYPES, ModelStore, Runtime, compile_blocks, unet_blocks  # noqa: E402
from show1_cli.stages.interpolate import interpolate_video  # noqa: E402
from show1_cli.stages.keyframes import generate_keyframes  # noqa: E402
from show1_cli.stages.sampling import scheduler_from_config  # noqa: E402
from show1_cli.stages.sr1 import super_resolve  # noqa: E402
from show1_cli.stages.sr2 import translate  # noqa: E402
from show1_cli.training.scaffold import IMAGE_NOISING_SCHEDULER, hub_config, t5_xxl_config  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
STAGES = ("text", "keyframes", "interpolate", "sr1", "sr2")
TOKENS = 77
CHANNEL_MULTIPLE = 32  # the models' group norms have 32 groups
SEED = 0
SDPA_BACKENDS = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                 "cudnn": SDPBackend.CUDNN_ATTENTION}


def scaled(channels: int, scale: float) -> int:
    return max(CHANNEL_MULTIPLE, round(channels * scale / CHANNEL_MULTIPLE) * CHANNEL_MULTIPLE)


def unet_config(component: str, scale: float) -> dict:
    """The real UNet config; below scale 1 with every width scaled and the tiny test checkpoints' head counts."""
    config = hub_config(f"unet-{component}.json")
    if scale == 1:
        return config
    config["block_out_channels"] = [scaled(width, scale) for width in config["block_out_channels"]]
    for key in ("cross_attention_dim", "encoder_hid_dim", "time_embedding_dim"):
        if config[key] is not None:
            config[key] = scaled(config[key], scale)
    if component == "show-1-sr2":
        config["attention_head_dim"] = 4  # ModelScope-style blocks read it as the number of heads
    else:
        config["attention_head_dim"], config["addition_embed_type_num_heads"] = 16, 4
    return config


def text_encoder_config(scale: float):
    config = t5_xxl_config()
    if scale != 1:
        config.update({"d_model": scaled(config.d_model, scale), "d_ff": scaled(config.d_ff, scale),
                       "num_heads": max(1, round(config.num_heads * scale))})
    return config


def build(runtime: Runtime, make) -> torch.nn.Module:
    """A random-weight model, initialised directly on the accelerator (fast) and cast to the run's dtype."""
    init_device = runtime.device if runtime.offload == "none" else "cpu"
    with torch.device(init_device):
        return make().to(runtime.dtype)


def scaled_preset(scale: float, steps_scale: float) -> Preset:
    """The default preset with frame sizes times `scale` (kept to each model's multiple) and steps times `steps_scale`."""
    preset = load_preset("default")
    overrides = []
    for stage, multiple in SIZE_MULTIPLE.items():
        settings = getattr(preset, stage)
        for key in ("height", "width"):
            overrides.append(f"{stage}.{key}={max(multiple, round(getattr(settings, key) * scale / multiple) * multiple)}")
    for stage in ("keyframes", "interpolate", "sr1", "sr2"):
        overrides.append(f"{stage}.steps={max(1, round(getattr(preset, stage).steps * steps_scale))}")
    if preset.sr2.steps * steps_scale < 1 / preset.sr2.strength:  # sr2 runs int(steps x strength) steps: at least one
        overrides[-1] = f"sr2.steps={int(1 / preset.sr2.strength) + 1}"
    return load_preset("default", overrides)


class CallCounter:
    """Counts a model's forward calls and keeps the first call's inputs for the FLOP count and the fast paths' check."""

    def __init__(self, model: torch.nn.Module):
        self.calls = 0
        self.first: tuple[tuple, dict] | None = None
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        if self.first is None:
            self.first = (args, dict(kwargs))
        self.calls += 1

    def first_call(self, model: torch.nn.Module):
        """The model's first call again."""
        self._handle.remove()
        args, kwargs = self.first
        with torch.no_grad():
            return model(*args, **kwargs)

    def flops(self, model: torch.nn.Module) -> tuple[int, object]:
        """The FLOPs and the output of the first call."""
        with FlopCounterMode(display=False) as counter:
            output = self.first_call(model)
        return counter.get_total_flops(), output


def synchronize(runtime: Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)


def timed(runtime: Runtime, run) -> tuple[float, float, torch.Tensor]:
    """Wall and process CPU seconds of `run(generator)` with a freshly seeded generator, and its output."""
    synchronize(runtime)
    wall, cpu = time.perf_counter(), time.process_time()
    output = run(torch.Generator().manual_seed(SEED))
    synchronize(runtime)
    return time.perf_counter() - wall, time.process_time() - cpu, output


def warm_seconds(runtime: Runtime, run, repeats: int) -> tuple[float, float]:
    """Wall seconds and the comparisons' seconds (module docstring): the fastest of `repeats` runs of a stage that has
    run once (warm caches, compiled graphs)."""
    runs = [timed(runtime, run)[:2] for _ in range(repeats)]
    return min(wall for wall, _ in runs), min(wall if runtime.device.type == "cuda" else cpu for wall, cpu in runs)


@contextlib.contextmanager
def channels_last(model: torch.nn.Module):
    """The model's 2D convolutions in channels-last (the temporal ones are Conv3d: their weights stay as they are)."""
    convs = [module for module in model.modules() if isinstance(module, torch.nn.Conv2d)]
    for conv in convs:
        conv.to(memory_format=torch.channels_last)
    yield
    for conv in convs:
        conv.to(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def compiled(model: torch.nn.Module):
    """The model's blocks compiled as `show1 --compile` compiles them; they stay compiled (this fast path runs last)."""
    compile_blocks(unet_blocks(model))
    yield


def fast_path(name: str, model: torch.nn.Module):
    """The context in which `model` runs the fast path `name` (compile, channels-last, sdpa-BACKEND)."""
    if name == "compile":
        return compiled(model)
    if name == "channels-last":
        return channels_last(model)
    return sdpa_kernel(SDPA_BACKENDS[name.removeprefix("sdpa-")])


def compare(name: str, runtime: Runtime, counter: CallCounter, model: torch.nn.Module, run, eager_seconds: float,
            eager_prediction: torch.Tensor, repeats: int) -> dict:
    """A stage run with fast path `name` against eager: ratio of the warm times, difference, compile figures."""
    graphs = counters["stats"]["unique_graphs"]
    with fast_path(name, model):
        first_wall, _, _ = timed(runtime, run)
        first_graphs = counters["stats"]["unique_graphs"] - graphs
        wall, seconds = warm_seconds(runtime, run, repeats)
        prediction = counter.first_call(model).sample
    difference = (prediction.float() - eager_prediction.float()).abs().max() / eager_prediction.float().abs().max()
    result = {"seconds": round(seconds, 3), "ratio": round(eager_seconds / seconds, 3), "relative_difference": float(difference)}
    if name == "compile":
        result.update(compile_seconds=round(first_wall - wall, 3), graphs=first_graphs,
                      graphs_recompiled=counters["stats"]["unique_graphs"] - graphs - first_graphs)
    return result


def measure(name: str, runtime: Runtime, model: torch.nn.Module, run, fast_paths: tuple[str, ...] = (),
            repeats: int = 1) -> tuple[dict, torch.Tensor]:
    """Time one stage's `run(generator)` and count its calls of `model`, its peak memory and FLOPs; then each fast path."""
    counter = CallCounter(model)
    runtime.reset_peak_memory()
    seconds, _, output = timed(runtime, run)
    peak = runtime.peak_memory_bytes()
    flops, first_output = counter.flops(model)
    result = {"stage": name, "seconds": round(seconds, 3), "unet_calls": counter.calls,
              "seconds_per_call": round(seconds / counter.calls, 4), "peak_memory_bytes": peak, "flops": flops * counter.calls}
    if fast_paths:
        _, warm = warm_seconds(runtime, run, repeats)
        result["eager_warm_seconds"] = round(warm, 3)
        result["fast_paths"] = {path: compare(path, runtime, counter, model, run, warm, first_output.sample, repeats)
                                for path in fast_paths}
    return result, output


def run_chain(preset: Preset, runtime: Runtime, scale: float, stages: tuple[str, ...], fast_paths: tuple[str, ...] = (),
              repeats: int = 1) -> list[dict]:
    """Each stage on the output of the eager stage before it, every run from the same seed."""
    models = ModelStore(runtime)
    text_dim = scaled(4096, scale) if scale != 1 else 4096
    prompt, negative = (torch.randn(1, TOKENS, text_dim, dtype=runtime.dtype) for _ in range(2))
    video = torch.rand(preset.keyframes.frames, 3, preset.keyframes.height, preset.keyframes.width) * 2 - 1
    base_scheduler = hub_config("scheduler-show-1-base.json")  # also interpolation's and (INFERRED) sr1's
    results = []

    def stage_done(result: dict, *used: torch.nn.Module) -> None:
        models.end_stage()
        result["weights_bytes"] = sum(parameter.numel() * parameter.element_size() for model in used for parameter in model.parameters())
        results.append(result)
        print_row(result)

    if "text" in stages:
        from transformers import T5EncoderModel

        encoder = models.get("text", lambda: build(runtime, lambda: T5EncoderModel(text_encoder_config(scale))))
        ids = torch.randint(0, 32000, (1, TOKENS), device=runtime.device)
        result, _ = measure("text", runtime, encoder, lambda generator: [encoder(input_ids=ids) for _ in range(2)])
        models.drop("text")
        stage_done(result, encoder)

    def unet(component: str) -> torch.nn.Module:
        return models.get(component, lambda: build(runtime, lambda: UNet3DConditionModel.from_config(unet_config(component, scale))))

    common = dict(prompt_embeds=prompt, negative_embeds=negative, device=runtime.device, dtype=runtime.dtype)
    if "keyframes" in stages:
        settings = preset.keyframes
        model = unet("show-1-base")
        result, video = measure("keyframes", runtime, model, lambda generator: generate_keyframes(
            model, scheduler_from_config(base_scheduler), frames=settings.frames, height=settings.height, width=settings.width,
            steps=settings.steps, guidance_scale=settings.guidance_scale, generator=generator, **common), fast_paths, repeats)
        stage_done(result, model)
    if "interpolate" in stages:
        settings = preset.interpolate
        model = unet("show-1-interpolation")
        result, video = measure("interpolate", runtime, model, lambda generator: interpolate_video(
            model, scheduler_from_config(base_scheduler), video, steps=settings.steps, guidance_scale=settings.guidance_scale,
            generator=generator, **common), fast_paths, repeats)
        stage_done(result, model)
    if "sr1" in stages:
        settings = preset.sr1
        model = unet("show-1-sr1")
        result, video = measure("sr1", runtime, model, lambda generator: super_resolve(
            model, scheduler_from_config(base_scheduler), scheduler_from_config(IMAGE_NOISING_SCHEDULER), video,
            height=settings.height, width=settings.width, steps=settings.steps, guidance_scale=settings.guidance_scale,
            noise_level=settings.noise_level, window=settings.window, stride=settings.stride, generator=generator, **common).cpu(),
            fast_paths, repeats)
        stage_done(result, model)
    if "sr2" in stages:
        from diffusers import AutoencoderKL

        settings = preset.sr2
        vae_config = {**VAE_CONFIG, "block_out_channels": [scaled(width, scale) for width in VAE_CONFIG["block_out_channels"]]}
        vae = models.get("vae", lambda: build(runtime, lambda: AutoencoderKL(**vae_config)))
        model = unet("show-1-sr2")
        clip_dim = unet_config("show-1-sr2", scale)["cross_attention_dim"]
        clip_prompt, clip_negative = (torch.randn(1, TOKENS, clip_dim, dtype=runtime.dtype) for _ in range(2))
        result, video = measure("sr2", runtime, model, lambda generator: translate(
            model, vae, scheduler_from_config(hub_config("scheduler-show-1-sr2.json")), video, height=settings.height,
            width=settings.width, prompt_embeds=clip_prompt, negative_embeds=clip_negative, steps=settings.steps,
            guidance_scale=settings.guidance_scale, strength=settings.strength, generator=generator, device=runtime.device,
            dtype=runtime.dtype), fast_paths, repeats)
        stage_done(result, model, vae)
    return results


def print_row(result: dict) -> None:
    print(f"{result['stage']:>11}: {result['seconds']:8.2f} s, {result['unet_calls']:4d} calls x {result['seconds_per_call']:7.3f} s, "
          f"peak {format_bytes(result['peak_memory_bytes']):>10} (weights {format_bytes(result['weights_bytes'])}), "
          f"{result['flops'] / 1e12:9.3f} TFLOP", flush=True)
    for name, path in result.get("fast_paths", {}).items():
        compile_figures = (f", compile {path['compile_seconds']:.1f} s, {path['graphs']} graphs, {path['graphs_recompiled']} "
                           "recompiled in the warm runs" if name == "compile" else "")
        print(f"{'':>11}  {name}: {path['seconds']:.2f} s warm against eager's {result['eager_warm_seconds']:.2f} s, ratio "
              f"{path['ratio']:.2f}, first UNet call differs by {path['relative_difference']:.1e}{compile_figures}", flush=True)


def chain_fast_paths(results: list[dict], fast_paths: tuple[str, ...]) -> dict[str, dict]:
    """Each fast path over the stages that ran it: eager's warm time over its warm time, and its compile time."""
    stages = [result for result in results if "fast_paths" in result]
    eager = sum(result["eager_warm_seconds"] for result in stages)
    summary = {}
    for name in fast_paths:
        figures = [result["fast_paths"][name] for result in stages]
        summary[name] = {"ratio": round(eager / sum(figure["seconds"] for figure in figures), 3)}
        if name == "compile":
            summary[name]["compile_seconds"] = round(sum(figure["compile_seconds"] for figure in figures), 1)
    return summary


def predicted_peaks(preset: Preset, stages: tuple[str, ...], runtime: Runtime) -> dict[str, int]:
    """The planner's predicted peak of each stage under the run's offload mode (show1_cli/memory.py)."""
    dtype_bytes = runtime.dtype.itemsize
    uses = {stage: memory.stage_use(preset, stage, dtype_bytes, frames=frames, height=height, width=width)
            for stage, (frames, height, width) in memory.stage_inputs(stages, preset)}
    return {stage: use.peak(runtime.offload, dtype_bytes) for stage, use in uses.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="default: fp16 on CUDA, fp32 on the CPU")
    parser.add_argument("--offload", choices=memory.OFFLOAD_MODES, default="none")
    parser.add_argument("--scale", type=float, default=None, help="widths and frame sizes (default: 1 on CUDA, 0.25 on the CPU)")
    parser.add_argument("--steps-scale", type=float, default=None, help="fraction of each stage's steps (default: 1 on CUDA, "
                        "0.04 on the CPU)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak rate in the run's dtype, e.g. 989 "
                        "for an H100/H200 in bf16 or fp16 (dense)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--compile", action="store_true", help="also run each stage with its UNet's blocks compiled (show1 --compile)")
    parser.add_argument("--channels-last", action="store_true", help="also run each stage with its UNet's convolutions channels-last")
    parser.add_argument("--sdpa", action="append", default=[], choices=tuple(SDPA_BACKENDS), help="also run each stage with only this "
                        "attention backend (repeatable)")
    parser.add_argument("--repeats", type=int, default=1, help="with fast paths: warm time = the fastest of this many runs")
    parser.add_argument("--tag", default=None, help="results go to full_size-TAG.json")
    args = parser.parse_args()
    if args.compile and args.offload == "sequential":
        parser.error("--compile cannot run with --offload sequential (show1 refuses it too)")
    # compile last: its blocks stay compiled
    fast_paths = (*(f"sdpa-{name}" for name in args.sdpa), *(["channels-last"] if args.channels_last else []),
                  *(["compile"] if args.compile else []))
    clock = "wall" if args.device.startswith("cuda") else "process CPU"
    diffusers.utils.logging.set_verbosity_error()  # casting a random-weight model with .to(dtype) is what is meant here

    device = torch.device(args.device)
    on_cpu = device.type == "cpu"
    dtype = DTYPES[args.dtype or ("fp32" if on_cpu else "fp16")]
    scale = args.scale if args.scale is not None else (0.25 if on_cpu else 1.0)
    steps_scale = args.steps_scale if args.steps_scale is not None else (0.04 if on_cpu else 1.0)
    stages = tuple(stage.strip() for stage in args.stages.split(","))
    runtime = Runtime(device, dtype, "none" if on_cpu else args.offload)
    preset = scaled_preset(scale, steps_scale)
    torch.manual_seed(0)
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {device} {args.dtype or dtype}, "
          f"offload {runtime.offload}, scale {scale}, steps x {steps_scale}"
          + (f", against {', '.join(fast_paths)} ({clock} seconds)" if fast_paths else ""),
          flush=True)

    started = time.perf_counter()
    results = run_chain(preset, runtime, scale, stages, fast_paths, args.repeats)
    predicted = predicted_peaks(preset, stages, runtime) if scale == 1 else {}
    for result in results:
        if predicted:  # the planner's figures are for the real sizes
            result["predicted_peak_bytes"] = predicted[result["stage"]]
        if args.peak_tflops:
            result["fraction_of_peak"] = round(result["flops"] / result["seconds"] / (args.peak_tflops * 1e12), 4)
    total_flops = sum(result["flops"] for result in results)
    total_seconds = sum(result["seconds"] for result in results)
    print(f"{'chain':>11}: {total_seconds:8.2f} s, {total_flops / 1e12:.3f} TFLOP"
          + (f", {total_flops / total_seconds / (args.peak_tflops * 1e12):.1%} of {args.peak_tflops} TFLOP/s"
             if args.peak_tflops else "") + f" (run {time.perf_counter() - started:.0f} s with setup)")
    summary = chain_fast_paths(results, fast_paths)
    for name, figures in summary.items():
        compile_time = f", compile {figures['compile_seconds']:.1f} s" if name == "compile" else ""
        print(f"{'':>11}  {name}: ratio {figures['ratio']:.2f} over the UNet stages{compile_time}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (f"full_size-{args.tag}.json" if args.tag else "full_size.json")
    path.write_text(json.dumps({
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": str(dtype).removeprefix("torch."),
        "offload": runtime.offload, "scale": scale, "steps_scale": steps_scale, "peak_tflops": args.peak_tflops, "repeats": args.repeats,
        "preset": preset.to_dict(), "stages": results, "total_seconds": round(total_seconds, 3), "total_flops": total_flops,
        "fast_paths": summary, "fast_path_clock": clock if fast_paths else None,
    }, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
