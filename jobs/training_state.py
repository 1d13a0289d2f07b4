"""The net, optimiser and LR schedule of a training run, built and restored in the one order that works on a GPU.

Order: weights are loaded on the CPU, the net is moved to its device (and memory format) *before* Adam is built, and
only then is the saved optimiser state loaded, so `Optimizer.load_state_dict` places every moment tensor beside its
parameter. Building Adam first and moving the net afterwards (as DDP wrapping does) leaves the state on the CPU, and
both fused and foreach Adam refuse to step with it. The restored optimiser then takes its implementation (fused or
not) from the current configuration and its moments take their parameter's memory layout, so a run resumed with other
`perf` settings (another device kind, channels_last switched) steps correctly. fp16 autocast gets a gradient scaler,
saved and restored with the rest. Ray-free, so the GPU check and the tests run it directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from jobs.config import TrainConfig


@dataclass
class TrainingState:
    """What a worker trains with, plus the position it resumes from (zeros for a fresh run)."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The forward pass's autocast dtype (None: off). `auto` is bf16 on a GPU and off on the CPU (CPU bf16 is slower
    on most CPUs)."""
    name = cfg.perf.amp_dtype
    if name == "auto":
        name = "bf16" if device.type == "cuda" else "none"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[name]


def build_grad_scaler(cfg: TrainConfig, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, enabled only under fp16 autocast: the matting loss's gradients (under 1e-6 per output pixel at
    16 × 512²) lie below fp16's normal range and would flush to zero on their way back through an fp16 net; bf16 has
    float32's range and needs none. Disabled, every call on it passes through."""
    return torch.amp.GradScaler(device.type, enabled=autocast_dtype(cfg, device) == torch.float16)


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                      clip_norm: float | None) -> None:
    """One optimiser update from `loss`: backward through the scaler, optional clipping of the optimised
    parameters' gradients (unscaled first), the step (which the scaler skips when fp16 gradients overflowed) and the
    scale's update."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_norm:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_norm)
    scaler.step(optimizer)
    scaler.update()


def build_optimizer(net: nn.Module, cfg: TrainConfig,
                    device: torch.device) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam over the recipe's parameter groups (fused on CUDA when asked) and its per-epoch MultiStepLR.

    `net` must already sit on `device`: fused Adam checks its parameters' device when it is built."""
    from model.net import parameter_groups

    fused = cfg.perf.fused_optimizer and device.type == "cuda"
    optimizer = torch.optim.Adam(parameter_groups(net, cfg.optim.lr, cfg.optim.backbone_lr_ratio),
                                 lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
                                 weight_decay=cfg.optim.weight_decay, fused=True if fused else None)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.optim.milestones, cfg.optim.gamma)
    return optimizer, scheduler


def build_training_state(net: nn.Module, cfg: TrainConfig, device: torch.device,
                         saved: dict[str, Any] | None = None) -> TrainingState:
    """Move `net` (weights from `saved` if given) to `device`, then build the optimiser and load its saved state."""
    if saved is not None:
        net.load_state_dict(saved["model"])
    net = net.to(device)
    if cfg.perf.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer, scheduler = build_optimizer(net, cfg, device)
    state = TrainingState(net, optimizer, scheduler, build_grad_scaler(cfg, device))
    if saved is not None:
        implementation = {key: optimizer.defaults.get(key) for key in _IMPLEMENTATION_FLAGS}
        optimizer.load_state_dict(saved["optimizer"])
        _match_restored_optimizer(optimizer, implementation)
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler") and state.scaler.is_enabled():  # a disabled scaler saves an empty dict
            state.scaler.load_state_dict(saved["scaler"])
        state.step, state.epoch, state.batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
    return state


# Adam's settings that choose how it steps, not what it computes: they follow the current configuration on resume
_IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable")


def _match_restored_optimizer(optimizer: torch.optim.Optimizer, implementation: dict[str, Any]) -> None:
    """Undo what `load_state_dict` carries over from the saved run that does not fit this one.

    It restores each group's `fused`/`foreach` flags with the hyperparameters, so a checkpoint of a fused GPU run
    would stay fused where this run asked otherwise (and the reverse), and it keeps each moment tensor's saved
    strides: after a switch of `perf.channels_last` the moments are no longer laid out like their parameters, which
    fused Adam (on the CPU too) reads element by element in memory order, so it would update the wrong elements.
    Here the flags come back from the freshly built optimiser, the moments are copied into their parameter's layout
    (same logical values) and the step counter goes where the chosen implementation wants it (beside the parameter
    for fused/capturable Adam, on the CPU otherwise)."""
    for group in optimizer.param_groups:
        group.update(implementation)
        on_device = bool(group.get("fused") or group.get("capturable"))
        for param in group["params"]:
            entries = optimizer.state.get(param, {})
            for key, value in list(entries.items()):
                if not isinstance(value, torch.Tensor):
                    continue
                if key == "step":
                    entries[key] = value.to(param.device if on_device else torch.device("cpu"), torch.float32)
                elif value.shape == param.shape and value.stride() != param.stride():
                    entries[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def misplaced_optimizer_state(optimizer: torch.optim.Optimizer, net: nn.Module | None = None) -> list[str]:
    """What is out of place in `optimizer` (empty when all is well): state tensors not on their parameter's device
    and, given `net`, parameters that are not `net`'s own (a move that replaced them left the optimiser behind).

    Adam's scalar `step` counter may stay on the CPU unless the optimiser is fused or capturable."""
    own = None if net is None else {id(p) for p in net.parameters()}
    bad = []
    for group in optimizer.param_groups:
        for index, param in enumerate(group["params"]):
            where = f"{group.get('name', '?')}[{index}]"
            if own is not None and id(param) not in own:
                bad.append(f"{where} is not a parameter of the net (on {param.device})")
            for key, value in optimizer.state.get(param, {}).items():
                if not isinstance(value, torch.Tensor) or value.device == param.device:
                    continue
                if key == "step" and value.dim() == 0 and value.device.type == "cpu":
                    continue
                bad.append(f"{where}.{key} on {value.device}, parameter on {param.device}")
    return bad
