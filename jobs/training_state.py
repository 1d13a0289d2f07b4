"""The net, optimiser and LR schedule of a training run, built and restored in the one order that works on a GPU.

Order: weights are loaded on the CPU, the net is moved to its device (and memory format) *before* Adam is built, and
only then is the saved optimiser state loaded, so `Optimizer.load_state_dict` places every moment tensor beside its
parameter. Building Adam first and moving the net afterwards (as DDP wrapping does) leaves the state on the CPU, and
both fused and foreach Adam refuse to step with it. Ray-free, so the GPU check and the tests run it directly.
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
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


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
    state = TrainingState(net, optimizer, scheduler)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state.step, state.epoch, state.batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
    return state


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
