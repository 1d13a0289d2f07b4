"""The fast CPU inference path: phase-split reassembly, BatchNorm folding and the channels-last inference copy all
give the eager reference's numbers within 1e-4, and the path is taken only where it should be."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from model import cpu_inference
from model.cpu_inference import fold_batchnorm, inference_copy
from model.inference import predict_raw
from model.net import A2UMatting
from model.phase_ops import phase_downsample, phase_upsample
from tests.test_model import test_ops as formulas  # the scalar-loop transcriptions (not its fixtures)

TOL = 1e-4


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("k, groups, r, c, h, w", [(3, 1, 2, 4, 3, 5), (5, 2, 2, 4, 4, 3), (3, 1, 3, 2, 2, 3),
                                                   (1, 1, 2, 2, 2, 2), (3, 2, 2, 4, 1, 1)])
def test_phase_upsample_matches_formula(channels_last: bool, k: int, groups: int, r: int, c: int, h: int,
                                        w: int) -> None:
    gen = torch.Generator().manual_seed(k * 100 + c * 10 + h)
    x = torch.randn(2, c, h, w, generator=gen, dtype=torch.float64)
    kernels = torch.randn(2, groups * k * k, r * h, r * w, generator=gen, dtype=torch.float64)
    got = phase_upsample(_layout(x, channels_last), kernels, k, groups, r)
    assert got.shape == (2, c, r * h, r * w)
    if channels_last and min(h, w) > 1:
        assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, formulas.naive_upsample(x, kernels, k, groups, r), rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("k, groups, r, c, big_h, big_w", [(6, 1, 2, 4, 6, 8), (4, 2, 2, 4, 4, 6), (5, 1, 2, 2, 4, 6),
                                                           (3, 1, 3, 2, 6, 3), (6, 1, 2, 2, 2, 2)])
def test_phase_downsample_matches_formula(channels_last: bool, k: int, groups: int, r: int, c: int, big_h: int,
                                          big_w: int) -> None:
    gen = torch.Generator().manual_seed(k * 100 + c * 10 + big_h)
    x = torch.randn(2, c, big_h, big_w, generator=gen, dtype=torch.float64)
    kernels = torch.randn(2, groups * k * k, big_h // r, big_w // r, generator=gen, dtype=torch.float64)
    got = phase_downsample(_layout(x, channels_last), kernels, k, groups, r)
    assert got.shape == (2, c, big_h // r, big_w // r)
    torch.testing.assert_close(got, formulas.naive_downsample(x, kernels, k, groups, r), rtol=0, atol=1e-12)


def _trained_like_net(seed: int = 0, dtype: torch.dtype = torch.float32) -> A2UMatting:
    """Released configuration with data-derived BatchNorm statistics (one train-mode pass, cumulative average) and
    perturbed BatchNorm affine parameters, so that folding is exercised."""
    torch.manual_seed(seed)
    net = A2UMatting(aspp_dilations=(1, 2, 3))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.1, 0.1)
        net.train()(torch.randn(2, 4, 64, 64))
    return net.eval().to(dtype)


def _reference(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), cpu_inference.cpu_inference("reference"):
        return net(x)


def _fast(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), cpu_inference.cpu_inference("fast"):
        return net(x)


def test_fold_batchnorm_folds_every_conv_bn_pair() -> None:
    net = _trained_like_net(dtype=torch.float64)
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    x = torch.randn(1, 4, 32, 48, dtype=torch.float64)
    folded = pickle.loads(pickle.dumps(net))
    assert fold_batchnorm(folded) == batchnorms  # every BatchNorm of the net follows a convolution
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(_reference(folded, x), _reference(net, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(1, 4, 32, 48), (2, 4, 32, 32)])
def test_fast_path_is_the_same_function(shape: tuple[int, ...]) -> None:
    """In float64 the fast copy (folded, channels-last, phase-split) computes the eager net's function exactly."""
    net = _trained_like_net(1, torch.float64)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want, got = _reference(net, x), _fast(net, x)
    assert cpu_inference._CACHE_ATTR in net.__dict__  # the fast copy ran
    assert got.is_contiguous() and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_fast_path_float32_error_is_rounding() -> None:
    """In float32 the fast path is as close to the float64 result as the eager float32 net is (this untrained net
    amplifies rounding far more than a trained one: its eager float32 error is ~1e-3 on outputs of ±40)."""
    net = _trained_like_net(2)
    x = torch.randn(1, 4, 64, 96, generator=torch.Generator().manual_seed(4))
    exact = _reference(pickle.loads(pickle.dumps(net)).double(), x.double())
    eager_error = (_reference(net, x).double() - exact).abs().max().item()
    fast_error = (_fast(net, x).double() - exact).abs().max().item()
    assert fast_error <= 2 * eager_error + 1e-6, (fast_error, eager_error)


def test_fast_path_only_for_gradient_free_eval_calls() -> None:
    net = _trained_like_net(3)
    x = torch.randn(1, 4, 32, 32)
    with cpu_inference.cpu_inference("fast"):
        net(x)  # grad enabled: the module as is
        assert cpu_inference._CACHE_ATTR not in net.__dict__
        with torch.no_grad():
            net.train()(x.expand(2, -1, -1, -1))
            assert cpu_inference._CACHE_ATTR not in net.__dict__
            net.eval()(x.half().float())
            assert cpu_inference._CACHE_ATTR in net.__dict__
    net.__dict__.pop(cpu_inference._CACHE_ATTR)
    with torch.no_grad(), cpu_inference.cpu_inference("reference"):
        net(x)
    assert cpu_inference._CACHE_ATTR not in net.__dict__


def test_inference_copy_follows_weight_changes_and_is_not_pickled() -> None:
    net = _trained_like_net(4, torch.float64)
    other = _trained_like_net(5, torch.float64)
    x = torch.randn(1, 4, 32, 48, dtype=torch.float64)
    first = _fast(net, x)
    assert inference_copy(net) is inference_copy(net)  # cached while the weights stay
    net.load_state_dict(other.state_dict())
    second = _fast(net, x)
    torch.testing.assert_close(second, _reference(other, x), rtol=1e-10, atol=1e-10)
    assert (second - first).abs().max().item() > 1e-3
    restored = pickle.loads(pickle.dumps(net))
    assert cpu_inference._CACHE_ATTR not in restored.__dict__
    assert set(restored.state_dict()) == set(other.state_dict())


def test_predict_raw_unchanged_by_the_fast_path() -> None:
    net = _trained_like_net(6, torch.float64)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    trimap = rng.choice(np.array([0, 128, 255], dtype=np.uint8), size=(30, 45))
    with cpu_inference.cpu_inference("reference"):
        want = predict_raw(net, image, trimap, tta="flip")
    with cpu_inference.cpu_inference("fast"):
        got = predict_raw(net, image, trimap, tta="flip")
    assert cpu_inference._CACHE_ATTR in net.__dict__
    assert np.abs(got - want).max() <= TOL


def test_mode_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        cpu_inference.set_cpu_inference("turbo")
    monkeypatch.setenv(cpu_inference.ENV, "reference")
    assert cpu_inference.current_mode() == "reference"
    with cpu_inference.cpu_inference("fast"):
        assert cpu_inference.current_mode() == "fast"
    assert cpu_inference.current_mode() == "reference"


def test_torch_compile_of_an_eval_net_traces_the_module_itself() -> None:
    """Under torch.compile the net is traced as it is (no inference copy is built inside the graph) in one graph."""
    import torch._dynamo

    torch._dynamo.reset()
    net = _trained_like_net(7, torch.float64)
    compiled = torch.compile(net, backend="eager", fullgraph=True)  # a graph break raises
    x = torch.randn(1, 4, 32, 32, dtype=torch.float64)
    with torch.no_grad(), cpu_inference.cpu_inference("fast"):
        got = compiled(x)
    assert cpu_inference._CACHE_ATTR not in net.__dict__
    torch.testing.assert_close(got, _reference(net, x), rtol=1e-10, atol=1e-10)
    torch._dynamo.reset()
