"""The official Show-1 flow on a weights folder: the official side of benchmarks/official_parity.py.

Runs with the interpreter of an environment the official code imports in (diffusers 0.19, transformers
4.29: its pipelines do not import under current diffusers), not with show1's. It imports the pipelines,
unmodified, from a checkout of the official repository (`--official`), calls them in the order and with the
settings of its run_inference.py, on the CPU in fp32, with `--steps` steps per stage instead of the script's
75/75/70/125/50 and without model offload (a CUDA feature), and saves with torch.save:

    t5_prompt, t5_negative   pipe_base.encode_prompt(prompt), as the script calls it
    clip                     sr2's CLIP states, [negative, prompt], as its pipeline encodes them
    keyframes                (1, 3, 8, 40, 64)   from noise
    interpolation            (1, 3, 29, 40, 64)  from `keyframes`
    first_frame              (1, 3, 160, 256)    IF-II-L on frame 0 of `interpolation`
    sr1                      (1, 3, 29, 160, 256) from `interpolation`, anchored on `first_frame`
    sr1_windows              (4, 1, 3, 8, 160, 256) each sr1 window's own output, before the next overwrites a frame
    sr1_first_window_steps   (steps, 1, 3, 8, 160, 256) the first sr1 window's sample after each sampling step
    sr2_input                (29, 320, 576, 3)   uint8: `sr1` through the script's 8-bit images and PIL resize
    sr2                      (1, 3, 29, 320, 576) from `sr2_input`

Every output is the pipeline's raw `output_type="pt"` tensor (not clamped, as the script hands it on);
"seconds" holds each stage's wall time, "versions" those of torch, diffusers and transformers.

    python benchmarks/official/run_official.py --official DIR --weights DIR --steps N --seed S --prompt P --out FILE
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

# run_inference.py's settings (steps aside): sizes, guidance, noise levels, windows, sr2 strength and negative prompt.
KEYFRAMES = {"num_frames": 8, "height": 40, "width": 64, "guidance_scale": 9.0}
INTERPOLATION_GUIDANCE = 4.0
NEW_FRAMES_PER_PAIR = 3
FIRST_FRAME = {"guidance_scale": 4.0, "noise_level": 150}
SR1 = {"guidance_scale": 7.0, "noise_level": 250}
SR1_SCALE, SR1_WINDOW, SR1_STRIDE = 4, 8, 7
SR2_SIZE = (576, 320)  # PIL's (width, height)
SR2 = {"strength": 0.8, "negative_prompt": "low resolution, blur"}

FP32 = {"torch_dtype": torch.float32}


def load_pipelines(weights: Path) -> dict:
    from diffusers import IFSuperResolutionPipeline, VideoToVideoSDPipeline
    from showone.pipelines import TextToVideoIFInterpPipeline, TextToVideoIFPipeline
    from showone.pipelines.pipeline_t2v_sr_pixel_cond import TextToVideoIFSuperResolutionPipeline_Cond

    # IF-II-L as the script loads it (text_encoder=None); the weights folder holds only what show1's lock lists.
    no_extras = {"tokenizer": None, "safety_checker": None, "watermarker": None, "feature_extractor": None}
    pipelines = {
        "base": TextToVideoIFPipeline.from_pretrained(weights / "show-1-base", **FP32),
        "interpolation": TextToVideoIFInterpPipeline.from_pretrained(weights / "show-1-interpolation", **FP32),
        "first_frame": IFSuperResolutionPipeline.from_pretrained(weights / "IF-II-L-v1.0", text_encoder=None, **no_extras, **FP32),
        "sr1": TextToVideoIFSuperResolutionPipeline_Cond.from_pretrained(weights / "show-1-sr1", **FP32),
        "sr2": VideoToVideoSDPipeline.from_pretrained(weights / "show-1-sr2", **FP32),
    }
    pipelines["sr2"].enable_vae_slicing()
    for pipeline in pipelines.values():
        pipeline.set_progress_bar_config(disable=True)
    return pipelines


def keyframes(pipe, embeds: tuple, steps: int, seed: int) -> torch.Tensor:
    prompt_embeds, negative_embeds = embeds
    return pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, **KEYFRAMES,
                num_inference_steps=steps, generator=torch.manual_seed(seed), output_type="pt").frames


def interpolate(pipe, video: torch.Tensor, embeds: tuple, steps: int, seed: int) -> torch.Tensor:
    """One 5-frame window per neighbouring pair, all from one start noise, each written over the last one's end."""
    from diffusers.utils.torch_utils import randn_tensor

    batch, channels, frames, height, width = video.shape
    window = NEW_FRAMES_PER_PAIR + 2
    out = torch.zeros((batch, channels, (frames - 1) * (window - 1) + 1, height, width))
    start_noise = randn_tensor((batch, channels, window, height, width), generator=torch.manual_seed(seed), dtype=video.dtype)
    prompt_embeds, negative_embeds = embeds
    for pair in range(frames - 1):
        ends = torch.zeros((batch, channels, window, height, width))
        ends[:, :, 0], ends[:, :, -1] = video[:, :, pair], video[:, :, pair + 1]
        result = pipe(pixel_values=ends, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds,
                      num_frames=window, height=height, width=width, num_inference_steps=steps,
                      guidance_scale=INTERPOLATION_GUIDANCE, generator=torch.manual_seed(seed), output_type="pt",
                      init_noise=start_noise, cond_interpolation=True).frames
        out[:, :, pair * (window - 1) : pair * (window - 1) + window] = result
    return out


def first_frame(pipe, video: torch.Tensor, embeds: tuple, steps: int, seed: int) -> torch.Tensor:
    prompt_embeds, negative_embeds = embeds
    height, width = (size * SR1_SCALE for size in video.shape[-2:])
    return pipe(image=video[:, :, 0], prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds,
                height=height, width=width, num_inference_steps=steps, **FIRST_FRAME,
                generator=torch.manual_seed(seed), output_type="pt").images


def sr1(pipe, video: torch.Tensor, anchor: torch.Tensor, embeds: tuple, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of 8 frames every 7, reseeded; the first anchored on `anchor`, each later one on its first frame
    as the window before produced it. Returns the video, every window's own output and the first window's
    sample after each step, the last two stacked."""
    prompt_embeds, negative_embeds = embeds
    batch, channels, frames, height, width = video.shape
    height, width = height * SR1_SCALE, width * SR1_SCALE
    out = torch.zeros((batch, channels, frames, height, width))
    windows, first_window_steps = [], []
    for start in range(0, frames - SR1_WINDOW + 1, SR1_STRIDE):
        condition = anchor.unsqueeze(2) if start == 0 else out[:, :, start : start + 1]
        record = (lambda step, t, sample: first_window_steps.append(sample.clone())) if start == 0 else None
        windows.append(pipe(
            image=video[:, :, start : start + SR1_WINDOW], prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds,
            first_frame_cond=condition, height=height, width=width, num_inference_steps=steps, **SR1,
            generator=torch.manual_seed(seed), output_type="pt", callback=record,
        ).frames)
        out[:, :, start : start + SR1_WINDOW] = windows[-1]
    return out, torch.stack(windows), torch.stack(first_window_steps)


def sr2_input(video: torch.Tensor) -> np.ndarray:
    """The script's hand-over to sr2: 8-bit frames (tensor2vid), resized by PIL (bicubic)."""
    from PIL import Image
    from showone.pipelines.pipeline_t2v_base_pixel import tensor2vid

    return np.stack([np.asarray(Image.fromarray(frame).resize(SR2_SIZE)) for frame in tensor2vid(video.clone())])


def sr2(pipe, frames: np.ndarray, prompt: str, steps: int, seed: int) -> torch.Tensor:
    from PIL import Image

    return pipe(prompt, video=[Image.fromarray(frame) for frame in frames], num_inference_steps=steps,
                generator=torch.manual_seed(seed), output_type="pt", **SR2).frames


def clip_states(pipe, prompt: str) -> torch.Tensor:
    """sr2's text states as its pipeline computes them for guidance: [negative, prompt]."""
    return pipe._encode_prompt(prompt, pipe.device, 1, True, SR2["negative_prompt"])


class Timer:
    """Seconds per stage, kept under "seconds" in the saved file."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, function, *args):
        started = time.perf_counter()
        result = function(*args)
        self.seconds[name] = round(time.perf_counter() - started, 2)
        return result


def quiet() -> None:
    """No loading bars or config warnings: the pipelines load tiny checkpoints written by a newer diffusers."""
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()


@torch.no_grad()
def run(weights: Path, prompt: str, steps: int, seed: int) -> dict:
    quiet()
    pipes = load_pipelines(weights)
    timed = Timer()
    embeds = pipes["base"].encode_prompt(prompt)
    out = {"t5_prompt": embeds[0], "t5_negative": embeds[1], "clip": clip_states(pipes["sr2"], prompt)}
    out["keyframes"] = timed("keyframes", keyframes, pipes["base"], embeds, steps, seed)
    out["interpolation"] = timed("interpolation", interpolate, pipes["interpolation"], out["keyframes"], embeds, steps, seed)
    out["first_frame"] = timed("first_frame", first_frame, pipes["first_frame"], out["interpolation"], embeds, steps, seed)
    sr1_inputs = out["interpolation"], out["first_frame"], embeds, steps, seed
    out["sr1"], out["sr1_windows"], out["sr1_first_window_steps"] = timed("sr1", sr1, pipes["sr1"], *sr1_inputs)
    out["sr2_input"] = torch.from_numpy(sr2_input(out["sr1"]))
    out["sr2"] = timed("sr2", sr2, pipes["sr2"], out["sr2_input"].numpy(), prompt, steps, seed)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in out.items()}
    return {**tensors, "seconds": timed.seconds, "versions": versions()}


def versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"torch": str(torch.__version__), "diffusers": diffusers.__version__, "transformers": transformers.__version__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="a checkout of the official Show-1 repository")
    parser.add_argument("--weights", type=Path, required=True, help="a folder with the Show-1 components in their hub layouts")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(args.official.resolve()))  # `showone`, as run_inference.py imports it from its folder
    torch.save(run(args.weights, args.prompt, args.steps, args.seed), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
