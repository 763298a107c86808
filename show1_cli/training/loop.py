"""The one training loop of show1: every stage, and motion fine-tuning, train through `train`.

It runs on Hugging Face accelerate's `Accelerator`, so the same command trains on the CPU, one GPU, or
data-parallel on many GPUs and machines under `accelerate launch` or `torchrun`, with no distributed
code here beyond splitting each batch by rank.

Determinism: every example of the global batch of step s, micro-batch m, position j draws everything
random (clip, crop, timestep, noise) from its own generator seeded with (seed, s, m, j); process r of P
computes positions r*B..(r+1)*B-1. A run on P processes with --batch-size B therefore sees exactly the
batches a 1-process run with --batch-size P*B sees, and resuming at step s draws what an uninterrupted
run draws. Dropout is reseeded per step and rank the same way.

Checkpoints (the trained parameters, optimizer, learning-rate schedule, EMA and the losses so far) are
written by the main process to a temporary file and renamed into place, and read back with
`torch.load(weights_only=True)`: no pickled code is ever executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from show1_cli.errors import InputError, StageError
from show1_cli.training.objectives import Objective

CHECKPOINT_FORMAT = 2
MIXED_PRECISION = ("no", "fp16", "bf16")
# diffusers' learning-rate schedules, each after the linear warm-up; the decaying ones reach 0 at the last step.
LR_SCHEDULERS = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation settings of a run (what a checkpoint must agree on, except `steps`)."""

    steps: int
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-4
    warmup: int = 0
    lr_scheduler: str = "constant"
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    seed: int = 0
    mixed_precision: str = "no"
    ema: bool = False
    ema_max_decay: float = 0.9999

    def fingerprint(self) -> dict[str, Any]:
        values = asdict(self)
        if self.lr_scheduler == "constant":  # only a constant rate lets a resumed run go on for more steps
            values.pop("steps")
        return values


@dataclass(frozen=True)
class StepLog:
    """Reported after every optimizer step: step (1-based), total, mean loss over the global batch, learning rate."""

    step: int
    total: int
    loss: float
    lr: float


@dataclass
class TrainResult:
    model: torch.nn.Module  # the trained model (EMA weights when --ema), unwrapped, in eval mode
    parameters: dict[str, torch.Tensor]  # the trained parameters by name (CPU, fp32)
    losses: list[float] = field(default_factory=list)


def example_seed(seed: int, step: int, micro: int, position: int) -> int:
    digest = hashlib.sha256(f"show1-train/{seed}/{step}/{micro}/{position}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([torch.as_tensor(example[key]) for example in examples]) for key in examples[0]}


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator

    _check_config(config)
    # Without CUDA, accelerate only joins a torchrun/accelerate-launch process group when told it runs on the CPU.
    cpu = not torch.cuda.is_available()
    if config.mixed_precision not in MIXED_PRECISION:
        raise InputError(f"--mixed-precision {config.mixed_precision} is not one of {', '.join(MIXED_PRECISION)}",
                         "use --mixed-precision no, fp16 or bf16")
    if config.mixed_precision == "fp16" and cpu:
        raise InputError("--mixed-precision fp16 needs a CUDA GPU", "use --mixed-precision bf16 or no on the CPU")
    return Accelerator(mixed_precision=config.mixed_precision, cpu=cpu)


def _check_config(config: TrainConfig) -> None:
    for name in ("steps", "batch_size", "grad_accum"):
        flag = "--" + name.replace("_", "-")
        if getattr(config, name) < 1:
            raise InputError(f"{flag} {getattr(config, name)} must be at least 1", f"pass {flag} 1 or more")
    if not (config.lr > 0 and math.isfinite(config.lr)):
        raise InputError(f"--lr {config.lr} must be a positive number", "use --lr 1e-4")
    if config.warmup < 0:
        raise InputError(f"--warmup {config.warmup} must be 0 or more", "use --warmup 0")
    if config.lr_scheduler not in LR_SCHEDULERS:
        raise InputError(f"--lr-scheduler {config.lr_scheduler} is not one of {', '.join(LR_SCHEDULERS)}",
                         "use --lr-scheduler constant, cosine or linear")


def train(
    model: torch.nn.Module,
    parameters: Iterable[torch.nn.Parameter],
    objective: Objective,
    config: TrainConfig,
    *,
    accelerator,
    identity: dict[str, Any] | None = None,
    resume: Path | None = None,
    checkpoint_path: Path | None = None,
    checkpoint_every: int = 0,
    on_step: Callable[[StepLog], None] | None = None,
    on_validate: Callable[[int, torch.nn.Module], None] | None = None,
    validate_every: int = 0,
    gradient_checkpointing: bool = False,
) -> TrainResult:
    """Train `parameters` of `model` (the others stay frozen) on `objective`'s examples for `config.steps` steps.

    `accelerator`: from `make_accelerator(config)`, which also checks the config.
    `identity`: what else a checkpoint must agree on to be resumed (the data, the reference clip, ...).
    `on_validate(step, model)` sees the model in eval mode with the EMA weights when there are any.
    """
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    trainable = list(parameters)
    chosen = {id(parameter) for parameter in trainable}
    names = [name for name, parameter in model.named_parameters() if id(parameter) in chosen]
    model.requires_grad_(False)
    for parameter in trainable:
        parameter.data = parameter.data.float()
        parameter.requires_grad_(True)
    if gradient_checkpointing and hasattr(model, "enable_gradient_checkpointing"):
        model.enable_gradient_checkpointing()
    model.train()
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    schedule = "constant_with_warmup" if config.lr_scheduler == "constant" else config.lr_scheduler
    lr_scheduler = get_scheduler(schedule, optimizer, num_warmup_steps=config.warmup, num_training_steps=config.steps)
    ema = EMAModel(trainable, decay=config.ema_max_decay, use_ema_warmup=True, power=2 / 3) if config.ema else None
    prepared, optimizer = accelerator.prepare(model, optimizer)

    start, losses = 0, []
    if resume is not None:
        start, losses = _restore(resume, model, names, optimizer, lr_scheduler, ema, config, identity or {})

    rank = accelerator.process_index
    for step in range(start + 1, config.steps + 1):
        torch.manual_seed(example_seed(config.seed, step, -1, rank))  # dropout
        step_loss = torch.zeros((), device=accelerator.device)
        for micro in range(config.grad_accum):
            examples = [
                objective.example(torch.Generator().manual_seed(example_seed(config.seed, step, micro, position)))
                for position in range(rank * config.batch_size, (rank + 1) * config.batch_size)
            ]
            batch = {key: value.to(accelerator.device) for key, value in collate(examples).items()}
            sync = contextlib.nullcontext() if micro == config.grad_accum - 1 else accelerator.no_sync(prepared)
            with sync, accelerator.autocast():
                loss = objective.loss(prepared, batch)
            if not torch.isfinite(loss):
                raise StageError(f"training diverged: the loss became {loss.item()} at step {step}", "lower --lr or raise --warmup")
            accelerator.backward(loss / config.grad_accum)
            step_loss += loss.detach() / config.grad_accum
        accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(trainable)
        mean_loss = float(accelerator.reduce(step_loss, reduction="mean"))
        losses.append(mean_loss)

        if on_step is not None and accelerator.is_main_process:
            on_step(StepLog(step, config.steps, mean_loss, lr_scheduler.get_last_lr()[0]))
        if checkpoint_path is not None and checkpoint_every and step % checkpoint_every == 0:
            if accelerator.is_main_process:
                save_checkpoint(checkpoint_path, step, model, names, optimizer, lr_scheduler, ema, config, identity or {}, losses)
            accelerator.wait_for_everyone()
        if on_validate is not None and validate_every and step % validate_every == 0 and accelerator.is_main_process:
            with _evaluated(model, trainable, ema):
                on_validate(step, model)
            model.train()

    model = accelerator.unwrap_model(prepared)
    if ema is not None:
        ema.copy_to(trainable)
    if gradient_checkpointing and hasattr(model, "disable_gradient_checkpointing"):
        model.disable_gradient_checkpointing()
    return TrainResult(model.eval(), _named(model, names), losses)


def _named(model: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    parameters = dict(model.named_parameters())
    return {name: parameters[name].detach().float().cpu().clone() for name in names}


@contextlib.contextmanager
def _evaluated(model: torch.nn.Module, trainable: list[torch.nn.Parameter], ema):
    """The model in eval mode with the EMA weights swapped in (when there is an EMA), restored after."""
    model.eval()
    if ema is None:
        yield
        return
    ema.store(trainable)
    ema.copy_to(trainable)
    try:
        yield
    finally:
        ema.restore(trainable)


def save_checkpoint(path: Path, step: int, model, names: list[str], optimizer, lr_scheduler, ema, config: TrainConfig,
                    identity: dict[str, Any], losses: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "config": config.fingerprint(),
        "identity": identity,
        "parameters": _named(model, names),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "losses": list(losses),
    }
    temp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        torch.save(state, temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint`, loaded without executing any pickled code."""
    fix = "pass the checkpoint file (.pt) the interrupted run wrote"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint {path} does not exist", fix) from None
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise InputError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}", fix) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a show1 training checkpoint (format {CHECKPOINT_FORMAT})", fix)
    return state


def _restore(path: Path, model, names: list[str], optimizer, lr_scheduler, ema, config: TrainConfig,
             identity: dict[str, Any]) -> tuple[int, list[float]]:
    fix = "resume with the settings of the interrupted run, or start again without --resume"
    state = read_checkpoint(path)
    mine = {**config.fingerprint(), **identity}
    theirs = {**state["config"], **state["identity"]}
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            raise InputError(f"the checkpoint was made with {key} = {theirs.get(key)!r}, this run has {mine.get(key)!r}", fix)
    step = int(state["step"])
    if step > config.steps:
        raise InputError(f"the checkpoint is at step {step}, past --steps {config.steps}", f"use --steps {step} or more")
    saved = state["parameters"]
    parameters = dict(model.named_parameters())
    if sorted(saved) != sorted(names):
        raise InputError("the checkpoint holds other parameters than this run trains", fix)
    with torch.no_grad():
        for name in names:
            if saved[name].shape != parameters[name].shape:
                raise InputError(f"the checkpoint's {name} has shape {tuple(saved[name].shape)}, the model's is "
                                 f"{tuple(parameters[name].shape)}", fix)
            parameters[name].copy_(saved[name])
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    if ema is not None:
        if state["ema"] is None:
            raise InputError("the checkpoint has no EMA weights but this run uses --ema", fix)
        ema.load_state_dict(state["ema"])
    return step, list(state["losses"])
