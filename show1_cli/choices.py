"""The fixed sets of values show1's options take.

They live apart from the code that acts on them (runtime, stages, finetune, models) so that the command
line can list and check them without importing torch.
"""

from __future__ import annotations

DTYPES = ("fp16", "bf16", "fp32")
OFFLOAD_MODES = ("none", "model", "sequential")
# auto: the memory planner picks one of OFFLOAD_MODES per stage (show1_cli/memory.py).
OFFLOAD_CHOICES = ("auto", *OFFLOAD_MODES)
# sr1's first frame: IF-II-L when present (auto), always (if) or never (none); see stages/first_frame.py.
FIRST_FRAMES = ("auto", "if", "none")
# Each stage's sampler: its checkpoint's own scheduler config (default), DPM-Solver++ 2M or UniPC built from that
# config (show1_cli/stages/sampling.py).
SCHEDULERS = ("default", "dpm", "unipc")
# Where generation with a motion adapter starts: fresh noise, or the DDIM inversion of its reference clip.
MOTION_INITS = ("noise", "inversion")
# The temporal parameters `finetune-motion` trains, from fewest to most.
TRAINABLE_SETS = ("qkv", "attention", "temporal")
# What -o can name (show1_cli/video.py writes them).
OUTPUT_FORMATS = ".mp4, .mkv, .webm or .gif, or a name without suffix for a folder of PNG frames"
