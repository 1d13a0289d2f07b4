"""Net, optimiser and schedule built and restored in the order that keeps Adam's state beside its parameters.

The `meta` device stands in for a GPU: a CPU run cannot tell devices apart, but a state restored into an optimiser
built before the move to `meta` stays on the CPU and is caught the same way a CUDA run would fail at its first step."""
from __future__ import annotations

import copy

import torch
from torch import nn

from jobs.config import TrainConfig
from jobs.training_state import (_match_restored_optimizer, autocast_dtype, backward_and_step, build_training_state,
                                 misplaced_optimizer_state)
from model.net import A2UMatting, parameter_groups


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


def _conv_state(cfg: TrainConfig, saved: dict | None = None):
    torch.manual_seed(0)
    return build_training_state(nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 1, 3)), cfg, torch.device("cpu"),
                                saved)


def test_fp16_autocast_gets_a_loss_scaler_so_small_gradients_still_update() -> None:
    # gradients of 1e-9 per output pixel flush to zero in fp16 (smallest subnormal 6e-8): without a scaler Adam
    # receives all-zero gradients and the weights do not move
    cfg = TrainConfig()
    cfg.perf.amp_dtype = "fp16"
    x = torch.randn(2, 4, 16, 16)
    moved = {}
    for scaled in (True, False):
        state = _conv_state(cfg)
        assert state.scaler.is_enabled()
        if not scaled:
            state.scaler = torch.amp.GradScaler("cpu", enabled=False)
        before = state.net[0].weight.detach().clone()
        with torch.autocast("cpu", dtype=autocast_dtype(cfg, torch.device("cpu"))):
            pred = state.net(x)
        assert pred.dtype == torch.float16
        backward_and_step(pred.float().sum() * 1e-9, state.optimizer, state.scaler, clip_norm=1.0)
        moved[scaled] = (state.net[0].weight - before).abs().max().item()
    assert moved[True] > 1e-6 and moved[False] == 0.0


def test_no_scaler_without_fp16() -> None:
    for amp in ("auto", "bf16", "none"):
        cfg = TrainConfig()
        cfg.perf.amp_dtype = amp
        assert not _conv_state(cfg).scaler.is_enabled()


def test_the_loss_scale_is_saved_and_restored() -> None:
    cfg = TrainConfig()
    cfg.perf.amp_dtype = "fp16"
    state = _conv_state(cfg)
    with torch.autocast("cpu", dtype=torch.float16):
        pred = state.net(torch.randn(2, 4, 16, 16))
    backward_and_step(pred.float().sum() * float("inf"), state.optimizer, state.scaler, None)  # overflow: step skipped
    scale = state.scaler.get_scale()
    assert scale < 65536.0
    saved = {"model": state.net.state_dict(), "optimizer": state.optimizer.state_dict(),
             "scheduler": state.scheduler.state_dict(), "scaler": state.scaler.state_dict(), "step": 1, "epoch": 0,
             "batch_in_epoch": 1}
    assert _conv_state(cfg, saved).scaler.get_scale() == scale


def _square_loss_grads(model: nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    (model(x) ** 2).mean().backward()


def test_a_fused_channels_last_checkpoint_resumes_correctly_in_another_setting() -> None:
    # a GPU run's checkpoint (fused Adam, channels_last moments) resumed where neither applies (here the CPU,
    # channels_last off): load_state_dict alone keeps `fused` and the moments' layout, and fused Adam then pairs
    # each weight with another element's moments
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 1, 3)).to(memory_format=torch.channels_last)
    cfg = TrainConfig()
    opt = torch.optim.Adam(parameter_groups(net, cfg.optim.lr, cfg.optim.backbone_lr_ratio), fused=True)
    x = torch.randn(2, 4, 16, 16)
    _square_loss_grads(net, x)
    opt.step()
    saved = {"model": copy.deepcopy(net.state_dict()), "optimizer": copy.deepcopy(opt.state_dict()),
             "scheduler": torch.optim.lr_scheduler.MultiStepLR(opt, [20]).state_dict(), "step": 1, "epoch": 0,
             "batch_in_epoch": 1}
    _square_loss_grads(net, x)
    opt.step()  # the uninterrupted run's second step

    resumed = build_training_state(nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 1, 3)), cfg, torch.device("cpu"),
                                   saved)
    assert all(not g["fused"] for g in resumed.optimizer.param_groups), "fused flag carried over from the checkpoint"
    _square_loss_grads(resumed.net, x)
    resumed.optimizer.step()
    for got, want in zip(resumed.net.parameters(), net.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_restored_moments_take_their_parameters_layout_for_fused_adam() -> None:
    # the other direction, as on a GPU where the resumed run is fused too: moments saved from an NCHW run, the
    # resumed net in channels_last; fused Adam walks the parameter and its moments in memory order
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 1, 3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    x = torch.randn(2, 4, 16, 16)
    _square_loss_grads(net, x)
    opt.step()
    saved_net = copy.deepcopy(net.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    _square_loss_grads(net, x)
    opt.step()

    resumed = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 1, 3))
    resumed.load_state_dict(saved_net)
    resumed = resumed.to(memory_format=torch.channels_last)
    resumed_opt = torch.optim.Adam(resumed.parameters(), lr=1e-3, fused=True)
    resumed_opt.load_state_dict(saved_opt)
    _match_restored_optimizer(resumed_opt, {"fused": True, "foreach": None, "capturable": False})
    for p in resumed.parameters():
        assert all(v.stride() == p.stride() for k, v in resumed_opt.state[p].items() if k != "step")
    _square_loss_grads(resumed, x)
    resumed_opt.step()
    for got, want in zip(resumed.parameters(), net.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_ranks_get_distinct_streams_when_the_world_size_changed_on_resume() -> None:
    # a checkpoint of a 1-worker run resumed by 2 workers has no saved stream for rank 1; before, every rank kept the
    # shared start seed, so all ranks drew the same dropout masks for the rest of the run
    from jobs.train_loop import _Trainer

    draws = []
    for rank in (0, 1):
        trainer = _Trainer.__new__(_Trainer)
        trainer.cfg, trainer.run_id = TrainConfig(), "run"
        trainer.rank, trainer.world, trainer.step, trainer.epoch, trainer.batch_in_epoch = rank, 2, 40, 1, 0
        torch.manual_seed(trainer.cfg.run.seed)  # what every rank does before it builds the net
        trainer._restore_position({"rng": [{}], "world_size": 1, "_source": "ckpt", "mlflow_run_id": "run"})
        draws.append(torch.rand(4))
    torch.manual_seed(TrainConfig().run.seed)
    shared = torch.rand(4)
    assert not torch.equal(draws[0], draws[1])
    assert not any(torch.equal(d, shared) for d in draws)
