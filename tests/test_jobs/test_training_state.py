"""Net, optimiser and schedule built and restored in the order that keeps Adam's state beside its parameters.

The `meta` device stands in for a GPU: a CPU run cannot tell devices apart, but a state restored into an optimiser
built before the move to `meta` stays on the CPU and is caught the same way a CUDA run would fail at its first step."""
from __future__ import annotations

import torch
from torch import nn

from jobs.config import TrainConfig
from jobs.training_state import build_training_state, misplaced_optimizer_state
from model.net import A2UMatting


def _trained_state() -> dict:
    torch.manual_seed(0)
    cfg = TrainConfig()
    state = build_training_state(A2UMatting(), cfg, torch.device("cpu"))
    state.net(torch.randn(2, 4, 64, 64)).mean().backward()
    state.optimizer.step()
    state.scheduler.step()
    return {"model": state.net.state_dict(), "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(), "step": 1, "epoch": 1, "batch_in_epoch": 0}


def test_restored_optimizer_state_sits_on_the_parameters_device() -> None:
    saved = _trained_state()
    state = build_training_state(A2UMatting(), TrainConfig(), torch.device("meta"), saved)
    assert next(state.net.parameters()).device.type == "meta"
    assert state.optimizer.state, "the saved moments were not loaded"
    assert misplaced_optimizer_state(state.optimizer, state.net) == []
    assert (state.step, state.epoch, state.scheduler.last_epoch) == (1, 1, 1)


def test_the_check_catches_state_loaded_before_the_move() -> None:
    saved = _trained_state()
    state = build_training_state(A2UMatting(), TrainConfig(), torch.device("cpu"), saved)
    state.net.to("meta")  # what DDP preparation did after the optimiser had been restored
    assert misplaced_optimizer_state(state.optimizer, state.net)


def test_channels_last_is_applied_before_the_optimiser() -> None:
    cfg = TrainConfig()
    cfg.perf.channels_last = True
    state = build_training_state(nn.Sequential(nn.Conv2d(4, 8, 3)), cfg, torch.device("cpu"))
    weight = state.net[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert any(p is weight for g in state.optimizer.param_groups for p in g["params"])
